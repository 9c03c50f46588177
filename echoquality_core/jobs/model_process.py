"""Model work (scoring clips, GradCAM of a clip) in a child process, results streamed back.

The desktop app runs every model forward this way, as it trains (``train_process.py``): the
child has its own interpreter, so torch never holds the window's GIL (no stalls), and a model
that crashes or hangs is reported instead of freezing the app. The child stays warm between
jobs: torch is imported once and the last model file is kept loaded (keyed by path, size and
mtime), so GradCAM of the next clip pays only its forward and backward pass.

Every model call in the child (loading a file, each forward) is watched: it bumps a shared
counter to an odd value when it starts and to an even one when it ends. The parent kills the
child when the counter stays odd longer than ``forward_timeout`` (a hostile or broken model
that never returns) and the job ends with a ``Failed`` saying so; the next job starts a fresh
child. Errors come back as text; nothing here imports torch in the parent.

Jobs run one at a time per process; a job's messages are ``Loaded`` (scoring), ``Progress``,
and one of ``Done``, ``Failed`` or ``Cancelled`` last.
"""
from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoquality_core.train.events import Progress
from echoquality_core.jobs.child import (
    enter_child,
    make_queue,
    shared_int,
    start_child,
    stop,
    use_cpu_threads,
)

FORWARD_TIMEOUT = 120.0  # seconds one model call (load, forward) may take before it is killed
WATCH_SECONDS = 0.05  # how often the parent looks at the child between messages
LOAD, FORWARD = 1, 2  # what the running model call is (shared with the parent)
_CALLS = {LOAD: "loading the model", FORWARD: "a forward pass"}


@dataclass(frozen=True)
class Loaded:
    """The model file loaded; ``threshold`` and ``calibration`` are the decision scoring uses."""
    threshold: float
    calibration: dict | None = None


@dataclass(frozen=True)
class Done:
    """The job's result: ``ScoredClips``, a ClipExplanation, or None (a model loaded)."""
    value: Any


@dataclass(frozen=True)
class ScoredClips:
    """A scoring job's outcome as plain data: unpickling a DataFrame would import pandas into
    the app's process (its C extensions held the GIL and stalled the window ~130 ms).
    ``scores``: each scored clip's score by name (unreadable clips are not there); ``clips``:
    the rows of the scores table (unreadable and earlier-scored ones included); the threshold;
    ``skipped``: clips already in the output CSV."""
    scores: dict[str, float]
    clips: int
    threshold: float
    skipped: int = 0

    @classmethod
    def from_table(cls, table: Any) -> ScoredClips:
        """From ``score_clips``' DataFrame (in the child)."""
        scored = table.dropna(subset=["score"])
        return cls(dict(zip(scored["video_path"], scored["score"].astype(float).tolist(),
                            strict=True)),
                   len(table), float(table.attrs["threshold"]), int(table.attrs.get("skipped", 0)))


@dataclass(frozen=True)
class Failed:
    """The job failed; ``stage`` is "load" (the model file) or "run" (scoring / GradCAM)."""
    message: str
    stage: str = "run"


@dataclass(frozen=True)
class Cancelled:
    """The job was cancelled (between batches) or its process closed."""


@dataclass(frozen=True)
class _Job:
    id: int
    kind: str  # "score" | "explain" | "load"
    model: str
    trust_exported: bool
    args: dict[str, Any]


class _Cancel(Exception):
    """Raised from the scoring progress callback to leave ``score_clips`` between batches."""


# --- the child ---------------------------------------------------------------------------------

class _Watch:
    """The child's side of the model-call counter (odd while a call runs)."""

    def __init__(self, calls: Any, what: Any):
        self.calls, self.what = calls, what

    def begin(self, what: int) -> None:
        self.what.value = what
        self.calls.value += 1

    def end(self) -> None:
        if self.calls.value % 2:  # a call is running (a raised forward skips its end hook)
            self.calls.value += 1

    @contextmanager
    def call(self, what: int) -> Iterator[None]:
        self.begin(what)
        try:
            yield
        finally:
            self.end()


def _watched(net: Any, watch: _Watch) -> Any:
    """``net`` as a module whose every forward is a watched call (works for TorchScript too,
    which takes no Python hooks). ``to``/``train`` reach the model; it is not a child module,
    so the channels_last conversion skips TorchScript as ``precision.prepare_model`` does."""
    import torch
    from torch import nn

    class Watched(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            object.__setattr__(self, "net", net)

        def forward(self, videos: torch.Tensor) -> torch.Tensor:
            with watch.call(FORWARD):
                return net(videos)

        def to(self, *args: Any, **kwargs: Any) -> Watched:
            if not (kwargs.get("memory_format") is not None
                    and isinstance(net, torch.jit.ScriptModule)):
                net.to(*args, **kwargs)
            return self

        def train(self, mode: bool = True) -> Watched:
            net.train(mode)
            return super().train(mode)

    wrapper = Watched()
    wrapper.train(net.training)
    return wrapper


class _Models:
    """The child's one warm model: loaded again only when another file (or a changed one) is
    asked for."""

    def __init__(self, watch: _Watch):
        self.watch = watch
        self.key: tuple | None = None
        self.loaded: tuple[Any, dict[str, Any]] | None = None

    def get(self, path: str, trust_exported: bool) -> tuple[Any, dict[str, Any]]:
        import warnings

        from echoquality_core.model.checkpoint import load_scoring_model

        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns, trust_exported)
        if key != self.key:
            self.key, self.loaded = None, None  # free the old model before loading the next
            with self.watch.call(LOAD), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self.loaded = load_scoring_model(path, trust_exported=trust_exported)
            self.key = key
        return self.loaded


