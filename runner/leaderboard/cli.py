"""The ``leaderboard`` subcommand of ``python -m runner``: load, rank, print."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner import storage
from runner.leaderboard.queries import load, top
from runner.leaderboard.render import render_table


def add_leaderboard_command(commands: argparse._SubParsersAction) -> None:
    """Add ``leaderboard`` to the ``python -m runner`` subcommands (called from ``runner.cli``)."""
    board = commands.add_parser(
        "leaderboard", help="rank recorded trials by a validation metric",
        description="Reads RESULTS/leaderboard/<sweep_id>/<trial_id>.parquet (one row per trial) and prints the "
                    "best trials by a validation metric, with the matching test metric beside it (never used to "
                    "rank). Columns are documented in results/README.md.")
    storage.add_results_argument(board, help="results folder or URI such as s3://bucket/prefix (default "
                                             "$CXR_RUNNER_RESULTS or results)")
    board.add_argument("--task", help="only trials of this task")
    board.add_argument("--sweep", help="only trials of this sweep (name or id)")
    board.add_argument("--by", metavar="METRIC",
                       help="validation column to rank by, e.g. val_f1 (default: the metric the sweep optimised)")
    board.add_argument("--mode", choices=("max", "min"), help="higher or lower is better (default: the sweep's)")
    board.add_argument("--top", type=int, default=10, metavar="N", help="rows to show (default 10)")
    board.add_argument("--format", choices=("table", "csv", "json"), default="table",
                       help="table (compact), or csv / json with every column")
    board.set_defaults(handler=_leaderboard)


def _leaderboard(args: argparse.Namespace) -> int:
    df = load(args.results, task=args.task, sweep=args.sweep)
    if df.empty:
        filters = [f"{key}={value}" for key, value in (("task", args.task), ("sweep", args.sweep)) if value]
        if not storage.is_uri(args.results) and not Path(args.results).expanduser().exists():
            filters.append("no such folder: check --results")  # a typo, not a sweep that lost its rows
        print(f"no trials in {args.results}" + (f" ({', '.join(filters)})" if filters else ""))
        return 0
    ranked = top(df, by=args.by, n=args.top, mode=args.mode)
    if args.format == "csv":
        ranked.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(ranked.to_json(orient="records", date_format="iso", indent=2))
    else:
        print(render_table(ranked, total=len(df)))
    return 0
