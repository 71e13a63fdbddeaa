"""`python -m bench` (what `make bench` runs): our API against a raw ASGI app and a floor app.

Starts every server itself (one uvicorn worker each, pinned to CPU 0, wrk pinned to CPU 1),
measures in interleaved rounds, prints the tables and targets, writes bench/results.json.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from bench.cases import CASES
from bench.runner import Options, run
from bench.wrk import WrkError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    names = ", ".join(case.name for case in CASES)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=_positive, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--rounds", type=_positive, default=3, help="interleaved rounds (3)")
    parser.add_argument("--warmup", type=_positive, default=1, help="warm-up seconds per case (1)")
    parser.add_argument(
        "--connections", type=_positive, default=32, help="connections of the main runs (32)"
    )
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated cases, kinds (raw, floor, bots, history, post) or databases "
        f"(pg, sqlite); cases: {names}",
    )
    parser.add_argument("--skip-growth", action="store_true", help="skip the cost-growth section")
    parser.add_argument("--skip-overload", action="store_true", help="skip the @64/@256 runs")
    parser.add_argument("--skip-argon2", action="store_true", help="skip the login-burst check")
    parser.add_argument(
        "--growth-posts", type=_positive, default=20, help="sequential posts per growth level (20)"
    )
    parser.add_argument(
        "--time-budget",
        type=_positive,
        default=Options.time_budget,
        help="seconds; SQLite cost growth is skipped if it would end later (570)",
    )
    parser.add_argument(
        "--output", type=Path, default=Options.output, help="results file (bench/results.json)"
    )
    return parser


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM (CI cancelling the job) unwinds like Ctrl-C, so the servers get stopped.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = Options(
        duration=args.duration,
        rounds=args.rounds,
        warmup=args.warmup,
        connections=args.connections,
        only=tuple(args.only.split(",")) if args.only else None,
        skip_growth=args.skip_growth,
        skip_overload=args.skip_overload,
        skip_argon2=args.skip_argon2,
        growth_posts=args.growth_posts,
        time_budget=args.time_budget,
        output=args.output,
    )
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(options)
    except (ValueError, WrkError) as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped, databases dropped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
