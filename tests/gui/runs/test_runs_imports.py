"""The Runs tab lists a project's runs without MLflow in the app's process (issue 22.7): importing
its ~1,400 modules in a worker thread stalled the window 100–300 ms right after every first
training run. In a fresh interpreter, as the app: open a project whose store holds a run, see it
listed, and MLflow is not in ``sys.modules``; a project without a store starts no child."""
from __future__ import annotations

import json
import subprocess
import sys

APP = """
import json, sys, time
from pathlib import Path
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from echoquality_gui.app import configure_application
from echoquality_gui.window.main_window import MainWindow

QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, sys.argv[2])
app = QApplication([])
configure_application(app)
window = MainWindow()
window.show()
panel = window.runs_panel
listed = []
panel.runs_loaded.connect(listed.append)
assert window.open_project(Path(sys.argv[1]))
end = time.monotonic() + 180
while not listed or panel.loading:
    if time.monotonic() > end:
        raise SystemExit("timed out waiting for the run list")
    app.processEvents()
    time.sleep(0.01)
print(json.dumps({"listed": listed, "names": [row.run["run_name"] for row in panel.rows],
                  "status": panel.status_label.text(), "mlflow": "mlflow" in sys.modules}))
window.close()
"""


def _list(root, tmp_path) -> dict:
    out = subprocess.run([sys.executable, "-c", APP, str(root), str(tmp_path / "settings")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_runs_are_listed_by_a_child_and_mlflow_stays_out_of_the_app(tiny_project, tmp_path):
    from echoquality_core.runs.tracking import (
        default_artifact_location,
        default_tracking_uri,
        start_run,
    )

    root = tiny_project(n_clips=4, n_frames=4, seed=2).parent
    empty = _list(root, tmp_path)  # no store yet: nothing to list, nothing imported
    assert empty["listed"] == [0] and empty["names"] == [] and not empty["mlflow"]
    assert "No training runs yet" in empty["status"]

    with start_run({"epochs": 1}, tracking_uri=default_tracking_uri(root),
                   artifact_location=default_artifact_location(root),
                   run_name="first-run") as run:
        run.log_metrics({"test_roc_auc": 0.75})
    result = _list(root, tmp_path)
    assert result["listed"] == [1] and result["names"] == ["first-run"], result
    assert "1 training run(s)" in result["status"]
    assert not result["mlflow"]
