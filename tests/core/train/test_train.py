"""Training runs end to end on tiny real demo projects: model saved, MLflow run, stop/cancel,
NaN loss, unreadable clips, and (slow) that the model really learns good vs poor clips."""
from __future__ import annotations

import csv
import logging
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from mlflow import MlflowClient

from echoquality_core.demo.project import synthetic_clip, write_demo_project, write_dicom_clip
from echoquality_core.dicom import read_clip
from echoquality_core.train.events import BatchEnd, EpochEnd, Progress, TrainEnd, TrainError
from echoquality_core.labels.store import LabelStore
from echoquality_core.model.precision import precision
from echoquality_core.runs.tracking import (
    default_tracking_uri,
    download_checkpoint,
    local_artifact_dir,
)
from echoquality_core.train.trainer import TrainConfig, Trainer, train_epoch

pytestmark = [pytest.mark.filterwarnings("ignore:No weights given:UserWarning"),
              pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A 16-clip demo project (8 frames, 96x128); its clip cache is shared by the tests."""
    root = tmp_path_factory.mktemp("demo")
    return write_demo_project(root, n_clips=16, n_frames=8, height=96, width=128, seed=1)


def _config(csv_path: Path, tmp_path: Path, **overrides) -> TrainConfig:
    settings = {
        "annotations_csv": str(csv_path), "videos_dir": None,
        "save_dir": str(tmp_path / "models"), "tracking_uri": default_tracking_uri(tmp_path),
        "n_frames": 4, "stride": 1, "batch_size": 2, "epochs": 2, "learning_rate": 1e-3,
        "device": "cpu", "log_mlflow_model": False,
    }
    return TrainConfig(**(settings | overrides))


def _collect(config: TrainConfig, react=None) -> tuple[TrainEnd, list]:
    events: list = []
    trainer = Trainer(config)

    def callback(event):
        events.append(event)
        if react is not None:
            react(trainer, event)

    trainer.callback = callback
    end = trainer.run()
    assert events[-1] is end
    return end, events


@pytest.mark.slow
def test_run_saves_best_model_logs_finished_mlflow_run_and_loss_decreases(project, tmp_path):
    config = _config(project, tmp_path, epochs=3, log_mlflow_model=True)
    end, events = _collect(config)
    assert end.error is None, end.error
    assert end.best_checkpoint is not None and end.best_checkpoint.is_file()
    assert end.best_checkpoint.parent.parent == tmp_path / "models"
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert epochs[-1].train_loss < epochs[0].train_loss
    assert any(isinstance(e, Progress) and e.done == e.total for e in events)
    n_steps = {e.n_steps for e in events if isinstance(e, BatchEnd)}
    assert n_steps == {-(-end.split_sizes["train"] // 2)}
    assert sum(end.split_sizes.values()) == len(LabelStore(project).paths())

    checkpoint = torch.load(end.best_checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["threshold"] == pytest.approx(end.threshold)
    assert checkpoint["preprocess"]["n_frames"] == 4
    assert 0 <= end.threshold <= 1 and end.best_epoch in (1, 2, 3)

    client = MlflowClient(config.tracking_uri)
    run = client.get_run(end.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(end.run_id, "train_loss")] == [1, 2, 3]
    assert "test_roc_auc" in run.data.metrics or "test_accuracy" in run.data.metrics
    assert run.data.params["batch_size"] == "2"
    assert run.data.params["annotations_csv"] == project.name  # no local folder names
    assert len(run.data.tags["labels_sha256"]) == 64
    artifacts = {a.path for a in client.list_artifacts(end.run_id)}
    assert {"split.csv", "summary.json"} <= artifacts
    assert "checkpoints" not in artifacts  # best.pt is stored once, inside the pyfunc model
    assert end.run_dir.joinpath("split.csv").is_file()
    logged_models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    (model,) = [m for m in logged_models if m.source_run_id == end.run_id]
    held = local_artifact_dir({"artifact_uri": model.artifact_location}) / "artifacts" / "best.pt"
    assert held.read_bytes() == end.best_checkpoint.read_bytes()
    downloaded = download_checkpoint(end.run_id, config.tracking_uri, tmp_path / "dl")
    assert downloaded.read_bytes() == end.best_checkpoint.read_bytes()


@pytest.mark.slow
def test_stop_mid_epoch_keeps_best_model_and_finishes_run(project, tmp_path):
    stop_seen = []

    def react(trainer, event):
        if isinstance(event, BatchEnd) and event.epoch == 2 and event.step == 1:
            trainer.stop()
            stop_seen.append(event.epoch)

    end, events = _collect(_config(project, tmp_path, epochs=5), react)
    assert stop_seen and end.stopped and not end.cancelled and end.error is None
    batches_epoch2 = [e for e in events if isinstance(e, BatchEnd) and e.epoch == 2]
    assert len(batches_epoch2) == 1  # stopped right after the current batch
    assert end.best_epoch == 1 and end.best_checkpoint.is_file()
    run = MlflowClient(default_tracking_uri(tmp_path)).get_run(end.run_id)
    assert run.info.status == "FINISHED"
    assert any(k.startswith("test_") for k in run.data.metrics)


@pytest.mark.slow
def test_cancel_kills_mlflow_run_and_deletes_checkpoints(project, tmp_path):
    config = _config(project, tmp_path, epochs=4)
    trainer = Trainer(config)
    events = []
    for event in trainer.events():
        events.append(event)
        if isinstance(event, BatchEnd) and event.epoch == 2 and event.step == 1:
            assert (trainer.run_dir / "best.pt").is_file()
            trainer.cancel()
    end = events[-1]
    assert isinstance(end, TrainEnd) and end.cancelled and end.best_checkpoint is None
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1]
    # events() runs the trainer in a thread, so it may be one batch ahead of this loop
    assert len([e for e in events if isinstance(e, BatchEnd) and e.epoch == 2]) <= 2
    assert not trainer.run_dir.exists()
    run = MlflowClient(config.tracking_uri).get_run(end.run_id)
    assert run.info.status == "KILLED"


@pytest.mark.slow
def test_nan_loss_reports_error_and_fails_run_without_crashing(project, tmp_path):
    config = _config(project, tmp_path, learning_rate=1e30, epochs=3)
    end, events = _collect(config)
    errors = [e for e in events if isinstance(e, TrainError)]
    assert [e.kind for e in errors] == ["nan_loss"]
    assert "lower learning rate" in errors[0].message and "epoch" in errors[0].message
    assert end.error is errors[0] and end.test_metrics == {}
    assert MlflowClient(config.tracking_uri).get_run(end.run_id).info.status == "FAILED"


@pytest.mark.slow
def test_unreadable_clip_is_reported_and_left_out(project, tmp_path):
    root = tmp_path / "proj"
    shutil.copytree(project.parent, root, ignore=shutil.ignore_patterns(".echoquality", "mlruns*"))
    csv_path = root / project.name
    first = LabelStore(csv_path).paths()[0]
    broken = root / "broken.dcm"
    broken.write_bytes((root / first).read_bytes()[:3000])
    store = LabelStore(csv_path)
    store.set("broken.dcm", 1.0)
    store.set("missing.dcm", 0.0)

    end, events = _collect(_config(csv_path, tmp_path, epochs=1, use_mlflow=False))
    warnings = [e for e in events if isinstance(e, TrainError)]
    assert len(warnings) == 1 and not warnings[0].fatal and warnings[0].kind == "data"
    assert "broken.dcm" in warnings[0].message and "missing.dcm" in warnings[0].message
    assert end.error is None and end.run_id is None
    split_rows = list(csv.DictReader((end.run_dir / "split.csv").open()))
    assert {r["video_path"] for r in split_rows} == set(LabelStore(csv_path).paths()) - {
        "broken.dcm", "missing.dcm"}


@pytest.mark.slow
def test_too_few_usable_clips_fails_clearly(tmp_path):
    csv_path = write_demo_project(tmp_path / "p", n_clips=3, n_frames=4, height=64, width=80,
                                  unlabelled=0.0)
    end, _ = _collect(_config(csv_path, tmp_path))
    assert end.error is not None and end.error.kind == "data" and end.error.fatal
    assert "at least 4" in end.error.message
    assert end.best_checkpoint is None


def test_train_epoch_as_in_the_guide_returns_mean_loss(project, tmp_path):
    from torch.utils.data import DataLoader

    from echoquality_core.data.clips import EchoDataset
    from echoquality_core.model.network import build_model, freeze_model_except_final_layers
    from echoquality_core.data.preprocess import PreprocessParams

    store = LabelStore(project)
    paths = [store.resolve(p) for p in store.paths()[:4]]
    labels = [store.get(p).quality_score for p in store.paths()[:4]]
    ds = EchoDataset(paths, labels, params=PreprocessParams(n_frames=4, stride=1),
                     return_path=True)
    with pytest.warns(UserWarning):
        model = build_model(None)
    freeze_model_except_final_layers(model, 1)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = model.fc.weight.detach().clone()
    loss = train_epoch(model, DataLoader(ds, batch_size=2), torch.nn.BCEWithLogitsLoss(),
                       optimizer, "cpu")
    assert loss > 0 and not torch.equal(before, model.fc.weight)


def test_config_from_toml_resolves_paths_next_to_the_file(tmp_path):
    (tmp_path / "cfg").mkdir()
    toml = tmp_path / "cfg" / "train.toml"
    toml.write_text('[train]\nannotations_csv = "labels.csv"\nepochs = 3\nloss = "focal"\n'
                    'split = [0.6, 0.2, 0.2]\n')
    config = TrainConfig.from_toml(toml, batch_size=4)
    assert Path(config.annotations_csv) == (tmp_path / "cfg" / "labels.csv").resolve()
    assert (config.epochs, config.loss, config.batch_size) == (3, "focal", 4)
    assert config.split == (0.6, 0.2, 0.2) and config.to_dict()["split"] == [0.6, 0.2, 0.2]
    toml.write_text("epochz = 3\n")
    with pytest.raises(ValueError, match="epochz"):
        TrainConfig.from_toml(toml)
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="hinge")


@pytest.mark.slow
def test_cli_train_reports_model_and_mlflow_run(project, tmp_path, capsys):
    from echoquality_core.cli.main import main

    uri = default_tracking_uri(tmp_path)
    code = main(["train", "--csv", str(project), "--save-dir", str(tmp_path / "models"),
                 "--epochs", "1", "--batch-size", "4", "--frames", "4", "--stride", "1",
                 "--device", "cpu", "--tracking-uri", uri, "--experiment", "cli"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"Best model (epoch 1): {tmp_path / 'models'}" in out
    assert "mlflow ui --backend-store-uri" in out and uri in out
    runs = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("cli").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]


@pytest.mark.slow
def test_fine_tuned_model_separates_good_from_poor_clips_on_held_out_patients(tmp_path):
    csv_path = write_demo_project(tmp_path / "p", n_clips=48, n_frames=8, height=96, width=128,
                                  seed=3, unlabelled=0.0)
    config = _config(csv_path, tmp_path, epochs=10, batch_size=4, learning_rate=3e-3,
                     num_unfrozen_layers=2, split=(0.6, 0.2, 0.2), scheduler="none",
                     use_mlflow=False)
    with precision("fp32"):  # the bar was set on fp32 runs; bf16 vs fp32: test_frozen_trunk.py
        end, _ = _collect(config)
    assert end.error is None, end.error
    assert end.split_sizes["test"] >= 6
    assert end.test_metrics["roc_auc"] >= 0.9, end.test_metrics


@pytest.mark.slow
def test_split_of_a_real_run_keeps_every_patient_in_one_split(project, tmp_path):
    """split.csv of a real run, its clips grouped by the patient key read from their DICOM
    headers: every patient's clips are in one split only."""
    rows: list[dict] = []

    def react(trainer, event):
        if isinstance(event, BatchEnd) and not rows:  # the split is written before training
            with (trainer.run_dir / "split.csv").open(newline="") as fh:
                rows.extend(csv.DictReader(fh))
            trainer.cancel()

    end, _ = _collect(_config(project, tmp_path, epochs=1, use_mlflow=False), react)
    assert end.cancelled and end.error is None, end.error
    store = LabelStore(project)
    assert sorted(r["video_path"] for r in rows) == sorted(store.paths())
    splits_of, names_of = defaultdict(set), defaultdict(set)
    for row in rows:
        key = read_clip(store.resolve(row["video_path"])).metadata["patient_key"]
        splits_of[key].add(row["split"])
        names_of[key].add(Path(row["video_path"]).name.split("_")[0])  # p<NN>_c<M>.dcm
    assert all(len(names) == 1 for names in names_of.values()), names_of  # key = patient
    assert len({name for names in names_of.values() for name in names}) == len(names_of)
    assert {key: len(s) for key, s in splits_of.items()} == {key: 1 for key in splits_of}
    assert {s for splits in splits_of.values() for s in splits} == {"train", "val", "test"}
    for name, size in end.split_sizes.items():
        assert size == sum(r["split"] == name for r in rows)


# Made-up patient data that must never leave the DICOM headers (checked case-insensitively).
SENTINEL_NAME, SENTINEL_GIVEN = "ZQXSENTINEL", "WINIFRED"
SENTINEL_ID = "PID-93175"
SENTINEL_BIRTH = "1931072"  # + patient number: 19310721, 19310722, ...
SENTINEL_STUDY = "1.2.826.0.1.3680043.9.7133.931"
SENTINELS = (SENTINEL_NAME, SENTINEL_GIVEN, SENTINEL_ID, SENTINEL_BIRTH, SENTINEL_STUDY)


def _sentinel_project(root: Path) -> Path:
    """4 patients with one good and one noisy clip each; their DICOM headers carry the sentinel
    name, ID, birth date and study UID. Returns the labels CSV."""
    rng = np.random.default_rng(11)
    rows = []
    for patient in range(1, 5):
        for kind, score in (("good", 1), ("noise", 0)):
            rel = f"clips/clip{len(rows):02d}.dcm"
            path = write_dicom_clip(
                root / rel, synthetic_clip(rng, kind, n_frames=8, height=64, width=80),
                patient_id=f"{SENTINEL_ID}-{patient}",
                patient_name=f"{SENTINEL_NAME}{patient}^{SENTINEL_GIVEN}",
                study_uid=f"{SENTINEL_STUDY}{patient}",
            )
            ds = pydicom.dcmread(path)
            ds.PatientBirthDate = f"{SENTINEL_BIRTH}{patient}"
            ds.save_as(path, enforce_file_format=True)
            rows.append((rel, score))
    csv_path = root / "labels.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("video_path", "quality_score"), *rows])
    return csv_path


def _leaks(text: str | bytes) -> list[str]:
    data = text.lower() if isinstance(text, bytes) else text.lower().encode("utf-8")
    return [s for s in SENTINELS if s.lower().encode() in data]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_no_patient_data_reaches_mlflow_run_files_or_logs(tmp_path, caplog, capsys):
    root = tmp_path / "sentinel"
    csv_path = _sentinel_project(root)
    dicom_bytes = (root / "clips" / "clip00.dcm").read_bytes()
    assert _leaks(dicom_bytes) == list(SENTINELS)  # the headers really carry every sentinel

    caplog.set_level(logging.DEBUG)
    config = TrainConfig(annotations_csv=str(csv_path), videos_dir=None, n_frames=4, stride=1,
                         batch_size=2, epochs=1, device="cpu", log_mlflow_model=False)
    end, events = _collect(config)
    assert end.error is None, end.error
    assert end.split_sizes["test"] > 0 and end.run_id is not None

    client = MlflowClient(default_tracking_uri(root))  # the project's own store
    run = client.get_run(end.run_id)
    assert _leaks(repr(run.data.params)) == []
    assert _leaks(repr(run.data.tags)) == []
    assert _leaks(repr(sorted(run.data.metrics))) == []
    assert _leaks(f"{run.info.run_name} {client.get_experiment(run.info.experiment_id).name}") \
        == []

    def listed(path: str | None = None) -> list[str]:
        out = []
        for item in client.list_artifacts(end.run_id, path):
            out += listed(item.path) if item.is_dir else [item.path]
        return out

    artifact_paths = listed()
    assert {"split.csv", "summary.json", "test_predictions.csv"} <= set(artifact_paths)
    assert _leaks("\n".join(artifact_paths)) == []
    artifacts = _files(local_artifact_dir({"artifact_uri": run.info.artifact_uri}))
    assert set(artifacts) == set(artifact_paths)
    assert {p: _leaks(data) for p, data in artifacts.items() if _leaks(data)} == {}

    run_files = _files(end.run_dir)
    assert {"split.csv", "summary.json", "best.pt"} <= set(run_files)
    assert _leaks("\n".join(run_files)) == []
    assert {p: _leaks(data) for p, data in run_files.items() if _leaks(data)} == {}
    everything_else = {p: data for p, data in _files(root).items() if not p.endswith(".dcm")}
    assert "mlruns.db" in everything_else  # the MLflow store, caches, models, artifacts
    assert {p: _leaks(data) for p, data in everything_else.items() if _leaks(data)} == {}

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records and _leaks(logged + caplog.text) == []
    assert _leaks(repr(events)) == []  # what the GUI and the CLI show
    assert _leaks("".join(capsys.readouterr())) == []
