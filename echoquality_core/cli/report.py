"""``echoquality report --run RUN --out report.html``: a run's self-contained HTML report."""
from __future__ import annotations

import argparse
from pathlib import Path

from echoquality_core.cli.common import fail


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` sub-command."""
    p = sub.add_parser("report", help="write a training run's report as one HTML file",
                       description="Metrics with 95% CIs, ROC/PR/calibration plots, confusion "
                       "matrix, disagreements with GradCAM, settings and data summary; no "
                       "patient data.")
    p.add_argument("--run", dest="run_dir", type=Path, required=True,
                   help="the run's folder (holds best.pt and test_predictions.csv)")
    p.add_argument("--out", type=Path, required=True, help="HTML file to write")
    p.add_argument("--project", type=Path,
                   help="folder of the clips (default: the one the run was trained on)")
    p.add_argument("--gradcam", type=int, default=12, metavar="N",
                   help="GradCAM stills for at most N disagreements (default 12)")
    p.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from echoquality_core.evaluation.report import write_report

    try:
        out = write_report(args.run_dir, args.out, project_root=args.project,
                           gradcam_limit=args.gradcam)
    except (OSError, ValueError) as exc:
        return fail("report", exc)
    print(f"Report written to {out.resolve()}")
    return 0
