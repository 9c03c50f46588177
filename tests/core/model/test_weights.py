"""Starting weights: the registry, the verified resumable download (from a real HTTP server on
127.0.0.1), the torch-free check of a weights file, and the Kinetics-400 backbone mapping."""
from __future__ import annotations

import dataclasses
import re
import socket
import warnings
from pathlib import Path

import pytest
import torch
from file_server import FileServer
from torch import nn

from echoquality_core.model import weights
from echoquality_core.files.download import (
    DownloadCancelled,
    DownloadError,
    OfflineError,
    download,
    file_sha256,
)
from echoquality_core.model.weights import (
    REGISTRY,
    StartingWeights,
    WeightsError,
    build_start_model,
    cached_path,
    check_weights_file,
    download_starting_point,
    resolve_starting_weights,
)
from echoquality_core.model.weights_file import expected_shapes, read_shapes

MB = 1 << 20


def _point_at(monkeypatch, server: FileServer, path: Path, **changes) -> None:
    """Make the registry's echoprime-quality entry point at the local server's copy."""
    values = {"url": server.url(path.name), "sha256": file_sha256(path),
              "size": path.stat().st_size} | changes
    entry = dataclasses.replace(REGISTRY["echoprime-quality"], **values)
    monkeypatch.setitem(REGISTRY, "echoprime-quality", entry)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the registry, by value (no network) ---------------------------------------------------

def test_registry_points_at_the_real_files():
    echo = REGISTRY["echoprime-quality"]
    assert echo.url == ("https://github.com/patniko/ghl/releases/download/v1.0.0/"
                        "video_quality_model.pt")
    assert echo.filename == "video_quality_model.pt"
    assert echo.size == 125_382_818
    assert echo.sha256 == "7c9cff73ed76afed0bdbc9351c4657d26d515e828233a1ae4f263b15926d5e58"
    assert (echo.head, echo.channels) == ("trained", "BGR")

    from torch.hub import HASH_REGEX
    from torchvision.models.video import R2Plus1D_18_Weights

    kinetics = REGISTRY["kinetics400"]
    official = R2Plus1D_18_Weights.KINETICS400_V1.url
    assert kinetics.url == official
    assert kinetics.filename == official.rsplit("/", 1)[1]
    assert kinetics.sha256 == HASH_REGEX.search(kinetics.filename).group(1)  # torchvision's check
    assert kinetics.head == "new"
    assert REGISTRY["none"].url is None


def test_cache_folder_follows_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("ECHOQUALITY_CACHE", str(tmp_path / "c"))
    assert cached_path("echoprime-quality") == tmp_path / "c" / "video_quality_model.pt"
    monkeypatch.delenv("ECHOQUALITY_CACHE")
    import platformdirs

    assert weights.cache_dir() == Path(platformdirs.user_cache_dir("echoquality",
                                                                    appauthor=False)) / "weights"


def test_resolving_names_and_paths(weights_cache, tmp_path):
    assert resolve_starting_weights(None) == StartingWeights("none", None, "new")
    assert resolve_starting_weights("none").path is None
    with pytest.raises(WeightsError, match="echoquality weights download echoprime-quality"):
        resolve_starting_weights("echoprime-quality")
    with pytest.raises(WeightsError, match="weights file not found"):
        resolve_starting_weights("nope.pt", tmp_path)
    with pytest.raises(ValueError, match="unknown starting point 'x'"):
        weights.starting_point("x")


# --- download ------------------------------------------------------------------------------

