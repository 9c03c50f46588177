"""The deployable model: a pyfunc logged to a real MLflow store holds one copy of the weights,
loads back with ``mlflow.pyfunc.load_model`` and predicts what ``echoquality score`` writes, and
``mlflow models serve --env-manager local`` on 127.0.0.1 answers a request with a DICOM path."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from echoquality_core.dicom import find_clips
from echoquality_core.model.network import build_model, save_checkpoint
from echoquality_core.data.preprocess import PreprocessParams
from echoquality_core.scoring.score import read_scores
from echoquality_core.runs.tracking import default_tracking_uri, free_port, start_run

ROOT = Path(__file__).resolve().parents[3]  # the checkout (tests/<room>/../..)
PARAMS = PreprocessParams(n_frames=4, stride=1, size=32)


@pytest.fixture(scope="module")
def logged(tmp_path_factory, demo_project):
    """(tracking URI, model URI, checkpoint, the clips: 3 demo clips + one truncated DICOM)."""
    from echoquality_core.scoring.pyfunc import log_pyfunc_model

    root = tmp_path_factory.mktemp("pyfunc")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random initialisation, on purpose
        net = build_model().eval()
    checkpoint = save_checkpoint(net, root / "best.pt", threshold=0.45, preprocess=PARAMS)
    clips = [str(p) for p in find_clips(demo_project)[:3]]
    broken = root / "truncated.dcm"
    data = Path(clips[0]).read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    uri = default_tracking_uri(root)
    with start_run(tracking_uri=uri, experiment="pyfunc",
                   artifact_location=(root / "mlartifacts").as_uri()):
        model_uri = log_pyfunc_model(checkpoint)
    return uri, model_uri, checkpoint, [*clips, str(broken)]


def _load(uri: str, model_uri: str):
    import mlflow.pyfunc

    mlflow.set_tracking_uri(uri)
    return mlflow.pyfunc.load_model(model_uri)


def test_logged_model_has_a_signature_and_one_copy_of_the_weights(logged, tmp_path):
    import mlflow

    uri, model_uri, checkpoint, _ = logged
    mlflow.set_tracking_uri(uri)
    folder = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path)))
    sizes = [p.stat().st_size for p in folder.rglob("*") if p.is_file()]
    weights = checkpoint.stat().st_size
    assert sum(sizes) < 1.1 * weights  # one copy plus small files
    model = _load(uri, model_uri)
    assert model.metadata.get_input_schema().input_names() == ["video_path"]
    assert "score" in model.metadata.get_output_schema().input_names()


def test_the_run_finds_and_downloads_the_checkpoint_the_model_holds(logged, tmp_path):
    from echoquality_core.files.digest import file_digest
    from echoquality_core.runs.tracking import download_checkpoint, list_runs, run_checkpoint

    uri, _, checkpoint, _ = logged
    (run,) = list_runs(uri, "pyfunc")
    found = run_checkpoint(run, tmp_path)  # no training folder: the model's own copy
    assert found is not None and found.name == "best.pt" and "models" in found.parts
    downloaded = download_checkpoint(run["run_id"], uri, tmp_path / "dl")
    assert file_digest(found) == file_digest(downloaded) == file_digest(checkpoint)


@pytest.mark.slow
def test_predict_matches_echoquality_score(logged, tmp_path, one_torch_thread):
    uri, model_uri, checkpoint, clips = logged
    predicted = _load(uri, model_uri).predict(pd.DataFrame({"video_path": clips}))
    listing = tmp_path / "clips.txt"
    listing.write_text("\n".join(clips) + "\n", encoding="utf-8")
    out = tmp_path / "scores.csv"
    done = subprocess.run(
        [sys.executable, "-m", "echoquality_core", "score", "--list", str(listing), "--model",
         str(checkpoint), "--out", str(out), "--workers", "0", "--device", "cpu"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    cli = read_scores(out)
    assert list(predicted["video_path"]) == list(cli["video_path"]) == clips
    np.testing.assert_allclose(predicted["score"].fillna(-1), cli["score"].fillna(-1), atol=1e-6)
    assert predicted["pass"].tolist()[:3] == cli["pass"].tolist()[:3]
    assert predicted["pass"].iloc[3] is None and "truncated" in predicted["error"].iloc[3]
    assert predicted["assessment"].tolist() == cli["assessment"].tolist()


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_dicom_path(logged):
    uri, model_uri, _, clips = logged
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager",
         "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env=os.environ | {"PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": uri,
                          # the server runs `uvicorn` from the environment's bin folder
                          "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                          "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"})
    try:
        body = json.dumps({"dataframe_split": {"columns": ["video_path"],
                                               "data": [[clips[0]], [clips[3]]]}}).encode()
        answer = _post_when_up(f"http://127.0.0.1:{port}/invocations", body, server)
    finally:
        _stop(server)
    rows = answer["predictions"]
    assert [r["video_path"] for r in rows] == [clips[0], clips[3]]
    assert 0.0 <= rows[0]["score"] <= 1.0 and isinstance(rows[0]["pass"], bool)
    assert rows[0]["assessment"].endswith("quality") and rows[0]["error"] == ""
    assert rows[1]["pass"] is None and "truncated" in rows[1]["error"]


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _post_when_up(url: str, body: bytes, server: subprocess.Popen, timeout: float = 150) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.poll() is not None:
            raise AssertionError(f"server exited: {server.stdout.read()[-3000:]}")
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())
        except (ConnectionError, urllib.error.URLError):
            time.sleep(0.5)
    raise AssertionError("server did not answer in time")
