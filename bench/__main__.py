"""Every benchmark, then BENCHMARKS.md and bench/results.json rewritten from what this run measured.

Usage: ``python -m bench [--full] [--only NAME ...] [--out DIR]``.

The default sizes other than the HPO benchmark's take about 11 minutes on 2 cores (no GPU). The HPO benchmark
(5 seeds x 2 families x 4 strategies = 40 real sweeps of 9-12 trials) adds about 20 more (36 CPU-minutes,
measured), so a default run takes about 31 minutes, over its ~15-minute budget: each sweep starts two fresh
trial processes that import TensorFlow and warm up (about 18 CPU-seconds a sweep, measured), 6 minutes of
the 2 cores for 40 sweeps before any training, and a validation split large enough for the objective to tell
strategies apart costs the rest. ``--full`` runs each
benchmark at its own default size (longer; closer to real trials), the HPO benchmark on the transfer task
too, and adds the lung-segmentation benchmark on the team's real masks (about 40 minutes at 128 px) and the main
command as a new user runs it (``python -m runner sweep transfer`` in an empty folder, 3-6 minutes). A
complete run rewrites both files, so every figure in them comes from one run on one machine;
``--only`` runs some benchmarks, prints their sections and merges their figures into results.json, leaving
BENCHMARKS.md alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bench._results import RESULTS, Section, machine, passed, record, work_folder

MARKDOWN = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


@dataclass(frozen=True)
class Benchmark:
    """A benchmark and the sizes ``python -m bench`` runs it at: ``run(full, work)`` returns its section."""

    name: str
    run: Callable[[bool, Path], Section]
    #: Run only with ``--full`` (or ``--only``): too long for the default run's budget.
    full_only: bool = False


def _pipeline(full: bool, work: Path) -> Section:
    from bench import pipeline

    return pipeline.section(300 if full else 150, 224)


def _input_checks(full: bool, work: Path) -> Section:
    from bench import input_checks

    return input_checks.section(rounds=5 if full else 3)


def _sweep_overhead(full: bool, work: Path) -> Section:
    from bench import sweep_overhead

    if full:
        return sweep_overhead.section(8, 8, ["serial", "parallel"], work)
    return sweep_overhead.section(4, 6, ["parallel"], work)


def _leaderboard_io(full: bool, work: Path) -> Section:
    from bench import leaderboard_io

    return leaderboard_io.section(2000 if full else 500, work)


def _checkpoint_cost(full: bool, work: Path) -> Section:
    from bench import checkpoint_cost

    return checkpoint_cost.section([m for m in checkpoint_cost.MODELS if full or m[0] != "vgg16"])


def _soak(full: bool, work: Path) -> Section:
    from bench import soak

    return soak.section(100, work)


def _hpo_efficiency(full: bool, work: Path) -> Section:
    from bench import hpo_efficiency

    families = list(hpo_efficiency.FAMILIES) if full else hpo_efficiency.DEFAULT_FAMILIES
    size = hpo_efficiency.Size(trials=16, epochs=9, images=600, image_size=48) if full else hpo_efficiency.Size()
    return hpo_efficiency.section(families, [0, 1, 2, 3, 4], size, work)


def _segmentation_real(full: bool, work: Path) -> Section:
    from bench import segmentation_real

    return segmentation_real.section(128, 2, 6, 8, work)


def _anomaly_real(full: bool, work: Path) -> Section:
    from bench import anomaly_real

    return anomaly_real.section(10, 64, 0, work)


def _main_command(full: bool, work: Path) -> Section:
    from bench import main_command

    return main_command.section(work)


def _gpu_throughput(full: bool, work: Path) -> Section:
    from bench import gpu_throughput

    return gpu_throughput.section(list(gpu_throughput.MODELS), [32, 64, 128], 50 if full else 20, 512)


BENCHMARKS = [Benchmark("pipeline", _pipeline), Benchmark("input_checks", _input_checks),
              Benchmark("sweep_overhead", _sweep_overhead),
              Benchmark("leaderboard_io", _leaderboard_io), Benchmark("checkpoint_cost", _checkpoint_cost),
              Benchmark("soak", _soak),
              Benchmark("hpo_efficiency", _hpo_efficiency),
              Benchmark("gpu_throughput", _gpu_throughput),
              Benchmark("segmentation_real", _segmentation_real, full_only=True),
              Benchmark("anomaly_real", _anomaly_real, full_only=True),
              Benchmark("main_command", _main_command, full_only=True)]


def _versions() -> str:
    from runner.trial import library_versions

    found = library_versions()
    return ", ".join(f"{name} {found[name]}" for name in ("python", "tensorflow", "keras", "ray", "optuna")
                     if found.get(name))


def render(sections: list[Section], command: str, minutes: float) -> str:
    """BENCHMARKS.md: how it was made, a summary of every figure with a target, then each section."""
    targeted = [(name, entry, section) for section in sections for name, entry in section.figures.items()
                if entry["target"] is not None]
    summary = Section("", "", "", "", {name: entry for name, entry, _ in targeted},
                      {name: section.labels.get(name, section.title) for name, _, section in targeted})
    header = "\n".join([
        "# Benchmarks", "",
        f"Generated by `{command}` on {date.today().isoformat()} in {minutes:.1f} minutes.",
        f"Machine: {machine()}; {_versions()}.", "",
        "Every figure below comes from that one run and is also in `bench/results.json` "
        "(`{name: {value, target, unit, better}}`). Timings are never asserted in tests. Each section names the "
        "command that reruns it alone; `python -m bench --full` runs every benchmark at its larger default size.",
        "", "## Targets", "", summary.figures_table()])
    return "\n\n".join([header, *(section.markdown() for section in sections)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="each benchmark at its larger default size")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHMARKS], help="run these only")
    parser.add_argument("--out", type=Path, help="keep the work folders here (default: temporary)")
    args = parser.parse_args(argv)
    if args.only:
        chosen = [b for b in BENCHMARKS if b.name in args.only]
    else:
        chosen = [b for b in BENCHMARKS if args.full or not b.full_only]
    root = work_folder(args.out, "bench-")
    started = time.perf_counter()
    sections = []
    for benchmark in chosen:
        print(f"== {benchmark.name}", flush=True)
        section = benchmark.run(args.full, Path(tempfile.mkdtemp(prefix=f"{benchmark.name}-", dir=root)))
        print(section.markdown(), flush=True)
        sections.append(section)
    figures = {name: entry for section in sections for name, entry in section.figures.items()}
    if args.only:
        record(figures)
        return 0
    command = "python -m bench" + (" --full" if args.full else "")
    MARKDOWN.write_text(render(sections, command, (time.perf_counter() - started) / 60))
    record(figures, replace=True)
    failed = [name for name, entry in figures.items() if passed(entry) == "no"]
    print(f"wrote {MARKDOWN} and {RESULTS}; targets missed: {', '.join(failed) or 'none'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
