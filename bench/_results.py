"""Recording benchmark figures where tools can read them (``bench/results.json``)."""

from __future__ import annotations

import json
import os
import platform
import tempfile
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


def record(figures: dict[str, dict], path: Path = RESULTS) -> None:
    """Merge ``{name: {"value", "target", "unit", "better"}}`` into the results file, atomically."""
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(figures)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        json.dump(current, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(handle.name, path)


def figure(value: float, target: float | None, unit: str, better: Literal["higher", "lower"]) -> dict:
    return {"value": round(float(value), 4), "target": target, "unit": unit, "better": better}


def work_folder(out: Path | None, prefix: str) -> Path:
    """Where a benchmark writes: ``--out`` when given (kept for inspection), else a new temporary folder."""
    folder = out or Path(tempfile.mkdtemp(prefix=prefix))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
