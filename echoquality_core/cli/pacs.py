"""`echoquality pacs import | send-results | watch`: clips from a DICOMweb PACS, results back.

Credentials come from ECHOQUALITY_PACS_USER/ECHOQUALITY_PACS_PASSWORD, ECHOQUALITY_PACS_TOKEN or
the OS keyring, never from the command line. Output names studies and clips only by counts and
hashed file names.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from echoquality_core.cli.common import fail


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``pacs`` and its sub-commands to the ``echoquality`` parser."""
    pacs = sub.add_parser(
        "pacs", help="import clips from a DICOMweb PACS, send results back as DICOM SR",
        description="Credentials: ECHOQUALITY_PACS_USER + ECHOQUALITY_PACS_PASSWORD (HTTP "
        "basic) or ECHOQUALITY_PACS_TOKEN (bearer), else the OS keyring (service "
        "'echoquality-pacs').")
    cmds = pacs.add_subparsers(dest="pacs_command", required=True)

    p = cmds.add_parser("import", help="search studies (QIDO-RS) and import their clips (WADO-RS)")
    _url(p)
    p.add_argument("--since", help="first study date, YYYY-MM-DD")
    p.add_argument("--until", help="last study date, YYYY-MM-DD")
    p.add_argument("--modality", default="US", help="modality of the clips (default US)")
    p.add_argument("--study", action="append", default=[], metavar="UID",
                   help="only this study (repeat for several)")
    p.add_argument("--accession", help="only studies with this accession number")
    p.add_argument("--description", help="only studies whose description contains this")
    p.add_argument("--into", type=Path, required=True, help="project folder to import into")
    p.add_argument("--workers", type=int, default=4, help="parallel downloads (default 4)")
    p.set_defaults(run=_run_import)

    p = cmds.add_parser("send-results", help="scores CSV → one DICOM SR per clip (STOW-RS)")
    p.add_argument("--scores", type=Path, required=True, help="scores CSV of `echoquality score`")
    p.add_argument("--root", type=Path,
                   help="folder the CSV's clip paths are relative to (default: the CSV's)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="DICOMweb base URL to send the SRs to")
    target.add_argument("--out-dir", type=Path, help="write the SR files here instead")
    p.add_argument("--model", type=Path, help="the model that scored (threshold and version)")
    p.add_argument("--threshold", type=float, help="pass threshold (default: the model's)")
    p.add_argument("--model-version", help="model version written into the SR")
    p.set_defaults(run=_run_send)

    p = cmds.add_parser("watch", help="poll for new US clips, score them, send the results")
    _url(p)
    p.add_argument("--model", type=Path, required=True, help="weights, checkpoint or export")
    p.add_argument("--into", type=Path, default=Path("echoquality-watch"),
                   help="folder for clips, scores.csv and the state file")
    p.add_argument("--since", help="only studies from this date, YYYY-MM-DD")
    p.add_argument("--modality", default="US")
    p.add_argument("--threshold", type=float, help="pass threshold (default: the model's)")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between polls (30)")
    p.add_argument("--iterations", type=int, help="stop after this many polls")
    p.add_argument("--once", action="store_const", const=1, dest="iterations",
                   help="poll once and stop")
    p.set_defaults(run=_run_watch)


def _url(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="DICOMweb base URL, e.g. http://pacs/dicom-web")


def _user_errors() -> tuple[type[BaseException], ...]:
    from echoquality_core.pacs.connection import PacsError

    return (PacsError, OSError, ValueError)


def _run_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from echoquality_core.pacs import PacsConnection, import_studies, search_studies

    try:
        conn = PacsConnection(args.url)
        studies = search_studies(conn, since=args.since, until=args.until,
                                 modality=args.modality, accession=args.accession,
                                 description=args.description, study_uids=args.study)
        print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found "
              f"({sum(s.n_instances for s in studies)} instances)")
        args.into.mkdir(parents=True, exist_ok=True)
        with tqdm(total=0, desc="Importing", unit="clip", disable=None) as bar:
            def progress(done: int, total: int, _name: str) -> None:
                bar.total, bar.n = total, done
                bar.refresh()

            result = import_studies(conn, studies, args.into, modality=args.modality,
                                    workers=args.workers, progress=progress)
    except _user_errors() as exc:
        return fail("pacs import", exc)
    mb = result.n_bytes / 1e6
    print(f"Imported {len(result.downloaded)} clip(s) ({mb:.1f} MB in {result.seconds:.1f} s), "
          f"{len(result.skipped)} already there, {len(result.failed)} failed")
    for _name, reason in result.failed:
        print(f"  {reason}", file=sys.stderr)
    print(f"Project: {args.into.resolve()}")
    return 1 if result.failed else 0


def _send_settings(args: argparse.Namespace) -> tuple[float, str]:
    if args.model is None and (args.threshold is None or args.model_version is None):
        raise ValueError("give --model, or both --threshold and --model-version")
    info: dict = {}
    if args.model is not None:
        from echoquality_core.model.checkpoint import load_scoring_model

        _net, info = load_scoring_model(args.model)
    from echoquality_core.decision import Decision
    from echoquality_core.pacs.send import model_version

    threshold = Decision.from_info(info, args.threshold).threshold
    return threshold, args.model_version or model_version(args.model, info)


def _run_send(args: argparse.Namespace) -> int:
    from echoquality_core.pacs.send import (
        require_sent,
        results_from_scores,
        send_results,
        write_results,
    )

    try:
        threshold, version = _send_settings(args)
        collected = results_from_scores(args.scores, threshold=threshold, version=version,
                                        root=args.root)
        if args.out_dir is not None:
            paths = write_results(collected.results, args.out_dir)
            print(f"Wrote {len(paths)} SR file(s) to {args.out_dir.resolve()}")
        else:
            from echoquality_core.pacs import PacsConnection

            sent = send_results(PacsConnection(args.url), collected.results)
            require_sent(sent)
            print(f"Sent {len(sent.sent)} SR(s) to the PACS")
    except _user_errors() as exc:
        return fail("pacs send-results", exc)
    passed = sum(r.passed for r in collected.results)
    print(f"{passed} pass, {len(collected.results) - passed} below the threshold "
          f"{threshold:.2f}; {len(collected.skipped)} row(s) without a result")
    return 0


def _run_watch(args: argparse.Namespace) -> int:
    from echoquality_core.pacs import PacsConnection
    from echoquality_core.pacs.search import parse_date
    from echoquality_core.pacs.watch import Scorer, Watcher

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        if args.iterations is not None and args.iterations < 1:
            raise ValueError("--iterations must be at least 1")
        conn = PacsConnection(args.url)
        conn.check()
        scorer = Scorer.load(args.model, args.threshold)
        watcher = Watcher(conn, scorer, args.into, since=parse_date(args.since),
                          modality=args.modality, on_event=say)
        say(f"Watching {conn.url} every {args.interval:g} s; results in "
            f"{args.into.resolve()}")
        total = watcher.run(interval=args.interval, iterations=args.iterations)
    except _user_errors() as exc:
        return fail("pacs watch", exc)
    say(f"Done: {total.scored} clip(s) scored, {total.sent} result(s) sent")
    return 0
