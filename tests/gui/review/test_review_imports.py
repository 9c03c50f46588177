"""The window reviews a model without scikit-learn or scipy (issue 22.7): importing them held
the GIL ~1 s and stalled the window. In a fresh interpreter, as the app: open a demo project,
load a model and score every clip (in the model's child process), show the Review tab with its
metrics, ROC, confusion matrix and the threshold panel's confidence intervals, and save a
threshold into the model (torch rewrites the checkpoint: in a child); then neither is
in the app's ``sys.modules`` (nor torch, nor pandas: unpickling a scores DataFrame from the
scoring child imported pandas, whose import stalled the window ~130 ms)."""
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

QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, sys.argv[3])
app = QApplication([])
configure_application(app)
window = MainWindow()
window.resize(1366, 768)
window.show()

def wait(ready, what, timeout=240.0):
    end = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)

session, review = window.session, window.review
assert window.open_project(Path(sys.argv[1]))
wait(lambda: not session.scanning and session.current is not None, "the project")
session.set_model(Path(sys.argv[2]))
wait(lambda: len(session.scores) == len(session.project.clips) and not session.scoring,
     "the scores")
window.tabs.setCurrentWidget(review)
panel = review.threshold_panel
review.lists.setCurrentWidget(panel)
wait(lambda: review.review_set is not None and "computing" not in panel.ci.text()
     and panel.ci.text(), "the review")
rs = review.review_set
ci = panel.ci.text()
panel.set_threshold(0.625)
review.save_threshold()  # the Save button: the checkpoint rewritten by a child, then rescoring
wait(lambda: review.save_worker is not None and review.save_worker.isFinished()
     and session.threshold == 0.625 and not session.scoring, "the saved threshold")
print(json.dumps({"modules": sorted({m.split(".")[0] for m in sys.modules}),
                  "auc": rs.metrics["roc_auc"], "roc": rs.roc() is not None, "ci": ci}))
window.close()
"""


def test_review_after_scoring_imports_no_scikit_learn_or_scipy(tiny_project, random_model,
                                                              tmp_path):
    from echoquality_core.data.preprocess import PreprocessParams
    from echoquality_core.model.checkpoint import read_info
    from echoquality_core.model.network import save_checkpoint

    root = tiny_project(n_clips=8, n_frames=6, seed=1).parent  # every clip labelled
    model = save_checkpoint(random_model(0), tmp_path / "best.pt", threshold=0.5,
                            preprocess=PreprocessParams(n_frames=4, stride=1, size=32))
    out = subprocess.run([sys.executable, "-c", APP, str(root), str(model),
                          str(tmp_path / "settings")], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0.0 <= result["auc"] <= 1.0 and result["roc"] and "ROC AUC" in result["ci"], result
    modules = set(result["modules"])
    heavy = {"sklearn", "scipy", "torch", "pandas"}  # pandas: the scores came as plain data
    assert not modules & heavy, sorted(modules & heavy)
    info = read_info(model)  # the threshold saved from the panel, by a child
    assert info["threshold"] == 0.625
