"""``soundscape review``: the command line of the review page."""

from __future__ import annotations

import argparse

__all__ = ["add_command", "run_command"]


def add_command(subparsers, common) -> None:
    """Register ``soundscape review`` on the CLI's subparsers."""
    from .selection import MODES

    p = subparsers.add_parser(
        "review", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="listen to and verify detections in the browser (a local web page)",
        description="Show one clip at a time (spectrogram, audio, class, score) and save yes / "
                    "no / unsure / other-class verdicts to a review table beside the input; "
                    "--report writes precision by score bin, a logistic score -> P(correct) "
                    "fit and thresholds instead.",
        epilog="example:\n  soundscape review detections.csv --audio recordings/\n"
               "  soundscape review scores/ --audio recordings/ --select stratified --n 30\n"
               "  soundscape review detections.csv --audio recordings/ --report review_report")
    p.add_argument("source", metavar="SCORES_OR_DETECTIONS",
                   help="score table, detection table (CSV/TSV/Parquet), Raven .txt table or "
                        "predict_recordings output folder")
    p.add_argument("--audio", required=True, metavar="ROOT",
                   help="folder holding the recordings; nothing outside it is served")
    p.add_argument("--review_table", help="where verdicts go (default: <input>.review.csv "
                                          "beside the input); an existing table is continued")
    p.add_argument("--select", choices=MODES, default="all",
                   help="which clips: all (default), stratified (N per class over score bins), "
                        "uncertain (N per class nearest 0.5) or top (N per class)")
    p.add_argument("--n", type=int, help="clips per class for --select other than all "
                                         "(default 20)")
    p.add_argument("--bins", type=int, default=10, help="score bins (default 10)")
    p.add_argument("--min_score", type=float, help="only clips scoring at least this")
    p.add_argument("--classes", nargs="+", help="only these classes")
    p.add_argument("--seed", type=int, default=0, help="random seed of --select stratified")
    p.add_argument("--context", type=float, default=1.0,
                   help="seconds of spectrogram before and after each clip (default 1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; another "
                        "address lets others listen to the recordings: a warning is printed)")
    p.add_argument("--report", metavar="OUT",
                   help="do not serve: write OUT.json and OUT.png from the review table")
    p.add_argument("--target_precision", type=float, default=0.9,
                   help="--report: precision the thresholds aim at (default 0.9)")


def run_command(args) -> int:
    """``soundscape review``: serve the page until Ctrl-C (or write the report)."""
    from .table import default_review_path

    if args.report:
        from .report import write_report

        table = args.review_table or default_review_path(args.source)
        for path in write_report(table, args.report, target_precision=args.target_precision,
                                 bins=args.bins):
            print(f"wrote {path}")
        return 0
    from . import serve

    serve(args.source, args.audio, review_table=args.review_table, mode=args.select, n=args.n,
          bins=args.bins, min_score=args.min_score, classes=args.classes, seed=args.seed,
          host=args.host, port=args.port, context=args.context, block=True,
          quiet=getattr(args, "quiet", False))
    return 0
