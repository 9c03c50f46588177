"""Starting points for training: a registry (as data), the download cache, and checks.

A run starts from one of:

- ``echoprime-quality``: EchoPrime's clip-quality model (``video_quality_model.pt``, a plain
  state dict of R(2+1)D-18 with a one-logit head, trained on BGR frames);
- ``kinetics400``: torchvision's R(2+1)D-18 trained on Kinetics-400 videos; its 400-class head
  is dropped and a fresh one-logit head starts random;
- ``none``: random initialisation;
- any local weights file (our checkpoints, EchoPrime-format state dicts).

Downloads go to :func:`cache_dir` (the platform's cache folder, or ``$ECHOQUALITY_CACHE``) and
are verified (size and SHA-256) before they are put there. :func:`check_starting_weights` reads a
file's keys and shapes without torch, so a wrong file is refused before any clip is prepared.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoquality_core.files.download import DownloadProgress, download, file_sha256
from echoquality_core.model.weights_file import (
    ForeignObject,
    Shape,
    WeightsError,
    check_archive,
    check_finite,
    check_state,
    expected_shapes,
    read_shapes,
    split_checkpoint,
)

log = logging.getLogger(__name__)

CACHE_ENV = "ECHOQUALITY_CACHE"
NONE = "none"
FILE = "file"  # the name a local file's starting point is recorded under


@dataclass(frozen=True)
class StartingPoint:
    """A known set of starting weights. ``head``: "trained" (the file holds the whole model,
    head included) or "new" (a backbone: the file's ``fc`` is dropped, ours starts random).
    ``sha256``: the full hash, or the prefix torchvision checks. ``size`` in bytes, if known."""

    name: str
    title: str
    description: str
    url: str | None = None
    filename: str | None = None
    sha256: str | None = None
    size: int | None = None
    head: str = "trained"
    channels: str = "RGB"
    source: str = ""


REGISTRY: dict[str, StartingPoint] = {p.name: p for p in (
    StartingPoint(
        name="echoprime-quality",
        title="EchoPrime quality model",
        description="EchoPrime's clip-quality model: R(2+1)D-18 with a one-logit head, "
                    "trained on echocardiogram clips (BGR frames). Fine-tuning starts here.",
        url="https://github.com/patniko/ghl/releases/download/v1.0.0/video_quality_model.pt",
        filename="video_quality_model.pt",
        sha256="7c9cff73ed76afed0bdbc9351c4657d26d515e828233a1ae4f263b15926d5e58",
        size=125_382_818,
        channels="BGR",
        source="the v1.0.0 release of github.com/patniko/ghl",
    ),
    StartingPoint(
        name="kinetics400",
        title="Kinetics-400 video backbone",
        description="torchvision's R(2+1)D-18 trained on Kinetics-400 action videos (not "
                    "echo); its 400-class head is dropped and the one-logit head starts random.",
        url="https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
        filename="r2plus1d_18-91a641e6.pth",
        sha256="91a641e6",  # torchvision's check: the hash prefix in the file name
        head="new",
        source="torchvision (R2Plus1D_18_Weights.KINETICS400_V1)",
    ),
    StartingPoint(
        name=NONE,
        title="None (random initialisation)",
        description="Random weights: the model learns from scratch and needs many labelled clips.",
        head="new",
    ),
)}


@dataclass(frozen=True)
class StartingWeights:
    """A resolved starting point: ``name`` is a registry name or ``"file"``; ``path`` is None
    for ``none``; ``head`` as in :class:`StartingPoint`."""

    name: str
    path: Path | None
    head: str = "trained"

    def sha256(self) -> str | None:
        """The file's SHA-256 (reads the whole file), None without a file."""
        return file_sha256(self.path) if self.path is not None else None


def cache_dir() -> Path:
    """Where downloaded weights live: ``$ECHOQUALITY_CACHE`` or the platform's user cache
    folder (``~/.cache/echoquality/weights`` on Linux)."""
    override = os.environ.get(CACHE_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("echoquality", appauthor=False)) / "weights"


def starting_point(name: str) -> StartingPoint:
    """The registry entry ``name``; ValueError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown starting point {name!r}; known: "
                         f"{', '.join(REGISTRY)} (or a path to a weights file)") from None


def cached_path(name: str) -> Path | None:
    """Where the registry entry's file is (or would be) cached; None for ``none``."""
    point = starting_point(name)
    return cache_dir() / point.filename if point.filename else None


def is_cached(name: str) -> bool:
    path = cached_path(name)
    return path is not None and path.is_file()


def manual_download_hint(point: StartingPoint) -> str:
    """The one sentence an offline user needs: where to get the file and where to put it."""
    return (f"Could not download {point.name} (no connection to {point.url}); download that "
            f"file by hand (from {point.source}) and save it as {cache_dir() / point.filename} "
            f"(or pass its path to --weights).")


def download_starting_point(
    name: str,
    *,
    sha256: str | None = None,
    url: str | None = None,
    progress: Callable[[DownloadProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Path:
    """Download a registry entry into the cache (verified; a no-op when already there) and
    return its path. ``sha256``/``url`` override the registry's (a newer release, a mirror);
    with a ``sha256`` override the registry's size is not checked."""
    point = starting_point(name)
    if point.url is None:
        raise ValueError(f"{name!r} has nothing to download")
    dest = cache_dir() / point.filename
    if dest.is_file() and sha256 is None and url is None:
        return dest
    if sha256 is not None:
        dest.unlink(missing_ok=True)
    return download(url or point.url, dest, sha256=sha256 or point.sha256,
                    size=None if sha256 else point.size, progress=progress,
                    should_cancel=should_cancel, manual_hint=manual_download_hint(point))


def resolve_starting_weights(
    spec: str | os.PathLike | None, base_dir: str | os.PathLike | None = None
) -> StartingWeights:
    """``spec`` (None/"" / a registry name / a path, relative paths taken from ``base_dir``)
    -> :class:`StartingWeights`. A registry entry that is not downloaded yet is a WeightsError
    saying how to get it; a missing file is a WeightsError naming it."""
    text = str(spec).strip() if spec is not None else ""
    if text in ("", NONE):
        return StartingWeights(NONE, None, "new")
    if text in REGISTRY:
        point = REGISTRY[text]
        path = cached_path(text)
        if not path.is_file():
            raise WeightsError(path, f"the {text} weights are not downloaded yet; run "
                                     f"`echoquality weights download {text}` (or use the "
                                     "Download button of the Train tab)")
        return StartingWeights(text, path, point.head)
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.is_file():
        raise WeightsError(path, f"weights file not found ({path})" if not path.is_dir()
                           else f"a folder, not a weights file ({path})")
    return StartingWeights(FILE, path.resolve(), "trained")


def check_starting_weights(
    spec: str | os.PathLike | None, base_dir: str | os.PathLike | None = None
) -> StartingWeights:
    """Resolve ``spec`` and check that its file holds weights for our model, without torch for
    files in torch's zip format (milliseconds) and with ``torch.load(weights_only=True)`` for
    legacy ones. Raises :class:`WeightsError` naming the first bad keys."""
    start = resolve_starting_weights(spec, base_dir)
    if start.path is not None:
        check_weights_file(start.path, new_head=start.head == "new")
    return start


def check_weights_file(path: str | os.PathLike, *, new_head: bool = False) -> None:
    """Raise :class:`WeightsError` unless ``path`` holds weights for our model (all but ``fc``
    when ``new_head``: a backbone whose head we replace)."""
    path = Path(path)
    try:
        data = read_shapes(path)
    except ForeignObject as exc:
        raise WeightsError(path, "this file contains pickled Python objects, not just weights "
                           f"(it refers to the Python object {exc.name}); loading it would mean "
                           "running code from the file, which we refuse to do") from exc
    except OSError as exc:
        raise WeightsError(path, f"unreadable ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 (not a pickle, a bad or truncated zip archive, ...)
        raise WeightsError(path, f"not a PyTorch weights file ({exc})") from exc
    if data is None:  # torch's legacy format: only torch can read it
        _check_with_torch(path, new_head)
        return
    state, _ = split_checkpoint(path, data, lambda value: isinstance(value, Shape))
    check_state(path, state, expected_shapes(), ignore=("fc.",) if new_head else ())
    check_archive(path, new_head=new_head)  # record sizes, before anything is decompressed
    check_finite(path, state)


def _check_with_torch(path: Path, new_head: bool) -> None:
    from echoquality_core.model.network import _check_finite, _read_torch_file

    state, _ = split_checkpoint(path, _read_torch_file(path), lambda v: hasattr(v, "shape"))
    check_state(path, {k: tuple(v.shape) for k, v in state.items()}, expected_shapes(),
                ignore=("fc.",) if new_head else ())
    _check_finite(path, state)


def build_start_model(start: StartingWeights, device: Any = "cpu") -> tuple[Any, list[str]]:
    """The model loaded from ``start`` and the keys that start random (all for ``none``;
    ``fc.weight``, ``fc.bias`` for a backbone). Files are read with ``weights_only=True``."""
    from echoquality_core.model.network import _read_torch_file, build_model, resolve_device

    if start.path is None:
        model = build_model(None, device)
        return model, list(model.state_dict())
    if start.head == "trained":
        model = build_model(start.path, device)
        return model, []
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # only the head is random: logged below
        model = build_model(None, "cpu")
    state, _ = split_checkpoint(start.path, _read_torch_file(start.path, new_head=True),
                                lambda v: hasattr(v, "shape"))
    backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
    check_state(start.path, {k: tuple(v.shape) for k, v in backbone.items()}, expected_shapes(),
                ignore=("fc.",))
    missing, _ = model.load_state_dict(backbone, strict=False)
    new = [k for k in missing if not k.endswith("num_batches_tracked")]
    log.info("%s: backbone loaded; %s start random", start.path.name, ", ".join(new))
    return model.to(resolve_device(device)), new


def starting_point_params(start: StartingWeights) -> Mapping[str, str]:
    """What MLflow records about the start: its name and the file's SHA-256."""
    return {"starting_point": start.name, "starting_sha256": start.sha256() or ""}
