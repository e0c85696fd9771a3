"""Per-trial GPU telemetry: ``nvidia-smi`` sampled in a background thread while a trial trains, summarised as
its mean and peak utilisation and its peak memory (the leaderboard's ``gpu_util_mean``, ``gpu_util_peak``,
``gpu_memory_peak_mb``).

``nvidia-smi`` rather than NVML bindings: it ships with every NVIDIA driver, so nothing is installed for it,
and one call every second costs nothing beside an epoch. Without it on ``PATH`` (a CPU machine), or when Ray
gave the trial no GPU (``CUDA_VISIBLE_DEVICES`` empty), nothing is sampled and the columns are null. The
numbers are the whole device's, as ``nvidia-smi`` reports them: another process on the same GPU counts too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from types import TracebackType
from typing import Any

#: ``nvidia-smi`` is asked this often; a one-second sample sees every epoch of any trial worth watching.
SAMPLE_EVERY_S = 1.0
QUERY = ("--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits")
#: One call may not hang the sampler: a wedged driver makes ``nvidia-smi`` wait for minutes.
CALL_TIMEOUT_S = 10.0
EMPTY = {"util_mean": None, "util_peak": None, "memory_peak_mb": None}


def _command() -> list[str] | None:
    """The ``nvidia-smi`` call for the GPUs this process may use (Ray sets ``CUDA_VISIBLE_DEVICES`` for a GPU
    trial; ``nvidia-smi`` itself ignores it, so it is passed as ``--id``), or None: nothing to sample."""
    found = shutil.which("nvidia-smi")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if found is None or (visible is not None and not visible.strip()):
        return None
    return [found, *QUERY, *([f"--id={visible.strip()}"] if visible else [])]


def parse_sample(text: str) -> tuple[float, float] | None:
    """One ``nvidia-smi`` answer (a ``util, memory`` line per GPU) as (utilisation %, memory MiB) of the
    trial: the mean utilisation of its GPUs and the memory they hold together; None when no line parses
    (``[N/A]``, an error message)."""
    values = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        try:
            values.append((float(parts[0]), float(parts[1])))
        except (IndexError, ValueError):
            continue
    if not values:
        return None
    return sum(util for util, _ in values) / len(values), sum(memory for _, memory in values)


class GpuSampler:
    """``with GpuSampler() as gpu: train()``, then ``gpu.summary()``. A sample is taken as the block starts,
    then every ``SAMPLE_EVERY_S`` until it ends (the sample in flight then is waited for and kept)."""

    def __init__(self, every_s: float | None = None) -> None:
        self.every_s = SAMPLE_EVERY_S if every_s is None else every_s
        self.samples: list[tuple[float, float]] = []
        self._command = _command()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if self._command is not None:
            self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.every_s):
                return

    def _sample(self) -> None:
        try:
            done = subprocess.run(self._command, capture_output=True, text=True, timeout=CALL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            return
        sample = parse_sample(done.stdout) if done.returncode == 0 else None
        if sample is not None:
            self.samples.append(sample)

    def summary(self) -> dict[str, Any]:
        """``util_mean`` / ``util_peak`` (%) and ``memory_peak_mb`` (MiB) over the samples; None each without
        samples (no GPU, or ``nvidia-smi`` never answered)."""
        if not self.samples:
            return dict(EMPTY)
        utils = [util for util, _ in self.samples]
        return {"util_mean": sum(utils) / len(utils), "util_peak": max(utils),
                "memory_peak_mb": max(memory for _, memory in self.samples)}
