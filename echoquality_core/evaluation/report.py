"""A training run as one self-contained HTML report (File ▸ Export report, ``echoquality report``).

The report holds the run's test metrics with 95% confidence intervals (``stats.metrics_with_ci``,
the patient-level bootstrap every other surface shows), ROC / precision-recall / calibration plots
and the confusion matrix (matplotlib PNGs embedded as base64), the disagreement list with a
GradCAM still per clip, the run settings and a data summary. It reads no DICOM header field:
clips appear under their path in the labels CSV and nothing else (no patient names, IDs or
dates). No Qt here.
"""
from __future__ import annotations

import base64
import csv
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from echoquality_core import __version__
from echoquality_core.decision import Decision, called_good, disagrees, labelled_good
from echoquality_core.evaluation.stats import METHOD, METRICS, NAMES, Estimate
from echoquality_core.files.atomic import atomic_write
from echoquality_core.runs.folder import RunFolder

SECTIONS = ("summary", "metrics", "plots", "confusion", "disagreements", "settings", "data")
_PATH_FIELDS = ("annotations_csv", "videos_dir", "model_weights", "save_dir", "cache_dir")
_HIDDEN_SETTINGS = ("tracking_uri",)
Progress = Callable[[int, int, str], None]


class ReportError(ValueError):
    """The run folder cannot make a report (message says what is missing and what to do)."""


@dataclass
class Disagreement:
    """A test clip the model called differently from its label, with its GradCAM still."""

    rel: str
    label: float
    score: float
    still_png: bytes | None = None
    note: str = ""

    @property
    def kind(self) -> str:
        return "false negative" if labelled_good(self.label) else "false positive"


@dataclass
class ReportData:
    """Everything the HTML shows, gathered from the run folder (and the project's clips)."""

    run_name: str
    threshold: float
    labels: np.ndarray
    scores: np.ndarray
    rels: list[str]
    metrics: dict[str, Any]
    estimates: dict[str, Estimate]
    basis: str
    settings: dict[str, Any]
    split_counts: dict[str, dict[str, int]]
    disagreements: list[Disagreement] = field(default_factory=list)


# --- gathering ---------------------------------------------------------------------------------

def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return {}


