"""The Runs tab on a real training run's MLflow store: listing, settings, Load model, MLflow UI."""
from __future__ import annotations

import json
import math
import os
import urllib.error
import urllib.request

import pytest
from PySide6.QtCore import Qt

from echoquality_gui.runs.tab import COLUMNS

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _cells(panel, row: int) -> dict[str, str]:
    return {title: panel.table.item(row, c).text() for c, title in enumerate(COLUMNS)}


def _open_with_runs(qtbot, studio_window, open_project, root):
    panel = studio_window.runs_panel
    with qtbot.waitSignal(panel.runs_loaded, timeout=60000):
        open_project(root)
    qtbot.waitUntil(lambda: not panel.loading, timeout=60000)
    return panel


@pytest.mark.slow
def test_runs_table_shows_run_settings_and_loads_its_model(
        qtbot, studio_window, open_project, trained_run, screenshot):
    root, end = trained_run
    panel = _open_with_runs(qtbot, studio_window, open_project, root)
    run_ids = [row.run["run_id"] for row in panel.rows]
    assert end.run_id in run_ids
    row = run_ids.index(end.run_id)
    cells = _cells(panel, row)
    assert cells["Run"] == end.run_dir.name
    assert cells["Status"] == "finished"
    assert cells["Best epoch"] == str(end.best_epoch)
    assert cells["Accuracy"] == f"{end.test_metrics['accuracy']:.3f}"
    auc = end.test_metrics["roc_auc"]
    assert cells["Test AUC"] == (f"{auc:.3f}" if math.isfinite(auc) else "—")
    assert cells["Model"] == "saved"

    assert panel.select_run(end.run_id)
    params = {panel.params.item(r, 0).text(): panel.params.item(r, 1).text()
              for r in range(panel.params.rowCount())}
    assert params["batch_size"] == "2" and params["epochs"] == "2" and params["n_frames"] == "4"
    assert end.run_id in panel.details.text()
    assert panel.load_button.isEnabled()

    session = studio_window.session
    with qtbot.waitSignal(session.scoring_finished, timeout=60000):
        qtbot.mouseClick(panel.load_button, Qt.MouseButton.LeftButton)
    assert session.model_path == end.best_checkpoint
    assert session.run_dir == end.run_dir
    assert session.threshold == pytest.approx(end.threshold)
    assert _cells(panel, row)["Model"] == "loaded"
    assert not panel.loading  # loading our own run's model does not re-list the runs
    studio_window.tabs.setCurrentWidget(panel)
    qtbot.wait(50)
    screenshot(studio_window, "runs_tab.png")


@pytest.mark.slow
def test_mlflow_ui_starts_on_free_port_answers_and_stops_with_window(
        qtbot, studio_window, open_project, trained_run):
    root, end = trained_run
    panel = _open_with_runs(qtbot, studio_window, open_project, root)
    opened = []
    panel.open_url = opened.append  # no real browser in tests; the server is real
    qtbot.mouseClick(panel.ui_button, Qt.MouseButton.LeftButton)
    assert not panel.ui_button.isEnabled()  # starting; the UI thread is not blocked
    qtbot.waitUntil(lambda: len(opened) == 1, timeout=150000)
    url = opened[0].toString()
    assert url == panel.server.url and url.startswith("http://127.0.0.1:")
    assert url in panel.ui_label.text()
    with NO_PROXY.open(url, timeout=10) as reply:
        assert reply.status == 200
    # it serves this project's store: the REST API finds the trained run
    experiment = json.load(NO_PROXY.open(
        f"{url}api/2.0/mlflow/experiments/get-by-name?experiment_name=echoquality", timeout=10))
    search = urllib.request.Request(
        f"{url}api/2.0/mlflow/runs/search", method="POST",
        data=json.dumps({"experiment_ids": [experiment["experiment"]["experiment_id"]]}).encode(),
        headers={"Content-Type": "application/json"})
    runs = json.load(NO_PROXY.open(search, timeout=10))["runs"]
    assert end.run_id in [r["info"]["run_id"] for r in runs]

    pid = panel.server.process.processId()
    qtbot.mouseClick(panel.ui_button, Qt.MouseButton.LeftButton)  # reuses the running server
    qtbot.waitUntil(lambda: len(opened) == 2, timeout=5000)
    assert opened[1] == opened[0] and panel.server.process.processId() == pid

    studio_window.close()
    assert not panel.server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(urllib.error.URLError):
        NO_PROXY.open(url, timeout=5)


@pytest.mark.slow  # a few seconds: the fast tier stays under 4 minutes
def test_mlflow_ui_failure_is_shown_with_its_output(qtbot, studio_window, tmp_path):
    panel = studio_window.runs_panel
    with qtbot.waitSignal(panel.server.failed, timeout=120000) as failed:
        panel.server.start("unknown-store://nowhere", tmp_path)
    assert "stopped while starting" in failed.args[0]
    assert "unknown-store://nowhere" in failed.args[0]  # MLflow's own explanation
    assert not panel.server.running
    assert panel.error_box is not None
    assert "unknown-store://nowhere" in panel.error_box.detailedText()
    assert panel.ui_button.isEnabled()