def test_download_with_progress_into_the_cache(served_weights, weights_cache, monkeypatch):
    seen = []
    with FileServer(served_weights.parent) as server:
        _point_at(monkeypatch, server, served_weights)
        path = download_starting_point("echoprime-quality", progress=seen.append)
        assert path == weights_cache / "video_quality_model.pt"
        assert file_sha256(path) == file_sha256(served_weights)
        assert server.requests == [("video_quality_model.pt", None)]
        again = download_starting_point("echoprime-quality")  # cached: no request
        assert again == path and len(server.requests) == 1
    size = served_weights.stat().st_size
    assert len(seen) >= 2 and seen[-1].done == size and seen[-1].total == size
    assert all(a.done <= b.done for a, b in zip(seen, seen[1:], strict=False))
    assert seen[-1].speed > 0
    assert re.fullmatch(r"[\d.]+ MB of [\d.]+ MB \(100\.0 %\), [\d.]+ MB/s", seen[-1].text())
    assert not list(weights_cache.glob("*.part"))


def test_an_interrupted_download_is_resumed_with_a_range_request(served_weights, weights_cache,
                                                                 monkeypatch):
    cut = int(1.5 * MB)
    with FileServer(served_weights.parent, cut_after=cut) as server:
        _point_at(monkeypatch, server, served_weights)
        path = download_starting_point("echoprime-quality")
        assert server.requests == [("video_quality_model.pt", None),
                                   ("video_quality_model.pt", f"bytes={cut}-")]
    assert file_sha256(path) == file_sha256(served_weights)


def test_a_cancelled_download_resumes_next_time(served_weights, weights_cache, monkeypatch):
    with FileServer(served_weights.parent, chunk_delay=0.002) as server:
        _point_at(monkeypatch, server, served_weights)
        with pytest.raises(DownloadCancelled, match="resumes from there"):
            download_starting_point("echoprime-quality", should_cancel=lambda: True)
        part = weights_cache / "video_quality_model.pt.part"
        kept = part.stat().st_size
        assert 0 < kept < served_weights.stat().st_size
        assert not (weights_cache / "video_quality_model.pt").exists()
        path = download_starting_point("echoprime-quality")
        assert server.requests[-1] == ("video_quality_model.pt", f"bytes={kept}-")
    assert file_sha256(path) == file_sha256(served_weights) and not part.exists()


def test_a_wrong_hash_is_refused_and_nothing_stays_in_the_cache(served_weights, weights_cache,
                                                                monkeypatch):
    with FileServer(served_weights.parent) as server:
        _point_at(monkeypatch, server, served_weights, sha256="ab" * 32)
        with pytest.raises(DownloadError) as info:
            download_starting_point("echoprime-quality")
    message = str(info.value)
    assert f"expected {'ab' * 32}" in message and file_sha256(served_weights) in message
    assert "--sha256" in message and "\n" not in message
    assert list(weights_cache.iterdir()) == []


def test_a_wrong_size_is_refused(served_weights, weights_cache, monkeypatch):
    with FileServer(served_weights.parent) as server:
        _point_at(monkeypatch, server, served_weights, size=123)
        with pytest.raises(DownloadError, match=r"size is [\d,]+ bytes, expected 123"):
            download_starting_point("echoprime-quality")
    assert list(weights_cache.iterdir()) == []


def test_sha256_override_accepts_a_newer_release(served_weights, weights_cache, monkeypatch):
    with FileServer(served_weights.parent) as server:
        _point_at(monkeypatch, server, served_weights, sha256="00" * 32, size=1)
        path = download_starting_point("echoprime-quality", sha256=file_sha256(served_weights))
    assert file_sha256(path) == file_sha256(served_weights)


def test_offline_gives_one_sentence_saying_where_to_get_and_put_the_file(weights_cache,
                                                                         monkeypatch):
    entry = dataclasses.replace(REGISTRY["echoprime-quality"],
                                url=f"http://127.0.0.1:{_closed_port()}/video_quality_model.pt")
    monkeypatch.setitem(REGISTRY, "echoprime-quality", entry)
    with pytest.raises(OfflineError) as info:
        download_starting_point("echoprime-quality")
    message = str(info.value)
    assert "\n" not in message and message.count(". ") == 0 and message.endswith(".")
    assert entry.url in message and "github.com/patniko/ghl" in message
    assert str(weights_cache / "video_quality_model.pt") in message
    assert list(weights_cache.iterdir()) == []


