"""CLI of the several-raters study: ``echoquality agreement``, ``raters`` and ``adjudicate``.

``--csv`` is the project's labels CSV (the training table; the raters' labels are read from
``<stem>_by_rater.csv`` beside it) or the per-rater file itself.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from echoquality_core.cli.common import fail


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the ``agreement``, ``raters`` and ``adjudicate`` subcommands."""
    p = sub.add_parser("agreement", help="inter-rater agreement (kappa, alpha, %% agreement, "
                                         "confusion matrices) with bootstrap 95%% CIs")
    _csv_option(p)
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--no-tags", action="store_true", help="leave out per-issue-tag agreement")
    p.set_defaults(run=run_agreement)

    p = sub.add_parser("raters", help="list the raters and the training-table policy; "
                                      "--policy changes it and rewrites the training table")
    _csv_option(p)
    p.add_argument("--policy", choices=_policies(), help="set the training-table policy")
    p.set_defaults(run=run_raters)

    p = sub.add_parser("adjudicate", help="list clips the raters disagree about, or record "
                                          "the final label of one (--clip, --score, --by)")
    _csv_option(p)
    p.add_argument("--clip", help="clip path (relative to the labels CSV's folder)")
    p.add_argument("--score", type=float, help="final quality score 0..1")
    p.add_argument("--by", help="the adjudicator's name")
    p.add_argument("--notes", default=None, help="why")
    p.set_defaults(run=run_adjudicate)


def _policies() -> list[str]:
    from echoquality_core.labels.raters import POLICIES

    return list(POLICIES)


def _csv_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", type=Path, required=True,
                   help="the labels CSV (or its <stem>_by_rater.csv)")


def _open(command: str, path: Path):
    """(Project, None) or (None, exit code) with the error printed."""
    from echoquality_core.labels.folder import labels_table
    from echoquality_core.labels.project import Project
    from echoquality_core.labels.store import LabelError

    table = labels_table(path)
    if not table.is_file():
        return None, fail(command, f"labels CSV not found: {table}")
    try:
        project = Project(table.parent, table)
    except (LabelError, OSError) as exc:
        return None, fail(command, f"{table.name}: {exc}")
    if not project.raters.exists:
        return None, fail(command, f"{table.name} has no per-rater labels "
                                    f"({project.raters.path.name} not found): one rater only")
    return project, None


def run_agreement(args: argparse.Namespace) -> int:
    from echoquality_core.labels.agreement import agreement_report

    project, code = _open("agreement", args.csv)
    if project is None:
        return code
    labels = project.raters.labels()
    if len(project.raters.raters()) < 2:
        return fail("agreement", f"{project.raters.path.name} has labels of one rater only")
    if args.n_boot < 0:
        return fail("agreement", "--n-boot must be 0 or more")
    print(agreement_report(labels, n_boot=args.n_boot, seed=args.seed,
                           tags=not args.no_tags).format())
    return 0


def run_raters(args: argparse.Namespace) -> int:
    from echoquality_core.labels.raters import POLICIES, adjudication_queue
    from echoquality_core.labels.store import LabelError

    project, code = _open("raters", args.csv)
    if project is None:
        return code
    if args.policy:
        try:
            changed = project.set_policy(args.policy)
        except (LabelError, OSError) as exc:
            return fail("raters", str(exc))
        print(f"Policy set to {args.policy}: {len(changed)} training-table rows changed")
    store = project.raters
    for rater in store.raters():
        n = sum(label.rater == rater for label in store.labels())
        print(f"{rater}: {n} clips")
    queue = adjudication_queue(store)
    decided = sum(d.adjudication is not None for d in queue)
    print(f"Policy: {project.policy} ({POLICIES[project.policy]}); adjudicated first")
    print(f"Disagreements: {len(queue)} ({decided} adjudicated)")
    return 0


def run_adjudicate(args: argparse.Namespace) -> int:
    from echoquality_core.labels.store import LabelError
    from echoquality_core.labels.raters import adjudication_queue

    project, code = _open("adjudicate", args.csv)
    if project is None:
        return code
    if args.clip is None:
        for d in adjudication_queue(project.raters):
            given = ", ".join(f"{la.rater} {la.quality_score:g}" for la in d.labels)
            final = (f"  -> {d.adjudication.quality_score:g} by {d.adjudication.rater} "
                     f"{d.adjudication.labeled_at}" if d.adjudication else "")
            agreed = "  (the raters agreed)" if d.agreed else ""
            print(f"{d.rel}  spread {d.spread:g}  {given}{final}{agreed}")
        return 0
    if args.score is None or not (args.by or "").strip():
        return fail("adjudicate", "--clip needs --score and --by")
    try:
        change = project.adjudicate(args.clip, args.score, by=args.by, notes=args.notes)
    except (LabelError, ValueError) as exc:
        return fail("adjudicate", str(exc))
    row = project.store.get(change.rel)
    print(f"{change.rel}: final label {change.after.quality_score:g} by {change.after.rater} at "
          f"{change.after.labeled_at}; training table {row.quality_score:g}")
    given = {la.quality_score for la in project.raters.labels(change.rel)}
    if len(given) == 1:
        print(f"Note: the raters agreed on {given.pop():g}; this decision overrides them "
              "(listed by `echoquality adjudicate`)")
    return 0
