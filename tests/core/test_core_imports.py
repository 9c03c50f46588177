"""The core is a library without a GUI: importing every ``echoquality_core`` module in a fresh
interpreter loads no Qt and nothing of ``echoquality_gui``."""
from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys

import pytest

import echoquality_core

FORBIDDEN = ("PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6", "echoquality_gui")

CHILD = """
import importlib, json, pkgutil, sys
import echoquality_core
names = sorted(m.name for m in pkgutil.walk_packages(echoquality_core.__path__,
                                                     "echoquality_core.")
               if not m.name.endswith("__main__"))  # running the CLI is not importing it
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""


@pytest.mark.slow
def test_importing_every_core_module_loads_no_qt_and_no_gui():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(echoquality_core.__file__)),
         os.environ.get("PYTHONPATH", "")]))
    env.pop("QT_QPA_PLATFORM", None)
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         env=env, timeout=600, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    expected = {m.name for m in pkgutil.walk_packages(echoquality_core.__path__,
                                                      "echoquality_core.")
                if not m.name.endswith("__main__")}
    assert set(result["imported"]) == expected and "echoquality_core.train.trainer" in expected
    loaded = [m for m in result["modules"] if m.split(".")[0] in FORBIDDEN]
    assert loaded == [], f"the core loaded GUI modules: {loaded}"