def _text(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


def _score(job: _Job, models: _Models, watch: _Watch, cancelled: Any, put: Any) -> None:
    from echoquality_core.decision import Decision
    from echoquality_core.model.checkpoint import params_from_info
    from echoquality_core.model.fold import fold_batchnorm
    from echoquality_core.scoring.score import ClipInput, score_clips

    try:
        net, info = models.get(job.model, job.trust_exported)
        decision = Decision.from_info(info, job.args["threshold"])
    except Exception as exc:  # noqa: BLE001 - any file the user picks: say why it cannot be used
        put(Failed(_text(exc), "load"))
        return
    put(Loaded(decision.threshold, decision.calibration))
    clips = job.args["clips"]
    if isinstance(clips, list) and not clips:  # only check that the model loads
        put(Done(ScoredClips({}, 0, decision.threshold)))
        return

    def progress(done: int, total: int, name: str) -> None:
        put(Progress("scoring", done, total, name))
        if cancelled.value == job.id:
            raise _Cancel

    if cancelled.value == job.id:
        put(Cancelled())
        return
    inputs = [ClipInput(Path(p), name) for p, name in clips] if isinstance(clips, list) else clips
    try:
        # scored as `echoquality score` scores (BatchNorms folded); GradCAM keeps ``net``
        table = score_clips(inputs, _watched(fold_batchnorm(net), watch),
                            out_csv=job.args["out_csv"],
                            threshold=decision.threshold, batch_size=job.args["batch_size"],
                            params=params_from_info(info), cache_dir=job.args["cache_dir"],
                            progress=progress, calibration=decision.calibration)
    except _Cancel:
        put(Cancelled())
        return
    put(Done(ScoredClips.from_table(table)))


def _explain(job: _Job, models: _Models, watch: _Watch, put: Any) -> None:
    from echoquality_core.model.checkpoint import params_from_info, require_checkpoint
    from echoquality_core.scoring.gradcam import explain_clip

    try:
        net, info = models.get(job.model, job.trust_exported)
        require_checkpoint(net, job.model)
    except Exception as exc:  # noqa: BLE001 - shown to the user
        put(Failed(_text(exc), "load"))
        return
    hooks = (net.register_forward_pre_hook(lambda *_: watch.begin(FORWARD)),
             net.register_forward_hook(lambda *_: watch.end()))
    try:
        put(Done(explain_clip(net, job.args["clip"], params_from_info(info),
                              job.args["explain"])))
    finally:
        for hook in hooks:
            hook.remove()
        watch.end()  # the forward raised: that call is over


def _child(jobs: Any, results: Any, calls: Any, what: Any, cancelled: Any,
           parent: int) -> None:
    """The child process: run jobs until ``None`` arrives; every message is (job id, message)."""
    enter_child(parent)  # the app is gone: nobody reads our results any more
    use_cpu_threads()  # one core stays free for the window; torch is imported now, and
    # these too, never inside a watched call: a slow import (a busy machine) is no hung model
    from echoquality_core.model import checkpoint  # noqa: F401
    from echoquality_core.scoring import gradcam  # noqa: F401
    from echoquality_core.scoring import score as scoring  # noqa: F401
    watch = _Watch(calls, what)
    models = _Models(watch)
    while (job := jobs.get()) is not None:
        def put(message: Any, job_id: int = job.id) -> None:
            results.put((job_id, message))

        try:
            if job.kind == "score":
                _score(job, models, watch, cancelled, put)
            elif job.kind == "load":
                models.get(job.model, job.trust_exported)
                put(Done(None))
            else:
                _explain(job, models, watch, put)
        except Exception as exc:  # noqa: BLE001 - carried back as text, the child lives on
            put(Failed(_text(exc)))


# --- the parent --------------------------------------------------------------------------------

class ModelJob:
    """One job of a ModelProcess: iterate it (in a worker thread) for its messages; the last
    is ``Done``, ``Failed`` or ``Cancelled``. ``cancel()`` from any thread."""

    def __init__(self, owner: ModelProcess, job: _Job):
        self._owner, self.job = owner, job
        self.cancelled = False

    @property
    def id(self) -> int:
        return self.job.id

    def cancel(self) -> None:
        """Stop between batches (the batch being scored is finished, and written)."""
        self.cancelled = True
        self._owner._cancel(self.job.id)

    def __iter__(self) -> Iterator[Any]:
        return self._owner._run(self)


class ModelProcess:
    """A warm child process for model work; see the module docstring. A killed (hung) child
    is replaced by the next job; ``close()`` kills it for good (a running job and every later
    one end with ``Cancelled``)."""

    def __init__(self, *, forward_timeout: float = FORWARD_TIMEOUT):
        self.forward_timeout = float(forward_timeout)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # one job at a time
        self._state_lock = threading.Lock()
        self._process: Any = None
        self._closed = False

    # jobs
    def score(self, clips: str | os.PathLike | list[tuple[Path, str]], model: str | os.PathLike,
              *, threshold: float | None = None, out_csv: str | os.PathLike | None = None,
              cache_dir: str | os.PathLike | None = None, trust_exported: bool = False,
              batch_size: int = 4) -> ModelJob:
        """Score ``clips`` (a folder, or (path, name) pairs; [] only loads the model) with
        the core's ``score_clips``: ``Loaded``, ``Progress`` per clip, ``Done(table)``."""
        clip_arg = ([(str(p), name) for p, name in clips] if isinstance(clips, list)
                    else str(clips))
        return self._job("score", model, trust_exported, clips=clip_arg, threshold=threshold,
                         out_csv=None if out_csv is None else str(out_csv),
                         cache_dir=None if cache_dir is None else str(cache_dir),
                         batch_size=int(batch_size))

    def load(self, model: str | os.PathLike, *, trust_exported: bool = False) -> ModelJob:
        """Start the child and load ``model`` ahead of the jobs that need it: ``Done(None)``."""
        return self._job("load", model, trust_exported)

    def explain(self, model: str | os.PathLike, clip: str | os.PathLike,
                explain: str = "good") -> ModelJob:
        """GradCAM of one clip (``gradcam.explain_clip``): ``Done(ClipExplanation)``."""
        return self._job("explain", model, False, clip=str(clip), explain=explain)

    def _job(self, kind: str, model: str | os.PathLike, trust: bool, **args: Any) -> ModelJob:
        return ModelJob(self, _Job(next(self._ids), kind, str(model), bool(trust), args))

    # life cycle
    @property
    def pid(self) -> int | None:
        """The child's pid while one runs."""
        process = self._process
        return process[0].pid if process is not None and process[0].is_alive() else None

    def close(self) -> None:
        """Kill the child now and refuse further jobs (any thread); a running job ends with
        ``Cancelled``."""
        with self._state_lock:
            self._closed = True
            self._kill()

    def _kill(self) -> None:
        if self._process is None:
            return
        process, jobs, results, *_ = self._process
        self._process = None
        stop(process)
        for q in (jobs, results):  # not closed: a reader may be waiting on it; it sees
            q.cancel_join_thread()  # the job's end (closed or dead) within WATCH_SECONDS

    def _start(self) -> tuple | None:
        with self._state_lock:
            if self._closed:
                return None
            if self._process is not None and not self._process[0].is_alive():
                self._kill()
            if self._process is None:
                jobs, results = make_queue(), make_queue()
                calls, what, cancelled = shared_int(), shared_int(), shared_int()
                process = start_child(_child, jobs, results, calls, what, cancelled,
                                      name="echoquality-model")
                self._process = (process, jobs, results, calls, what, cancelled)
            return self._process

    def _cancel(self, job_id: int) -> None:
        process = self._process
        if process is not None:
            process[5].value = job_id

    def _run(self, job: ModelJob) -> Iterator[Any]:
        with self._lock:
            started = None if job.cancelled else self._start()
            if started is None:
                yield Cancelled()
                return
            process, jobs, results, calls, what, cancelled = started
            jobs.put(job.job)
            if job.cancelled:  # cancelled while the child was starting
                cancelled.value = job.id
            yield from self._messages(job.id, process, results, calls, what)

    def _messages(self, job_id: int, process: Any, results: Any, calls: Any,
                  what: Any) -> Iterator[Any]:
        seen, since = 0, 0.0
        while True:
            if self._closed:
                yield Cancelled()
                return
            try:
                owner, message = results.get(timeout=WATCH_SECONDS)
            except (queue.Empty, OSError, EOFError, ValueError):
                if not process.is_alive():
                    if self._closed:
                        yield Cancelled()
                        return
                    yield Failed(f"the model process ended unexpectedly (exit code "
                                 f"{process.exitcode})")
                    self._stop_if(process)
                    return
                count = calls.value
                if count % 2 == 0:
                    seen = 0
                elif count != seen:
                    seen, since = count, time.monotonic()
                elif time.monotonic() - since > self.forward_timeout:
                    doing = _CALLS.get(what.value, "a model call")
                    self._stop_if(process)
                    yield Failed(f"the model did not answer within {self.forward_timeout:g} s "
                                 f"({doing}); its process was stopped",
                                 "load" if what.value == LOAD else "run")
                    return
                continue
            if owner != job_id:  # left over from a job whose reader went away
                continue
            yield message
            if isinstance(message, (Done, Failed, Cancelled)):
                return

    def _stop_if(self, process: Any) -> None:
        with self._state_lock:
            if self._process is not None and self._process[0] is process:
                self._kill()
