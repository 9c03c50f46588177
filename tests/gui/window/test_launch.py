"""The ``echoquality-gui`` command's script as a spawned child of the app runs it (again, as
``__mp_main__``): it must not import Qt or the window, which every scoring, training and
bootstrap child then paid for (~1 CPU-second each)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = """
import runpy, sys
runpy.run_path(sys.argv[1], run_name="__mp_main__")  # what multiprocessing's spawn does
print(sorted(m for m in ("PySide6", "pyqtgraph", "echoquality_gui.app") if m in sys.modules))
"""


def test_the_command_script_imports_no_qt_when_a_child_runs_it():
    script = Path(sys.executable).with_name("echoquality-gui")
    assert script.is_file(), "the console script is installed next to the interpreter"
    out = subprocess.run([sys.executable, "-c", CHILD, str(script)], capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
