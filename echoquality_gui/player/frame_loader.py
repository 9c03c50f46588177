"""Decoding frames off the GUI thread: a worker that holds only the NEWEST frame request
(SLEAP's latest-request-wins), reads ahead of the playhead while idle, prefetches the next
clip's header and first frames, and builds the model-input view on demand, frame by frame
(the full-size clip is never stacked). Decoded frames live in a byte-budgeted LRU cache the
player reads without waiting.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QObject, Signal

from echoquality_core.dicom import Clip, DicomReadError, read_clip
from echoquality_core.data.preprocess import PreprocessParams, model_view
from echoquality_gui.common.workers import Worker

READ_AHEAD = 64  # frames decoded ahead of the playhead while idle
PREFETCH_FRAMES = 3  # first frames of the next clip decoded in advance
DEFAULT_BUDGET = 768 * 2**20  # bytes of decoded frames kept


class FrameCache:
    """Thread-safe LRU of decoded frames keyed by (path, index), bounded in bytes."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET):
        self.budget = int(budget_bytes)
        self.nbytes = 0
        self._items: OrderedDict[tuple[Path, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, index: int) -> np.ndarray | None:
        with self._lock:
            frame = self._items.get((path, index))
            if frame is not None:
                self._items.move_to_end((path, index))
            return frame

    def __contains__(self, key: tuple[Path, int]) -> bool:
        with self._lock:
            return key in self._items

    def put(self, path: Path, index: int, frame: np.ndarray) -> None:
        with self._lock:
            old = self._items.pop((path, index), None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._items[(path, index)] = frame
            self.nbytes += frame.nbytes
            while self.nbytes > self.budget and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self.nbytes -= dropped.nbytes

    def keep_only(self, paths: set[Path]) -> None:
        """Forget the frames of every clip not in ``paths``."""
        with self._lock:
            for key in [k for k in self._items if k[0] not in paths]:
                self.nbytes -= self._items.pop(key).nbytes


def _reason(exc: Exception) -> str:
    if isinstance(exc, DicomReadError):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"


class FrameLoader(QObject):
    """Background decoder (one long-lived ``Worker`` running ``_serve``). Call its public
    methods from the GUI thread; results come back as signals. Only the clip being shown and the
    one prefetched are kept open."""

    clip_opened = Signal(object, object)  # path, Clip (header)
    frame_ready = Signal(object, int, object)  # path, index, (H,W,3) uint8
    failed = Signal(object, str)  # path, reason
    model_ready = Signal(object, object)  # path, (T,112,112,3) uint8

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET, parent=None):
        super().__init__(parent)
        self.cache = FrameCache(budget_bytes)
        self._thread = Worker(self._serve, parent=self)
        self._cond = threading.Condition()
        self._stopped = False
        self._current: Path | None = None
        self._want: tuple[Path, int] | None = None  # the newest frame request only
        self._want_model: Path | None = None
        self._prefetch: Path | None = None
        self._ahead_from = 0
        self._clips: dict[Path, Clip] = {}
        self._errors: dict[Path, str] = {}
        self._models: dict[Path, np.ndarray] = {}

    # --- GUI-thread API --------------------------------------------------------------------
    def start(self) -> None:
        """Start decoding (nothing happens if it runs already)."""
        self._thread.start()

    def open(self, path: Path) -> None:
        """Make ``path`` the clip being shown and ask for its first frame."""
        with self._cond:
            self._current = path
            keep = {path} | ({self._prefetch} if self._prefetch else set())
            self._forget_except(keep)
            self._want, self._ahead_from = (path, 0), 0
            self._cond.notify()

    def request(self, path: Path, index: int) -> None:
        """Ask for one frame; replaces any request not yet started."""
        with self._cond:
            self._want, self._ahead_from = (path, index), index
            self._cond.notify()

    def prefetch(self, path: Path | None) -> None:
        """Read ``path``'s header and first frames while idle (the next clip in the list)."""
        with self._cond:
            self._prefetch = path
            self._forget_except({p for p in (self._current, path) if p})
            self._cond.notify()

    def request_model_frames(self, path: Path) -> None:
        with self._cond:
            if path in self._models:
                self.model_ready.emit(path, self._models[path])
                return
            self._want_model = path
            self._cond.notify()

    def header(self, path: Path) -> Clip | None:
        """The clip's header if it is already read (e.g. prefetched)."""
        with self._cond:
            return self._clips.get(path)

    def error(self, path: Path) -> str | None:
        with self._cond:
            return self._errors.get(path)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.wait()

    # --- worker thread ---------------------------------------------------------------------
    def _forget_except(self, keep: set[Path]) -> None:
        for store in (self._clips, self._errors, self._models):
            for path in [p for p in store if p not in keep]:
                del store[path]
        self.cache.keep_only(keep)

    def _serve(self) -> None:
        while True:
            with self._cond:
                job = self._next_job()
                while job is None and not self._stopped:
                    self._cond.wait()
                    job = self._next_job()
                if self._stopped:
                    return
            kind, path, index = job
            if kind == "model":
                self._build_model_frames(path)
            else:
                self._decode(path, index, emit=(kind == "frame"))

    def _next_job(self) -> tuple[str, Path, int] | None:
        if self._want is not None:
            (path, index), self._want = self._want, None
            return "frame", path, index
        if self._want_model is not None:
            path, self._want_model = self._want_model, None
            return "model", path, 0
        for path, limit, start in ((self._current, READ_AHEAD, self._ahead_from),
                                   (self._prefetch, PREFETCH_FRAMES, 0)):
            if path is None or path in self._errors:
                continue
            clip = self._clips.get(path)
            if clip is None:
                return "ahead", path, 0
            for k in range(min(limit, clip.n_frames)):
                index = (start + k) % clip.n_frames
                if (path, index) not in self.cache:
                    return "ahead", path, index
        return None

    def _clip(self, path: Path) -> Clip | None:
        with self._cond:
            clip, error = self._clips.get(path), self._errors.get(path)
        if error is not None:
            self.failed.emit(path, error)
            return None
        if clip is not None:
            return clip
        try:
            clip = read_clip(path)
        except Exception as exc:  # noqa: BLE001 - any failure is shown as the clip's reason
            self._fail(path, _reason(exc))
            return None
        with self._cond:
            if path in (self._current, self._prefetch):
                self._clips[path] = clip
        self.clip_opened.emit(path, clip)
        return clip

    def _fail(self, path: Path, reason: str) -> None:
        with self._cond:
            if path in (self._current, self._prefetch):
                self._errors[path] = reason
        self.failed.emit(path, reason)

    def _decode(self, path: Path, index: int, emit: bool) -> np.ndarray | None:
        clip = self._clip(path)
        if clip is None:
            return None
        index = max(0, min(index, clip.n_frames - 1))
        frame = self.cache.get(path, index)
        if frame is None:
            try:
                frame = np.ascontiguousarray(clip.frame(index))
            except Exception as exc:  # noqa: BLE001
                self._fail(path, f"frame {index + 1}: {_reason(exc)}")
                return None
            with self._cond:
                if path in (self._current, self._prefetch):
                    self.cache.put(path, index, frame)
        if emit:
            self.frame_ready.emit(path, index, frame)
        return frame

    def _frame_for_model(self, path: Path, index: int) -> np.ndarray | None:
        """Frame ``index`` while building the model input, after any waiting frame request (the
        player stays responsive); None once stopped, another clip is shown or decoding fails."""
        with self._cond:
            if self._stopped or path != self._current:
                return None
            want, self._want = self._want, None
        if want is not None:
            self._decode(*want, emit=True)
        return self._decode(path, index, emit=False)

    def _build_model_frames(self, path: Path) -> None:
        """Every frame as the model sees it (EchoPrime's sector mask, crop, 112 px), holding one
        full-size frame at a time (``preprocess.model_view``), mostly from the cache."""
        clip = self._clip(path)
        if clip is None:
            return
        try:
            frames = model_view(lambda index: self._frame_for_model(path, index), clip.n_frames,
                                PreprocessParams(mask="sector"))
        except (ValueError, TypeError, cv2.error) as exc:
            self.failed.emit(path, f"model input: {exc}")
            return
        if frames is None:
            return
        with self._cond:
            if path == self._current:
                self._models[path] = frames
        self.model_ready.emit(path, frames)
