"""A real training run from a cached starting point records it in MLflow; bad starting weights
end a run before any clip is prepared and before an MLflow run exists."""
from __future__ import annotations

import pytest
import torch

from echoquality_core.files.download import file_sha256
from echoquality_core.train.events import Progress
from echoquality_core.runs.tracking import default_tracking_uri, list_runs
from echoquality_core.train.trainer import TrainConfig, Trainer


def test_bad_weights_end_the_run_before_clips_and_mlflow(project_copy, tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"epochs": 3}, bad)
    events = []
    config = TrainConfig(annotations_csv=str(project_copy / "labels.csv"), videos_dir=None,
                         model_weights=str(bad), device="cpu")
    end = Trainer(config, callback=events.append).run()
    assert end.error is not None and end.error.kind == "weights"
    assert end.error.message.startswith("bad.pt: no model state dict found")
    assert not [e for e in events if isinstance(e, Progress)]  # no clip was prepared
    assert not (project_copy / "mlruns.db").exists()


@pytest.mark.slow
def test_a_run_from_kinetics400_records_its_starting_point(tmp_path, monkeypatch,
                                                           one_torch_thread):
    from torchvision.models.video import r2plus1d_18

    from echoquality_core.demo.project import write_demo_project

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("ECHOQUALITY_CACHE", str(cache))
    torch.manual_seed(5)
    weights = cache / "r2plus1d_18-91a641e6.pth"  # torchvision's format, 400-class head
    torch.save(r2plus1d_18(num_classes=400).state_dict(), weights)
    csv_path = write_demo_project(tmp_path / "p", n_clips=16, n_frames=8, height=96, width=128,
                                  seed=3, unlabelled=0.1)
    config = TrainConfig(annotations_csv=str(csv_path), videos_dir=None, n_frames=4, stride=1,
                         batch_size=4, epochs=1, device="cpu", model_weights="kinetics400",
                         log_mlflow_model=False)
    end = Trainer(config).run()
    assert end.error is None and end.best_checkpoint is not None, end
    params = list_runs(default_tracking_uri(csv_path.parent))[0]["params"]
    assert params["starting_point"] == "kinetics400"
    assert params["starting_sha256"] == file_sha256(weights)
    assert params["model_weights"] == "kinetics400"
