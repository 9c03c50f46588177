"""Issue 21.4: one run, one set of numbers. evaluate (CLI output), the report (HTML) and the
run's MLflow metrics show the metrics and 95% CIs of ``stats.metrics_with_ci`` (patient-level
bootstrap), computed here from the run's own test predictions."""
from __future__ import annotations

import re

import pytest

from echoquality_core.cli.main import main
from echoquality_core.evaluation.stats import METRICS, NAMES, metrics_with_ci
from echoquality_core.runs.folder import RunFolder


def _triple(e) -> tuple[str, str, str]:
    return tuple("n/a" if v != v else f"{v:.3f}" for v in (e.value, e.low, e.high))


@pytest.mark.slow
def test_evaluate_report_and_mlflow_show_the_same_metrics_and_intervals(trained_run, tmp_path,
                                                                        capsys, monkeypatch):
    import mlflow

    from echoquality_core.evaluation.report import write_report
    from echoquality_core.runs.tracking import default_tracking_uri

    root, end = trained_run
    folder = RunFolder(end.run_dir)
    predictions, groups = folder.read_predictions(), folder.read_groups()
    assert groups and set(groups) == set(predictions)  # the patients travel with the run
    rels = sorted(predictions)
    want = metrics_with_ci([predictions[r][0] for r in rels], [predictions[r][1] for r in rels],
                           [groups[r] for r in rels], folder.read_threshold())
    want = {k: _triple(want[k]) for k in METRICS}

    # evaluate scores the clips again: in fp32, as the run's own test did (bf16 moves scores
    # by ~1e-3, which is not what this test is about)
    monkeypatch.setenv("ECHOQUALITY_PRECISION", "fp32")
    assert main(["evaluate", "--run", end.run_id, "--csv", str(root / "labels.csv"),
                 "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "eval")]) == 0
    shown = capsys.readouterr().out
    for key, (value, low, high) in want.items():
        line = next(x for x in shown.splitlines() if x.strip().startswith(NAMES[key] + " "))
        assert line.split()[-1] == "n/a" if value == "n/a" else \
            f"{value} (95% CI {low}-{high})" in line, (key, line, want[key])

    html = write_report(end.run_dir, tmp_path / "report.html", gradcam_limit=0).read_text()
    for key, (value, low, high) in want.items():
        row = re.search(rf"<tr><td>{re.escape(NAMES[key])}</td><td>([^<]*)</td><td>([^<]*)</td>",
                        html)
        assert row, key
        assert row.groups() == (value, "n/a" if low == "n/a" else f"{low} – {high}"), key

    logged = mlflow.MlflowClient(default_tracking_uri(root)).get_run(end.run_id).data.metrics
    for key, (value, low, high) in want.items():
        if value == "n/a":
            assert f"test_{key}" not in logged
            continue
        assert (f"{logged[f'test_{key}']:.3f}", f"{logged[f'test_{key}_ci_low']:.3f}",
                f"{logged[f'test_{key}_ci_high']:.3f}") == (value, low, high), key
