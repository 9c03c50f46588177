"""`echoquality weights ...` and `train --weights` run as a user would: bad starting weights are
refused in one line, exit code 2, within 3 s and before any MLflow run exists."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from file_server import FileServer

from echoquality_core.cli.main import main
from echoquality_core.files.download import file_sha256

LIMIT_S = 3.0


def _cli(*args: str, cwd: Path, env: dict | None = None) -> tuple[subprocess.CompletedProcess,
                                                                     float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "echoquality_core", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3]),
                               **(env or {})})
    return done, time.perf_counter() - start


@pytest.fixture(scope="module")
def other_architecture(tmp_path_factory) -> Path:
    """A real state dict of another video network (torchvision's MC3-18)."""
    from torchvision.models.video import mc3_18

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("other") / "mc3_18.pt"
    torch.save(mc3_18().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def not_tensors(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pickle") / "settings.pt"
    torch.save({"epochs": 20, "arch": "r2plus1d_18", "classes": ["good", "poor"]}, path)
    return path


@pytest.fixture(scope="module")
def nan_weights(tmp_path_factory, random_model) -> Path:
    """Our network's real weights after a diverged training: one tensor holds NaN."""
    state = random_model(0).state_dict()
    state["layer2.0.conv1.0.0.weight"][0, 0, 0, 0, 0] = float("nan")
    path = tmp_path_factory.mktemp("nan") / "nan.pt"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def weights_bomb(tmp_path_factory) -> Path:
    from hostile_models import write_weights_bomb

    return write_weights_bomb(tmp_path_factory.mktemp("bomb") / "bomb.pt")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "other_architecture", "not_tensors", "nan_weights",
                                  "weights_bomb"])
def test_train_refuses_bad_weights_fast_in_one_line(case, demo_project, tmp_path, request):
    weights = {"missing": tmp_path / "video_quality_model.pt"}.get(case) \
        or request.getfixturevalue(case)
    project = tmp_path / "p"
    project.mkdir()
    csv_path = project / "labels.csv"
    csv_path.write_text((demo_project / "labels.csv").read_text())
    done, seconds = _cli("train", "--csv", str(csv_path), "--videos", str(demo_project),
                         "--weights", str(weights), "--epochs", "1", cwd=tmp_path)
    print(f"{case}: exit {done.returncode} after {seconds:.2f} s: {done.stderr.strip()}")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("echoquality train: error: " + weights.name)
    assert {"missing": "weights file not found",
            "other_architecture": "not weights for this model",
            "not_tensors": "no model state dict found",
            "nan_weights": "layer2.0.conv1.0.0.weight hold NaN",
            "weights_bomb": "inflates to 1,073,741,824 bytes"}[case] in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert seconds < LIMIT_S
    assert not (project / "mlruns.db").exists() and not (project / "mlartifacts").exists()
    assert not (project / ".echoquality").exists()  # no clip was prepared


@pytest.mark.slow
def test_bad_csv_and_bad_config_key_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("path,score\nclip.dcm,1\n")
    done, _ = _cli("train", "--csv", str(bad), cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "labels.csv" in done.stderr and not (tmp_path / "mlruns.db").exists()
    toml = tmp_path / "train.toml"
    toml.write_text("[train]\nepochz = 3\n")
    done, _ = _cli("train", "--config", str(toml), cwd=tmp_path)
    assert done.returncode == 2 and "unknown setting(s) ['epochz']" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_weights_list_path_verify(weights_cache, capsys, other_architecture):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert f"Cache folder: {weights_cache}" in out
    assert "echoprime-quality" in out and "not downloaded, 125 MB" in out and "kinetics400" in out
    assert main(["weights", "path", "echoprime-quality"]) == 1  # not there yet
    assert capsys.readouterr().out.strip() == str(weights_cache / "video_quality_model.pt")
    assert main(["weights", "path", "resnet"]) == 2
    assert "unknown starting point 'resnet'" in capsys.readouterr().err
    assert main(["weights", "verify", str(other_architecture)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("echoquality weights verify: error: mc3_18.pt: not weights for this")
    assert "\n" not in err


def test_weights_download_from_a_local_server_then_train_uses_it(tmp_path, weights_cache,
                                                                  capsys):
    from echoquality_core.model.network import build_model

    www = tmp_path / "www"
    www.mkdir()
    torch.manual_seed(2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.save(build_model().state_dict(), www / "video_quality_model.pt")
    digest = file_sha256(www / "video_quality_model.pt")
    with FileServer(www) as server:
        url = server.url("video_quality_model.pt")
        assert main(["weights", "download", "echoprime-quality", "--url", url]) == 2
        err = capsys.readouterr().err  # the registry's size and hash are not this file's
        assert "is not the expected one" in err and "expected 125,382,818" in err
        assert main(["weights", "download", "echoprime-quality", "--url", url,
                     "--sha256", digest]) == 0
    captured = capsys.readouterr()
    cached = weights_cache / "video_quality_model.pt"
    assert captured.out.strip() == str(cached) and file_sha256(cached) == digest
    assert "Downloading echoprime-quality" in captured.err  # plain lines: not a terminal
    assert "\r" not in captured.err
    assert main(["weights", "verify", str(cached)]) == 0
    assert digest in capsys.readouterr().out
    assert main(["train", "--weights", "echoprime-quality", "--epochs", "1", "--print-config"]) == 0
    assert 'model_weights = "echoprime-quality"' in capsys.readouterr().out


def test_offline_download_is_one_sentence(weights_cache, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["weights", "download", "kinetics400", "--url",
                 f"http://127.0.0.1:{port}/r2plus1d_18-91a641e6.pth"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "download that file by hand" in err[0]
    assert str(weights_cache / "r2plus1d_18-91a641e6.pth") in err[0]


def test_print_config_round_trips(tmp_path, capsys):
    from echoquality_core.train.trainer import TrainConfig

    assert main(["train", "--print-config", "--epochs", "7", "--loss", "focal"]) == 0
    toml = tmp_path / "train.toml"
    toml.write_text(capsys.readouterr().out)
    config = TrainConfig.from_toml(toml)
    assert (config.epochs, config.loss, config.split) == (7, "focal", (0.7, 0.15, 0.15))
    text = toml.read_text()
    import dataclasses

    assert all(f"\n{f.name} = " in text for f in dataclasses.fields(TrainConfig))


@pytest.mark.slow
def test_version_and_python_m(tmp_path):
    from echoquality_core import __version__

    done, _ = _cli("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"echoquality {__version__}"


def test_unexpected_errors_are_one_line_without_debug(tmp_path, capsys, monkeypatch):
    import echoquality_core.cli.weights as cli_weights

    def broken(args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli_weights, "_run_list", broken)
    assert main(["weights", "list"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("echoquality weights: unexpected error: RuntimeError: disk on fire "
                   "(run with --debug for the traceback)")
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(["--debug", "weights", "list"])


def test_progress_lines_when_not_a_terminal(tmp_path, demo_project):
    done, _ = _cli("demo", str(tmp_path / "d"), "--clips", "3", "--frames", "4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "\r" not in done.stderr  # whole lines, no carriage-return redraws
    assert lines[-1].startswith("Writing demo clips: 3/3 clip (100 %), done in ")


def test_line_progress_prints_periodically_and_stays_quiet_on_early_errors():
    import io

    from echoquality_core.cli.progress import LineProgress, working

    out = io.StringIO()
    bar = LineProgress(4, "Scoring", "clip", out, every=0.0)
    bar.update(1)
    bar.set_postfix(loss="0.5")
    bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Scoring: 1/4 clip (25 %), ")
    assert lines[1].startswith("Scoring: 2/4 clip (50 %), loss=0.5, ")
    assert lines[2].startswith("Scoring: 2/4 clip (50 %), loss=0.5, done in ")
    quiet = io.StringIO()
    LineProgress(None, "Scoring", "clip", quiet).close()
    with pytest.raises(ValueError), working("Exporting", quiet, every=60):
        raise ValueError("bad model")
    assert quiet.getvalue() == ""
