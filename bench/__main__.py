"""Every benchmark, or some, then BENCHMARKS.md and bench/results.json updated from what this run measured.

Usage: ``python -m bench [--full] [--only NAME ...] [--out DIR]``.

The default sizes other than the HPO benchmark's take 8.5 minutes on 2 idle cores (no GPU). The HPO benchmark
(5 seeds x 2 families x 4 strategies = 40 real sweeps of 9-12 trials) adds 15.9 more, so a default run took
24.4 minutes on 2026-12-03 (each section's minutes are in BENCHMARKS.md), over its ~15-minute budget: each
sweep starts two fresh trial processes that import TensorFlow and warm up (about 18 CPU-seconds a sweep,
measured), 6 minutes of the 2 cores for 40 sweeps before any training, and a validation split large enough for
the objective to tell strategies apart costs the rest. ``--full`` runs each benchmark at its own default size
(longer; closer to real trials), the HPO benchmark on the transfer task too, and adds the lung-segmentation
benchmark on the team's real masks (10 minutes at 128 px on idle cores) and the main command as a new user runs it
(``python -m runner sweep transfer`` in an empty folder, 3-6 minutes); ``--only``
runs the benchmarks it names.

Every run rewrites the sections of the benchmarks it ran, each stamped with its date, machine, command and
minutes, and keeps the sections (and their figures in results.json) of the benchmarks it did not run, so a
default run does not lose what a ``--full`` or ``--only`` run measured; the targets table covers every section.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


#: A benchmark's section heading in BENCHMARKS.md, naming its script: ``## Title (`bench/NAME.py`)``.
HEADING = re.compile(r"^## (.+) \(`bench/(\w+)\.py`\)$", re.MULTILINE)
#: A row of a figures table: ``| `name` (label) | value | target | pass |``.
FIGURE_ROW = re.compile(r"^\| `(\w+)`(?: \((.*)\))? \|([^|]*)\|([^|]*)\|([^|]*)\|$", re.MULTILINE)


@dataclass(frozen=True)
class Written:
    """A benchmark's section as BENCHMARKS.md holds it: its markdown and the figures its table names."""

    name: str
    title: str
    markdown: str
    figures: tuple[str, ...]

    def target_rows(self) -> list[str]:
        """Its figures that have a target, as rows of the targets table (labelled by the section's title
        where the figure has no label of its own)."""
        rows = []
        for match in FIGURE_ROW.finditer(self.markdown):
            name, label, value, target, verdict = match.groups()
            if target.strip() != "-":
                rows.append(f"| `{name}` ({label or self.title}) |{value}|{target}|{verdict}|")
        return rows


def written_sections(text: str) -> dict[str, Written]:
    """The benchmark sections of a BENCHMARKS.md, by benchmark name."""
    headings = list(HEADING.finditer(text))
    bounds = [h.start() for h in headings] + [len(text)]
    sections = {}
    for heading, end in zip(headings, bounds[1:], strict=True):
        markdown = text[heading.start():end].rstrip()
        names = tuple(m.group(1) for m in FIGURE_ROW.finditer(markdown))
        sections[heading.group(2)] = Written(heading.group(2), heading.group(1), markdown, names)
    return sections


def measured_section(name: str, section: Section, command: str, minutes: float) -> Written:
    """A section this run measured, stamped with when, where and by what."""
    stamp = (f"Measured on {date.today().isoformat()} by `{command}` ({minutes:.1f} minutes for this section); "
             f"{machine()}; {_versions()}.")
    return Written(name, section.title, section.markdown(stamp), tuple(section.figures))


def render(sections: list[Written]) -> str:
    """BENCHMARKS.md: how it is made, every figure with a target, then each section in benchmark order."""
    header = "\n".join([
        "# Benchmarks", "",
        "Written by `python -m bench` (the default set), `python -m bench --full` (all, larger) or `python -m bench "
        "--only NAME ...`: each run rewrites the sections of the benchmarks it ran and keeps the others, so every "
        "section says when, on which machine and by which command it was measured (figures from different days "
        "or machines are not comparable). Every figure is also in `bench/results.json` "
        "(`{name: {value, target, unit, better}}`). Timings are never asserted in tests. Each section's Command "
        "reruns that benchmark alone.",
        "", "## Targets", "", "| figure | value | target | pass |", "|---|---|---|---|",
        *(row for section in sections for row in section.target_rows())])
    return "\n\n".join([header, *(section.markdown for section in sections)]) + "\n"


def updated(measured: dict[str, Written], figures: dict[str, dict], text: str,
            recorded: dict[str, dict]) -> tuple[str, dict[str, dict]]:
    """BENCHMARKS.md and results.json after a run: the sections ``measured`` with their ``figures``, and the
    earlier ``text``'s sections of the other benchmarks with their ``recorded`` figures (a benchmark no longer
    in ``BENCHMARKS`` is dropped)."""
    earlier = written_sections(text)
    sections = [measured.get(b.name) or earlier.get(b.name) for b in BENCHMARKS]
    sections = [s for s in sections if s is not None]
    kept = {name: recorded[name] for s in sections if s.name not in measured for name in s.figures
            if name in recorded}
    return render(sections), {**kept, **figures}


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
    command = "python -m bench" + (" --full" if args.full else "") + (f" --only {' '.join(args.only)}"
                                                                       if args.only else "")
    measured, figures = {}, {}
    for benchmark in chosen:
        print(f"== {benchmark.name}", flush=True)
        started = time.perf_counter()
        section = benchmark.run(args.full, Path(tempfile.mkdtemp(prefix=f"{benchmark.name}-", dir=root)))
        measured[benchmark.name] = measured_section(benchmark.name, section, command,
                                                    (time.perf_counter() - started) / 60)
        print(measured[benchmark.name].markdown, flush=True)
        figures.update(section.figures)
    recorded = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    text, results = updated(measured, figures, MARKDOWN.read_text() if MARKDOWN.exists() else "", recorded)
    MARKDOWN.write_text(text)
    record(results, replace=True)
    failed = [name for name, entry in figures.items() if passed(entry) == "no"]
    print(f"wrote {MARKDOWN} and {RESULTS}; targets missed this run: {', '.join(failed) or 'none'}")
    return 0

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
