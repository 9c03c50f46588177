"""``echoquality score`` (a folder of clips → a resumable scores CSV) and ``echoquality gradcam``
(the heat-map strip of one clip)."""
from __future__ import annotations

import argparse
from pathlib import Path

from echoquality_core.cli.common import add_trust, clip_progress, fail
from echoquality_core.cli.progress import finish, working


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``score`` and ``gradcam`` to the echoquality command."""
    _add_score(sub)
    _add_gradcam(sub)


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score clips with a quality model and write a CSV (resumable)",
        description="Score DICOM clips (folders are searched recursively; a CSV with a "
        "video_path column works too). Clips already scored in --out are skipped (unreadable "
        "ones are tried again). The threshold defaults to the checkpoint's, else 0.3 (the "
        "original inference script's).",
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="folders, DICOM files or CSVs with a video_path column")
    p.add_argument("--model", type=Path, required=True,
                   help="weights, checkpoint (best.pt) or TorchScript export (file or folder)")
    p.add_argument("--out", type=Path, required=True, help="scores CSV to write or resume")
    p.add_argument("--threshold", type=float, help="pass if score >= threshold")
    p.add_argument("--gradcam", type=Path, metavar="DIR",
                   help="write GradCAM strips of the clips that fail into DIR")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="clip loading processes (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--cache", type=Path, metavar="DIR", help="cache of preprocessed clips")
    add_trust(p)
    from echoquality_core.cli.distributed import add_score_options

    add_score_options(p)
    p.set_defaults(run=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    from echoquality_core.cli import distributed as cli_distributed

    if cli_distributed.wants_distributed(args):
        return cli_distributed.run_score_rank(args, fail)
    # torch and the model take seconds to load: say so at once (stdout: stderr is for errors)
    print(f"Scoring into {args.out.name}: loading torch and the model {args.model.name} ...",
          flush=True)
    from echoquality_core.scoring.score import score_into_csv

    bar, progress = clip_progress("Scoring")
    try:
        info = score_into_csv(
            cli_distributed.score_inputs(args), args.model, args.out,
            threshold=args.threshold,
            device=args.device, batch_size=args.batch_size, num_workers=args.workers,
            cache_dir=args.cache, gradcam_dir=args.gradcam, progress=progress,
            trust_exported=args.trust_exported,
        )
    except (OSError, ValueError) as exc:
        finish(bar, failed=True)
        return fail("score", exc)
    finally:
        finish(bar)
    print(f"Scored {info.scored} clip(s): {info.passed} pass, "
          f"{info.scored - info.passed} below the threshold {info.threshold:.2f}"
          + (f"; {info.failed} unreadable (see the error column)." if info.failed else "."))
    if info.skipped:
        print(f"Skipped {info.skipped} clip(s) already in {args.out.name}.")
    print(f"Scores: {args.out.resolve()}")
    return 0


def _add_gradcam(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gradcam", help="GradCAM heat-map strip of one clip")
    p.add_argument("clip", type=Path, help="DICOM clip")
    p.add_argument("--model", type=Path, required=True, help="weights or checkpoint")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--layer", default="layer4", help="layer to explain (default layer4)")
    p.add_argument("--explain", choices=("good", "poor"), default="good",
                   help="show what raised (good) or lowered (poor) the score")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=_run_gradcam)


def _run_gradcam(args: argparse.Namespace) -> int:
    from echoquality_core.decision import Decision
    from echoquality_core.model.checkpoint import (
        load_scoring_model,
        params_from_info,
        require_checkpoint,
        score_arrays,
    )
    from echoquality_core.data.clips import ClipLoadError
    from echoquality_core.dicom import DicomReadError
    from echoquality_core.scoring.gradcam import explain_clip, save_explanation
    from echoquality_core.model.network import resolve_device

    try:
        if not args.clip.is_file():
            raise FileNotFoundError(f"clip not found: {args.clip}")
        require_checkpoint(args.model)  # refused before it is loaded (it would run code)
        net, info = load_scoring_model(args.model)
        decision = Decision.from_info(info)
        device = resolve_device(args.device)
        net.to(device)
        with working(f"GradCAM of {args.clip.name}"):
            result = explain_clip(net, args.clip, params_from_info(info), args.explain,
                                  args.layer)
            # the score as `echoquality score` computes it (its precision), then its verdict
            verdict = decision.verdict(score_arrays(net, result.video[None], device)[0])
            args.out.parent.mkdir(parents=True, exist_ok=True)
            save_explanation(result, args.out, verdict=verdict)
    except (OSError, ValueError, DicomReadError, ClipLoadError) as exc:
        return fail("gradcam", exc)
    print(f"{args.clip.name}: score {verdict.score:.3f} ({verdict.assessment}; "
          f"{'pass' if verdict.passed else 'fail'} at threshold {decision.threshold:.2f})")
    print(f"GradCAM ({args.layer}, explains '{args.explain}'): {args.out.resolve()}")
    return 0