def test_download_without_a_size_checks_the_hash_prefix(served_weights, tmp_path):
    with FileServer(served_weights.parent) as server:
        dest = download(server.url(served_weights.name), tmp_path / "out.pt",
                        sha256=file_sha256(served_weights)[:8])
    assert dest.read_bytes() == served_weights.read_bytes()


# --- checking a weights file before training ----------------------------------------------

@pytest.fixture(scope="module")
def kinetics_file(tmp_path_factory) -> Path:
    """A torchvision-format Kinetics-400 checkpoint: r2plus1d_18 with its 400-class head."""
    from torchvision.models.video import r2plus1d_18

    torch.manual_seed(4)
    path = tmp_path_factory.mktemp("kinetics") / "r2plus1d_18-91a641e6.pth"
    torch.save(r2plus1d_18(num_classes=400).state_dict(), path)
    return path


def test_expected_shapes_are_the_real_models():
    from torchvision.models.video import r2plus1d_18

    with torch.device("meta"):
        model = r2plus1d_18()
        model.fc = nn.Linear(512, 1)
    real = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(expected_shapes()) == list(real) and expected_shapes() == real


def test_kinetics_backbone_loads_with_only_the_head_new(kinetics_file):
    check_weights_file(kinetics_file, new_head=True)
    with pytest.raises(WeightsError, match=r"fc.weight expected \(1, 512\) got \(400, 512\)"):
        check_weights_file(kinetics_file)  # as a whole model it is the wrong head
    model, new = build_start_model(StartingWeights("kinetics400", kinetics_file, "new"))
    assert new == ["fc.weight", "fc.bias"]
    assert tuple(model.fc.weight.shape) == (1, 512)
    saved = torch.load(kinetics_file, weights_only=True)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items() if not k.startswith("fc."))


def test_shapes_are_read_without_loading_tensors(kinetics_file):
    shapes = read_shapes(kinetics_file)
    assert tuple(shapes["fc.weight"]) == (400, 512)
    assert {k: tuple(v) for k, v in shapes.items() if not k.startswith("fc.")} == {
        k: v for k, v in expected_shapes().items() if not k.startswith("fc.")}


class Pickled:  # a Python object torch.save would pickle by reference
    pass


@pytest.mark.parametrize("content, message", [
    (lambda: {"model": Pickled()}, r"pickled Python objects.*test_weights\.Pickled"),
    (lambda: {"epochs": 3, "name": "resnet"}, r"no model state dict found: .*epochs, name"),
    (lambda: nn.Linear(2, 1).state_dict(),
     r"2 unexpected key\(s\): weight, bias; 187 missing key\(s\): stem.0.weight"),
    (lambda: [1, 2], "expected a dict of weights, found a list"),
])
def test_wrong_files_are_refused_naming_the_problem(tmp_path, content, message):
    path = tmp_path / "w.pt"
    torch.save(content(), path)
    with pytest.raises(WeightsError, match=message):
        check_weights_file(path)


def test_legacy_format_and_non_torch_files(tmp_path):
    legacy = tmp_path / "legacy.pt"
    torch.save({"a.weight": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsError, match="unexpected key"):
        check_weights_file(legacy)  # checked with torch.load(weights_only=True)
    text = tmp_path / "notes.pt"
    text.write_text("not weights")
    with pytest.raises(WeightsError, match="not a PyTorch weights file"):
        check_weights_file(text)
    import pickle

    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    with pytest.raises(WeightsError, match="plain Python pickle"):
        check_weights_file(plain)


def test_our_own_checkpoint_passes(tmp_path):
    from echoquality_core.model.network import build_model, save_checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = build_model()
    path = save_checkpoint(model, tmp_path / "best.pt", threshold=0.4)
    check_weights_file(path)
    assert weights.check_starting_weights(str(path)).name == "file"
