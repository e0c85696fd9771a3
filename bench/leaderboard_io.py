"""Leaderboard cost at scale: writing one row per finished trial, and reading a sweep's rows back.

Usage: ``python -m bench.leaderboard_io [--rows 2000] [--out DIR]``. One real tiny trial is trained (``runner
train``, 32 px, 1 epoch) so that the rows have a real trial's ~150 columns; its row is then written ``--rows``
times under distinct trial ids through ``leaderboard.write_row`` (atomic temporary + rename + fsync, as the
sweep driver does), and the whole set is read back with ``leaderboard.load`` and DuckDB. Figures go to
``bench/results.json``; ``docs/scaling.md`` extrapolates them to 10,000 trials.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._results import Section, figure, work_folder


def real_result(work: Path) -> dict:
    out = work / "trial"
    env = {**os.environ, "CXR_RUNNER_CACHE": str(work / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-m", "runner", "train", "--task", "pneumonia", "--model", "baseline",
                    "--set", "image_size=32", "--set", "epochs=1", "--set", "data.n=60", "--set", "bootstrap=50",
                    "--out", str(out)], check=True, capture_output=True, env=env)
    return json.loads(next(out.glob("*/result.json")).read_text())


def section(rows: int, work: Path) -> Section:
    import duckdb

    from runner import leaderboard
    from runner.models import MODELS

    result = real_result(work)
    results = work / "results"
    MODELS.names()  # row building reads the models' parameter types; the sweep driver has them loaded already
    start = time.perf_counter()
    for index in range(rows):
        row = leaderboard.row_from_result({**result, "trial_id": f"t{index:06d}"}, sweep_id="bench",
                                          sweep_name="bench")
        leaderboard.write_row(results, row)
    write_ms = (time.perf_counter() - start) / rows * 1000
    start = time.perf_counter()
    board = leaderboard.load(results)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    duckdb.sql(f"select model, max(val_f1) from read_parquet('{results}/leaderboard/**/*.parquet', "
               "union_by_name=true) group by all").fetchall()
    duckdb_s = time.perf_counter() - start
    size_kb = sum(p.stat().st_size for p in results.rglob("*.parquet")) / rows / 1024
    body = "\n".join([f"{rows} rows of a real trial ({board.shape[1]} columns), written one file each as the sweep "
                      "driver does (temporary file, fsync, rename); `docs/scaling.md` extrapolates to 10,000 trials.",
                      "", "| rows | write ms/row | file KiB/row | load() s | DuckDB group-by s |",
                      "|---|---|---|---|---|",
                      f"| {rows} | {write_ms:.2f} | {size_kb:.1f} | {load_s:.2f} | {duckdb_s:.2f} |"])
    figures = {"leaderboard_write_ms_per_row": figure(write_ms, None, "ms", "lower"),
               "leaderboard_load_s_per_1000_rows": figure(load_s / rows * 1000, None, "s", "lower")}
    return Section("Leaderboard I/O", "bench/leaderboard_io.py", f"python -m bench.leaderboard_io --rows {rows}", body,
                   figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--out", type=Path, help="keep the work folder here (default: a temporary one)")
    args = parser.parse_args()
    section(args.rows, work_folder(args.out, "leaderboard-io-")).report()


if __name__ == "__main__":
    main()
