"""Issue 21.6: `echoquality threshold` refuses out-of-fold scores made with other
preprocessing settings than the model's (one line, exit 2, nothing saved) unless --force, and
warns when the scores' ROC AUC is below 0.6."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from echoquality_core.cli.main import main
from echoquality_core.data.preprocess import PreprocessParams
from echoquality_core.train.folds import write_oof

LABELS = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
WEAK = [.61, .60, .42, .45, .55, .58, .40, .35, .52, .50]  # ROC AUC 0.52
STRONG = [.9, .1, .8, .3, .7, .2, .95, .4, .6, .35]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, random_model):
    """A real checkpoint whose model takes 16 frames of 112 px (and the bytes it started as)."""
    from echoquality_core.model.network import save_checkpoint

    path = tmp_path_factory.mktemp("model") / "best.pt"
    save_checkpoint(random_model(0), path, threshold=0.5, preprocess=asdict(PreprocessParams()))
    return path


def _crossval(root, scores, params: PreprocessParams | None):
    folder = root / "crossval" / "cv"
    folder.mkdir(parents=True)
    write_oof(folder / "oof_scores.csv", [
        {"video_path": f"c{i}.dcm", "label": y, "score": s, "fold": 1 + i % 2, "threshold": 0.5,
         "group": f"p{i:03d}", "n_scores": 1} for i, (y, s) in enumerate(zip(LABELS, scores))])
    summary = {"threshold": 0.5} | ({"preprocess": asdict(params)} if params else {})
    (folder / "summary.json").write_text(json.dumps(summary))


def _threshold(root, model, *extra):
    return main(["threshold", "--crossval", "cv", "--project", str(root), "--model", str(model),
                 "--preset", "youden", *extra])


@pytest.mark.parametrize("params", [PreprocessParams(n_frames=4, size=64), None],
                         ids=["other settings", "settings not recorded"])
def test_scores_of_other_preprocessing_are_refused_unless_forced(tmp_path, checkpoint, params,
                                                                 capsys):
    model = tmp_path / "best.pt"
    model.write_bytes(checkpoint.read_bytes())
    _crossval(tmp_path, STRONG, params)
    assert _threshold(tmp_path, model) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("echoquality threshold: error:")
    assert "--force" in err[0]
    if params is not None:
        assert "n_frames 4 (model 16)" in err[0] and "size 64 (model 112)" in err[0]
    assert model.read_bytes() == checkpoint.read_bytes()  # nothing saved
    assert not (tmp_path / ".echoquality" / "decision.json").exists()

    assert _threshold(tmp_path, model, "--force") == 0
    shown = capsys.readouterr()
    assert "Warning:" in shown.err and "Threshold" in shown.out
    assert (tmp_path / ".echoquality" / "decision.json").is_file()


def test_matching_scores_are_saved_and_a_weak_auc_is_warned_about(tmp_path, checkpoint, capsys):
    model = tmp_path / "best.pt"
    model.write_bytes(checkpoint.read_bytes())
    _crossval(tmp_path, WEAK, PreprocessParams())
    assert _threshold(tmp_path, model) == 0
    shown = capsys.readouterr()
    assert "Threshold" in shown.out and "saved" in shown.out
    warnings = [line for line in shown.err.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "0.520" in warnings[0] and "0.6" in warnings[0]
