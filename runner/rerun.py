"""``python -m runner rerun SWEEP_ID TRIAL_ID``: retrain one recorded trial from its leaderboard row and show
how its metrics compare with the recorded ones.

A row carries the whole resolved config (``config_json``) and the data fingerprint, which is all a rerun
needs. On CPU, with the same data and library versions, training is deterministic (seeded, TensorFlow op
determinism), so the rerun's metrics equal the recorded ones: this command is how that promise is checked.
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from runner import storage
from runner.errors import ConfigError
from runner.privacy import patient_salt

METRIC_PREFIXES = ("val_", "test_", "external_test_")


def add_rerun_command(commands: argparse._SubParsersAction) -> None:
    """Add ``rerun`` to the ``python -m runner`` subcommands (called from ``runner.cli``)."""
    rerun = commands.add_parser(
        "rerun", help="retrain a recorded trial and compare its metrics with the recorded ones",
        description="Reads the trial's leaderboard row (its resolved config), trains it again with run_trial "
                    "and prints every metric: recorded, rerun, difference. On CPU a rerun is identical.")
    rerun.add_argument("sweep_id", help="the sweep id (python -m runner leaderboard shows it)")
    rerun.add_argument("trial_id", help="the trial id")
    storage.add_results_argument(rerun)
    rerun.add_argument("--out", type=Path, help="folder for the rerun's trial directory "
                                                "(default <results>/reruns/<sweep_id>)")
    rerun.set_defaults(handler=_rerun)


def find_row(results: str, sweep_id: str, trial_id: str) -> dict[str, Any]:
    """The trial's leaderboard row, if it can be rerun; else a ConfigError saying why and what to do."""
    from runner.leaderboard import load

    board = load(results)
    sweep = board[board["sweep_id"] == sweep_id] if len(board) else board
    if sweep.empty:
        raise ConfigError(f"no sweep '{sweep_id}' in {storage.join(results, 'leaderboard')}: check the id and "
                          "--results (python -m runner leaderboard lists the sweeps)")
    rows = sweep[sweep["trial_id"] == trial_id]
    if rows.empty:
        known = ", ".join(sweep["trial_id"].head(5))
        raise ConfigError(f"sweep '{sweep_id}' has no trial '{trial_id}': its trials include {known}")
    row = rows.iloc[0].to_dict()
    if row["status"] == "failed":
        raise ConfigError(f"trial '{trial_id}' failed ({row['error']}): it has no metrics to compare; fix the cause "
                          "and run the sweep again")
    if row["status"] == "stopped":
        raise ConfigError(f"trial '{trial_id}' was stopped early by the scheduler after {row['epochs_run']} "
                          "epoch(s): its metrics are not a full trial's; rerun a completed trial")
    if not row.get("config_json"):
        raise ConfigError(f"trial '{trial_id}' has no recorded config (config_json): it cannot be rerun")
    return row


def config_of(row: dict[str, Any]):
    """The trial's config, rebuilt (and validated) from the row's ``config_json``."""
    from runner.config import make_config

    return make_config(json.loads(row["config_json"]))


def _same(recorded: Any, rerun: Any) -> bool:
    if isinstance(recorded, float) and isinstance(rerun, float) and math.isnan(recorded) and math.isnan(rerun):
        return True
    return recorded == rerun


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def compare_metrics(recorded: dict[str, Any], rerun: dict[str, Any]) -> list[tuple[str, Any, Any, Any]]:
    """(metric, recorded, rerun, rerun - recorded) for every metric column either row has."""
    names = sorted(k for k in {*recorded, *rerun} if k.startswith(METRIC_PREFIXES)
                   and not (_missing(recorded.get(k)) and _missing(rerun.get(k))))
    table = []
    for name in names:
        old, new = recorded.get(name), rerun.get(name)
        numeric = isinstance(old, int | float) and isinstance(new, int | float)
        table.append((name, old, new, 0 if _same(old, new) else new - old if numeric else None))
    return table


def render(table: list[tuple[str, Any, Any, Any]]) -> str:
    cells = [("metric", "recorded", "rerun", "difference")] + [
        (name, _cell(old), _cell(new), _cell(diff)) for name, old, new, diff in table]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells)


def _cell(value: Any) -> str:
    if _missing(value):
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _rerun(args: argparse.Namespace) -> int:
    from runner.leaderboard import row_from_result
    from runner.trial import run_trial

    row = find_row(args.results, args.sweep_id, args.trial_id)
    if args.out is None and storage.is_uri(args.results):
        raise ConfigError(f"results are at {args.results}: pass --out DIR for the rerun's trial directory")
    out = args.out or Path(args.results) / "reruns" / args.sweep_id
    config = config_of(row)
    trial_id = f"{args.trial_id}-rerun-{datetime.now():%Y%m%d-%H%M%S}"
    result = run_trial(config, out, trial_id=trial_id, verbose=False, patient_salt=patient_salt(args.results))
    rerun_row = row_from_result(result.result, sweep_id=args.sweep_id, sweep_name=str(row["sweep_name"]))
    table = compare_metrics(row, rerun_row)
    print(render(table))
    differing = [name for name, _, _, diff in table if diff != 0]
    if rerun_row["data_fingerprint"] != row["data_fingerprint"]:
        print("note: the data changed since the trial ran (another data fingerprint): differences may come from it")
    print(f"identical: all {len(table)} metrics equal" if not differing
          else f"{len(differing)} of {len(table)} metrics differ")
    print(f"rerun trial directory: {result.directory}")
    return 0
