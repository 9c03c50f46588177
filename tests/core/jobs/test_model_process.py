"""Model work in a warm child process (``model_process.ModelProcess``): scoring streams its
progress and gives the same scores as ``score_clips`` in this process, GradCAM reuses the loaded
model, Cancel stops between batches, a hanging TorchScript forward is killed after the timeout,
errors come back as text. Real DICOM clips, a real (tiny, random) checkpoint."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from echoquality_core.train.events import Progress
from echoquality_core.jobs.model_process import Cancelled, Done, Failed, Loaded, ModelProcess
from hostile_models import write_hanging_torchscript

pytestmark = pytest.mark.slow  # child processes


@pytest.fixture
def clips(tiny_project):
    from echoquality_core.dicom import find_clips

    root = tiny_project(n_clips=6, n_frames=4, height=48, width=64, seed=5).parent
    return [(p, p.name) for p in find_clips(root)]


@pytest.fixture
def process():
    runner = ModelProcess(forward_timeout=60)
    yield runner
    runner.close()


def test_scores_stream_back_equal_to_scoring_here_and_gradcam_reuses_the_warm_child(
        process, clips, tiny_checkpoint):
    from echoquality_core.scoring.score import ClipInput, score_clips

    messages = list(process.score(clips, tiny_checkpoint, batch_size=2))
    assert messages[0] == Loaded(0.42)
    progress = [(m.done, m.total) for m in messages if isinstance(m, Progress)]
    assert progress == [(n, len(clips)) for n in range(1, len(clips) + 1)]
    assert isinstance(messages[-1], Done)
    result = messages[-1].value  # plain data: the app's process imports no pandas for it
    assert result.threshold == pytest.approx(0.42) and result.clips == len(clips)
    here = score_clips([ClipInput(p, name) for p, name in clips], tiny_checkpoint)
    assert result.scores == pytest.approx(
        dict(zip(here["video_path"], here["score"], strict=True)), abs=1e-5)

    pid = process.pid
    assert list(process.load(tiny_checkpoint)) == [Done(None)]  # already loaded: at once
    started = time.monotonic()
    (result,) = list(process.explain(tiny_checkpoint, clips[0][0], "poor"))
    assert isinstance(result, Done) and process.pid == pid  # same child, model loaded
    explanation = result.value
    assert explanation.path == clips[0][0] and explanation.explain == "poor"
    assert explanation.maps.shape == (4, 48, 48) and 0 <= explanation.maps.min()
    assert explanation.score == pytest.approx(here["score"][0], abs=1e-2)  # scoring: autocast
    assert time.monotonic() - started < 20


def test_cancel_stops_between_batches_and_errors_come_back_as_text(
        process, clips, tiny_checkpoint, tmp_path):
    job = process.score(clips, tiny_checkpoint, batch_size=1)
    seen = []
    for message in job:
        seen.append(message)
        if isinstance(message, Progress):
            job.cancel()
    assert isinstance(seen[-1], Cancelled)
    assert sum(isinstance(m, Progress) for m in seen) < len(clips)

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model" * 50)
    (failed,) = list(process.score([], bad))
    assert isinstance(failed, Failed) and failed.stage == "load" and "bad.pt" in failed.message
    (refused,) = list(process.explain(bad, clips[0][0]))
    assert isinstance(refused, Failed) and refused.message
    # The child lived through the errors and still works.
    assert isinstance(list(process.explain(tiny_checkpoint, clips[1][0]))[-1], Done)


def test_a_forward_that_never_returns_is_killed_after_the_timeout(clips, tmp_path,
                                                                  tiny_checkpoint):
    hang = write_hanging_torchscript(tmp_path / "hang.ts.pt")
    runner = ModelProcess(forward_timeout=5)
    try:
        (refused,) = list(runner.score(clips, hang))  # an export runs code: not unless trusted
        assert isinstance(refused, Failed) and "trust" in refused.message
        started = time.monotonic()
        messages = list(runner.score(clips, hang, trust_exported=True))
        assert isinstance(messages[0], Loaded)
        assert isinstance(messages[-1], Failed) and messages[-1].stage == "run"
        assert "did not answer within 5 s (a forward pass)" in messages[-1].message
        assert runner.pid is None  # the child was killed
        assert time.monotonic() - started < 30
        # The next job gets a fresh child.
        assert isinstance(list(runner.score(clips[:1], tiny_checkpoint))[-1], Done)
    finally:
        runner.close()


def test_close_ends_a_running_job_as_cancelled(clips, tmp_path):
    hang = write_hanging_torchscript(tmp_path / "hang.ts.pt")
    runner = ModelProcess(forward_timeout=600)
    job = runner.score(clips, hang, trust_exported=True)
    messages = iter(job)
    assert isinstance(next(messages), Loaded)
    runner.close()
    assert isinstance(list(messages)[-1], Cancelled) and runner.pid is None


def test_the_parent_side_imports_no_torch():
    code = ("import sys, echoquality_core.jobs.model_process, echoquality_gui.model.score_worker, "
            "echoquality_gui.model.gradcam_worker, echoquality_gui.train.worker, "
            "echoquality_gui.train.tab; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip() == "False"
