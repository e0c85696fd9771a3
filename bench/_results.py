"""Recording benchmark figures where tools can read them (``bench/results.json``)."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

RESULTS = Path(__file__).with_name("results.json")


def machine() -> str:
    """A one-line description of this machine for BENCHMARKS.md."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, {platform.system()} {platform.release()}"


def record(figures: dict[str, dict], path: Path = RESULTS, replace: bool = False) -> None:
    """Merge ``{name: {"value", "target", "unit", "better"}}`` into the results file (``replace``: write only
    these), atomically."""
    current = json.loads(path.read_text()) if path.exists() and not replace else {}
    current.update(figures)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        json.dump(current, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(handle.name, path)


def figure(value: float | None, target: float | None, unit: str, better: Literal["higher", "lower"]) -> dict:
    """A results.json entry; ``value`` None marks a figure this machine could not measure (no GPU)."""
    return {"value": None if value is None else round(float(value), 4), "target": target, "unit": unit,
            "better": better}


def work_folder(out: Path | None, prefix: str) -> Path:
    """Where a benchmark writes: ``--out`` when given (kept for inspection), else a new temporary folder."""
    folder = out or Path(tempfile.mkdtemp(prefix=prefix))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def passed(entry: dict) -> str:
    """``yes`` / ``no`` against the figure's target, ``-`` without one, ``not measured`` without a value."""
    if entry["value"] is None:
        return "not measured"
    if entry["target"] is None:
        return "-"
    ok = entry["value"] >= entry["target"] if entry["better"] == "higher" else entry["value"] <= entry["target"]
    return "yes" if ok else "no"


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    shown = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.4g}"
    return f"{shown}{'' if unit in ('', 'x') else ' '}{unit}"


def _target(entry: dict) -> str:
    if entry["target"] is None:
        return "-"
    return f"{'>=' if entry['better'] == 'higher' else '<='} {_number(entry['target'], entry['unit'])}"


@dataclass
class Section:
    """One benchmark's part of BENCHMARKS.md: what ran (the command that reproduces it alone), its tables and
    reading (``body``, markdown), and its figures for ``results.json`` with a one-line label each."""

    title: str
    script: str
    command: str
    body: str
    figures: dict[str, dict]
    labels: dict[str, str] = field(default_factory=dict)

    def figures_table(self) -> str:
        lines = ["| figure | value | target | pass |", "|---|---|---|---|"]
        for name, entry in self.figures.items():
            label = f" ({self.labels[name]})" if name in self.labels else ""
            lines.append(f"| `{name}`{label} | {_number(entry['value'], entry['unit'])} | {_target(entry)} | "
                         f"{passed(entry)} |")
        return "\n".join(lines)

    def markdown(self, stamp: str | None = None) -> str:
        """The section; ``stamp`` (when, where and by what it was measured) follows the heading."""
        return "\n\n".join([f"## {self.title} (`{self.script}`)", *([stamp] if stamp else []),
                             f"Command: `{self.command}`", self.body, self.figures_table()])

    def report(self) -> None:
        """What a benchmark run on its own does: print its section and merge its figures into results.json."""
        print(f"\n{machine()}\n\n{self.markdown()}")
        record(self.figures)