def _split_counts(split_csv: Path) -> dict[str, dict[str, int]]:
    """{split: {"good": n, "poor": n}} from the run's split.csv ({} when absent)."""
    counts: dict[str, dict[str, int]] = {}
    try:
        with open(split_csv, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                try:
                    good = labelled_good(float(row["label"]))
                except (KeyError, TypeError, ValueError):
                    continue
                cell = counts.setdefault(row.get("split") or "?", {"good": 0, "poor": 0})
                cell["good" if good else "poor"] += 1
    except OSError:
        return {}
    return counts


def _settings(info: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """Run settings without local paths (file/folder names only) or tracking addresses."""
    out: dict[str, Any] = {}
    for key, value in (info.get("config") or {}).items():
        if key in _HIDDEN_SETTINGS:
            continue
        out[key] = Path(value).name if key in _PATH_FIELDS and value else value
    for key in ("best_epoch", "best_val_loss", "split_sizes"):
        if key in summary:
            out[key] = summary[key]
    if info.get("preprocess"):
        out["preprocess"] = info["preprocess"]
    return out


def _project_root(info: dict[str, Any], project_root: str | os.PathLike | None) -> Path | None:
    if project_root is not None:
        return Path(project_root)
    config = info.get("config") or {}
    if config.get("videos_dir"):
        return Path(config["videos_dir"])
    if config.get("annotations_csv"):
        return Path(config["annotations_csv"]).parent
    return None


def collect_report(run_dir: str | os.PathLike) -> tuple[ReportData, dict[str, Any]]:
    """The report's numbers from a run folder, and the checkpoint's info (for GradCAM): the
    test scores as the model's decision (its checkpoint's threshold and calibration, else the
    run's threshold) reads them. ReportError when the folder has no test predictions."""
    from echoquality_core.evaluation.metrics import metrics_from_scores
    from echoquality_core.evaluation.stats import describe_basis, metrics_with_ci

    folder = RunFolder(run_dir)
    if not folder.path.is_dir():
        raise ReportError(f"{folder.path}: no such run folder; give the folder of a training "
                          "run (it holds best.pt and test_predictions.csv)")
    if not folder.predictions.is_file():
        raise ReportError(f"{folder.path.name}: the run has no test_predictions.csv (it ended "
                          "before testing); export the report of a finished run")
    predictions = folder.read_predictions()
    if not predictions:
        raise ReportError(f"{folder.path.name}: test_predictions.csv has no scored clips")
    info = _checkpoint_info(folder)
    decision = Decision.from_info({"threshold": folder.read_threshold(), **info})
    threshold = decision.threshold
    rels = sorted(predictions)
    labels = np.array([predictions[r][0] for r in rels], dtype=float)
    scores = decision.scores([predictions[r][1] for r in rels])
    metrics = metrics_from_scores(labels, scores, threshold)
    known = folder.read_groups() or {}
    groups = [known[r] for r in rels] if all(r in known for r in rels) else None
    data = ReportData(
        run_name=folder.path.name, threshold=threshold, labels=labels, scores=scores, rels=rels,
        metrics=metrics, estimates=metrics_with_ci(labels, scores, groups, threshold),
        basis=describe_basis(labels, groups, "Test split")
        + ("" if groups else " (each clip counted as its own patient: this run's "
           "test_predictions.csv does not say which clips share a patient)"),
        settings=_settings(info, _read_json(folder.summary)),
        split_counts=_split_counts(folder.split_csv),
        disagreements=sorted(
            (Disagreement(r, lab, s) for r, lab, s in zip(rels, labels, scores, strict=True)
             if disagrees(lab, s, threshold)),
            key=lambda d: (-abs(d.score - threshold), d.rel)),
    )
    return data, info


def _checkpoint_info(folder: RunFolder) -> dict[str, Any]:
    """The best checkpoint's extra info (config, preprocess, threshold, calibration); {}
    without a readable one."""
    from echoquality_core.model.checkpoint import read_info

    path = folder.find_checkpoint()
    if path is None:
        return {}
    try:
        info = read_info(path)
    except (OSError, ValueError):  # WeightsError is a ValueError
        return {}
    info["checkpoint"] = path
    return info


def add_gradcam_stills(data: ReportData, info: dict[str, Any], project_root: Path | None,
                       limit: int = 12, progress: Progress | None = None) -> None:
    """A GradCAM strip (4 model frames) per disagreement, at most ``limit``; a clip that is
    missing or unreadable gets a note instead."""
    from echoquality_core.model.checkpoint import load_scoring_model, params_from_info
    from echoquality_core.scoring.gradcam import explain_clip, save_explanation

    todo = data.disagreements[:limit]
    if not todo:
        return
    if info.get("checkpoint") is None or project_root is None:
        for d in todo:
            d.note = "no GradCAM: the run's model or the clips' folder was not found"
        return
    net, _ = load_scoring_model(info["checkpoint"])
    params = params_from_info(info)
    with tempfile.TemporaryDirectory() as tmp:
        for i, d in enumerate(todo):
            if progress:
                progress(i, len(todo), f"GradCAM of {Path(d.rel).name}")
            path = project_root / d.rel
            try:
                result = explain_clip(net, path, params,
                                      "good" if called_good(d.score, data.threshold) else "poor")
                png = save_explanation(result, Path(tmp) / f"{i}.png", n_frames_shown=4)
                d.still_png = png.read_bytes()
            except (OSError, ValueError) as exc:
                d.note = f"no GradCAM: {type(exc).__name__}: {exc}".replace(str(path), d.rel)
    for d in data.disagreements[limit:]:
        d.note = f"GradCAM shown for the {limit} most confident mistakes only"


# --- rendering ---------------------------------------------------------------------------------

def _png(plot: Callable[[Path], Path]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        data = plot(Path(tmp) / "plot.png").read_bytes()
    return _img(data, "")


def _img(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{encoded}">'


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.3f}"
    return escape(str(value))


def _setting(value: Any) -> str:
    """A run setting with its significant digits (learning rate 1e-05, not 0.000)."""
    if isinstance(value, (dict, list)):
        return escape(json.dumps(value))
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    return escape(str(value))


def _metrics_table(data: ReportData) -> str:
    rows = []
    for key in METRICS:
        e = data.estimates[key]
        ci = (f"{e.low:.3f} – {e.high:.3f}" if math.isfinite(e.low) and math.isfinite(e.high)
              else "n/a")
        rows.append(f"<tr><td>{NAMES[key]}</td><td>{_fmt(e.value)}</td><td>{ci}</td></tr>")
    return ("<table><tr><th>Metric</th><th>Value</th><th>95% CI</th></tr>" + "".join(rows)
            + f"</table><p>{escape(data.basis)}, decision threshold {data.threshold:.3f} "
            f"({METHOD}).</p>")


def _plots(data: ReportData) -> str:
    from echoquality_core.evaluation import plots

    y, s = data.labels, data.scores
    return "".join(f"<figure>{_png(make)}<figcaption>{name}</figcaption></figure>" for name, make in (
        ("ROC curve", lambda p: plots.plot_roc(y, s, p)),
        ("Precision-recall", lambda p: plots.plot_precision_recall(y, s, p)),
        ("Calibration (reliability)", lambda p: plots.plot_reliability(y, s, p, n_bins=5)),
        ("Scores by label", lambda p: plots.plot_score_histogram(y, s, data.threshold, p)),
    ))


def _confusion(data: ReportData) -> str:
    from echoquality_core.evaluation import plots

    (tn, fp), (fn, tp) = data.metrics["confusion_matrix"]
    table = ("<table><tr><th></th><th>called poor</th><th>called good</th></tr>"
             f"<tr><th>labelled poor</th><td>{tn}</td><td>{fp}</td></tr>"
             f"<tr><th>labelled good</th><td>{fn}</td><td>{tp}</td></tr></table>")
    image = _png(lambda p: plots.plot_confusion_matrix(data.metrics["confusion_matrix"], p,
                                                       data.threshold))
    return table + f"<figure>{image}</figure>"


def _disagreements(data: ReportData) -> str:
    if not data.disagreements:
        return "<p>The model agrees with every label of the test split.</p>"
    rows = []
    for d in data.disagreements:
        still = _img(d.still_png, f"GradCAM of {d.rel}") if d.still_png else escape(d.note)
        rows.append(f"<tr><td>{escape(d.rel)}</td><td>{d.kind}</td><td>{d.label:g}</td>"
                    f"<td>{d.score:.3f}</td><td class=still>{still}</td></tr>")
    return ("<p>Most confident mistakes first. GradCAM: bright = where the model looked for "
            "its call.</p><table><tr><th>Clip</th><th>Kind</th><th>Label</th><th>Score</th>"
            "<th>GradCAM</th></tr>" + "".join(rows) + "</table>")


def _settings_table(data: ReportData) -> str:
    rows = "".join(
        f"<tr><td>{escape(k)}</td><td>{_setting(v)}"
        "</td></tr>" for k, v in data.settings.items())
    return f"<table>{rows}</table>" if rows else "<p>The run's settings were not found.</p>"


def _data_table(data: ReportData) -> str:
    if not data.split_counts:
        return "<p>The run's split.csv was not found.</p>"
    rows = "".join(f"<tr><td>{escape(split)}</td><td>{c['good']}</td><td>{c['poor']}</td>"
                   f"<td>{c['good'] + c['poor']}</td></tr>"
                   for split, c in sorted(data.split_counts.items()))
    return ("<table><tr><th>Split</th><th>Good</th><th>Poor</th><th>Clips</th></tr>" + rows
            + "</table><p>Clips were split by patient (no patient in two splits). The report "
            "reads no DICOM header: no patient names, IDs or dates.</p>")


_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left}figure{display:inline-block;margin:.5em}img{max-width:100%}
td.still img{max-width:520px}h2{border-bottom:2px solid #2f7fb0;padding-bottom:3px}"""


def render_report(data: ReportData) -> str:
    """The report as one HTML document (images inline)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = {
        "summary": f"<p>Run <b>{escape(data.run_name)}</b>, report written {stamp} by "
                   f"EchoQuality Studio {__version__}. ROC AUC "
                   f"{_fmt(data.estimates['roc_auc'].value)}, accuracy "
                   f"{_fmt(data.estimates['accuracy'].value)} on {data.metrics['n']} test "
                   f"clips; {len(data.disagreements)} disagreements.</p>",
        "metrics": _metrics_table(data), "plots": _plots(data), "confusion": _confusion(data),
        "disagreements": _disagreements(data), "settings": _settings_table(data),
        "data": _data_table(data),
    }
    titles = {"summary": "Summary", "metrics": "Metrics", "plots": "ROC, precision-recall and "
              "calibration", "confusion": "Confusion matrix", "disagreements": "Disagreements",
              "settings": "Run settings", "data": "Data"}
    sections = "".join(f'<section id="{k}"><h2>{titles[k]}</h2>{body[k]}</section>'
                       for k in SECTIONS)
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>EchoQuality report "
            f"– {escape(data.run_name)}</title><style>{_CSS}</style></head><body>"
            f"<h1>EchoQuality report: {escape(data.run_name)}</h1>{sections}</body></html>")


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike, *,
                 project_root: str | os.PathLike | None = None, gradcam_limit: int = 12,
                 progress: Progress | None = None) -> Path:
    """Write the HTML report of the run in ``run_dir`` to ``out`` (atomic); returns ``out``.
    ``project_root`` is the clips' folder (default: the run's own setting)."""
    data, info = collect_report(run_dir)
    root = _project_root(info, project_root)
    add_gradcam_stills(data, info, root if root and root.is_dir() else None, gradcam_limit,
                       progress)
    html = render_report(data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w", encoding="utf-8") as fh:
        fh.write(html)
    return out
