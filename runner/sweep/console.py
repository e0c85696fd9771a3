"""What a person running a sweep sees: one live view (or, without a terminal, one plain line per trial event),
with everything else the sweep's processes print kept in the sweep's log file.

Ray, Tune, TensorFlow and the trial processes write to the driver's standard output and error (Ray forwards
its workers' output there): start-up notes, CUDA and absl warnings, a checkpoint line per epoch per trial,
Tune's trial table. ``SweepConsole`` points file descriptors 1 and 2 at ``<results>/sweeps/<sweep_id>.log``
for the length of the sweep, so all of it (C++ and Python, the driver's and the workers') lands there, and
keeps the terminal for itself. ``LiveView`` is a Tune callback on the driver that draws the view from Tune's
trial list at every step; it holds no terminal state, so Tune can pickle it with the experiment and a
restored sweep finds the console of the process that resumed it (``active``). This module imports neither
TensorFlow nor the trial code at load time: the CLI opens the console first, so even the import-time CUDA
and absl notes go to the log.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

from ray.tune import Callback

from runner import storage
from runner.paths import default_cache_dir
from runner.sweep.record import SweepRun
from runner.sweep.space import SweepSpec

#: Redraws of the live view per second (the view is also redrawn whenever a trial reports).
REFRESH_PER_S = 2
#: Running trials shown in the view; more are counted in one line.
SHOWN_RUNNING = 8

_active: SweepConsole | None = None


def log_path(run: SweepRun) -> Path:
    """``<results>/sweeps/<sweep_id>.log`` for results on a local disk or a shared mount; results on an object
    store cannot take a file descriptor, so the log stays on the driver's disk (``$CXR_RUNNER_CACHE/logs``)."""
    found, path = storage.filesystem(run.results)
    folder = Path(path) / "sweeps" if found is None else default_cache_dir() / "logs"
    return folder / f"{run.sweep_id}.log"


def active() -> SweepConsole | None:
    """The console of the sweep this process is running, if any (library callers and benchmarks have none)."""
    return _active


def say(text: str) -> None:
    """A line the driver's own code has for the person running the sweep (the sweep stopping early, a row
    that already stood, an MLflow run that could not be logged): on the console when there is one, else
    printed (library callers)."""
    console = active()
    if console is None:
        print(text, flush=True)
    else:
        console.line(text)


class SweepConsole:
    """For the length of a ``with`` block: the process's output (file descriptors 1 and 2) goes to ``log``
    (appended: a resumed sweep adds to it) and ``line`` / the live view write to the terminal it had. With
    ``verbose`` nothing is redirected and the view is plain lines among everyone else's output. A block
    that raises before ``started()`` (the sweep's record exists) removes the log: a refused sweep leaves
    nothing behind."""

    def __init__(self, log: Path, verbose: bool = False, stream: IO[str] | None = None,
                 started: Callable[[], bool] = lambda: True) -> None:
        self.log = log
        self._started = started
        self.verbose = verbose
        self._stream = stream or sys.stdout
        self._saved: list[int] = []
        self._out: IO[str] | None = None
        self._log_file: IO[str] | None = None
        self._lock = threading.Lock()
        self.live: Any = None
        self.terminal = False

    def __enter__(self) -> SweepConsole:
        global _active
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log, "a", buffering=1)
        sys.stdout.flush()
        sys.stderr.flush()
        if self.verbose:
            self._out = self._stream
        else:
            self._saved = [os.dup(1), os.dup(2)]
            self._out = os.fdopen(os.dup(self._saved[0]), "w", buffering=1)
            os.dup2(self._log_file.fileno(), 1)
            os.dup2(self._log_file.fileno(), 2)
        self.terminal = not self.verbose and self._out.isatty() and os.environ.get("TERM") != "dumb"
        _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        self.stop_view()
        _active = None
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self._saved, strict=False):
            os.dup2(saved, fd)
            os.close(saved)
        if self._out is not None and self._out is not self._stream:
            self._out.close()
        if self._log_file is not None:
            self._log_file.close()
        if exc[0] is not None and not self._started():
            self.log.unlink(missing_ok=True)  # a sweep refused before it started leaves no log behind

    def line(self, text: str) -> None:
        """One line on the terminal (above the live view while it runs) and in the log."""
        with self._lock:
            if self.live is not None:
                self.live.console.print(text, markup=False, highlight=False, soft_wrap=True)
            elif self._out is not None:
                print(text, file=self._out, flush=True)
            if self._log_file is not None and not self.verbose:
                print(text, file=self._log_file, flush=True)

    def start_view(self, render) -> None:
        """The live view, drawn by ``render()`` (a rich renderable), on a terminal only."""
        if not self.terminal or self.live is not None:
            return
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self._out, force_terminal=True)
        self.live = Live(get_renderable=render, console=console, refresh_per_second=REFRESH_PER_S,
                         transient=True, redirect_stdout=False, redirect_stderr=False)
        self.live.start()

    def refresh(self) -> None:
        if self.live is not None:
            self.live.refresh()

    def stop_view(self) -> None:
        with self._lock:
            if self.live is not None:
                self.live.stop()
                self.live = None


class TrialNames(Protocol):
    """How a trial is named and described in the leaderboard: ``runner.sweep.run.LeaderboardWriter``'s (a
    sweep's trial ids) or ``ConfirmWriter``'s (``confirm``'s run ids)."""

    def row_id(self, trial) -> str: ...

    def trial_values(self, trial) -> dict[str, Any]: ...


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


class LiveView(Callback):
    """The sweep as a person watches it, from Tune's trial list: trials ended / total (completed, stopped by
    ASHA, failed), running, an ETA from the pace of the trials that ended in this run, the best objective
    so far with its parameters, and each running trial's model, epoch and last value. Every ended trial
    leaves one line (id, model, objective, status, minutes). Trials are named and described as the
    leaderboard ``writer`` beside it records them (a sweep's trial ids; ``confirm``'s run ids), out of
    ``total`` (default: the sweep's ``num_samples``). Does nothing without an ``active`` console."""

    def __init__(self, spec: SweepSpec, log: Path, writer: TrialNames, total: int | None = None) -> None:
        self.spec = spec
        self.log = log
        self.writer = writer
        self.total = total or spec.num_samples
        self._reset()

    def _reset(self) -> None:
        self._trials: list = []
        self._started = time.monotonic()
        self._ended_here = 0
        self._shown = False
        self._builds_said: set[tuple[int, int]] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "log": self.log, "writer": self.writer, "total": self.total}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self._trials = trials
        console = active()
        if console is not None and not self._shown:
            self._shown = True
            console.start_view(self.render)
        if console is not None and not console.terminal:
            self._say_new_builds(console)

    def builds(self) -> list:
        """The image-cache builds running now for this sweep's trials (``runner.data.cache``): a trial's first
        epoch waits for its data set's decode, which on a large data set takes minutes. Read from the cache
        folder on the driver's machine, where trials on this machine build."""
        from runner.data.cache import builds_in_progress

        folders = {self.trial_values(t).get("cache_dir") for t in self._trials if t.status == "RUNNING"}
        return [build for folder in sorted(folders, key=str)
                for build in builds_in_progress(Path(folder) if folder else None)]

    def _say_new_builds(self, console: SweepConsole) -> None:
        """Without a terminal, one line per cache build when it is first seen (not one per image block)."""
        for build in self.builds():
            if (build.image_size, build.total) not in self._builds_said:
                self._builds_said.add((build.image_size, build.total))
                console.line(f"caching  {build.total} images at {build.image_size}px, once: later trials "
                             "read the cache")

    def on_trial_start(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._trials = trials
        console = active()
        if console is not None and not console.terminal:
            console.line(f"started  {self.row_id(trial)}  {self._described(trial)}")

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        self._trials = trials
        console = active()
        if console is not None:
            console.refresh()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._ended(trials, trial, "completed" if _ran_to_end(trial) else "stopped")

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._ended(trials, trial, "failed")

    def _ended(self, trials: list, trial, status: str) -> None:
        from runner.sweep.trainable import error_line

        self._trials = trials
        self._ended_here += 1
        console = active()
        if console is None:
            return
        last = trial.last_result or {}
        ended = sum(t.status in ("TERMINATED", "ERROR") or t is trial for t in trials)  # Tune sets its status next
        head = f"[{ended}/{self.total}] {self.row_id(trial)}  {self._value(trial, 'model')}"
        minutes = _minutes(float(last.get("time_total_s") or 0.0))
        if status == "failed":
            console.line(f"{head}  failed after {minutes}: {error_line(trial)} (details: {self.log})")
        else:
            console.line(f"{head}  {self._metric(trial)} {self._objective(trial)}  {status} at epoch "
                         f"{last.get('epoch', 0)}  {minutes}")

    def row_id(self, trial) -> str:
        """The id a person finds the trial by in the leaderboard: the writer's."""
        return self.writer.row_id(trial)

    def trial_values(self, trial) -> dict[str, Any]:
        """The trial's config keys, as its row records them."""
        return self.writer.trial_values(trial)

    def _value(self, trial, key: str) -> str:
        return str(self.trial_values(trial).get(key, ""))

    def _described(self, trial) -> str:
        values = self.trial_values(trial)
        names = [name for name in values if name not in ("task", "model") and name not in self.spec.fixed]
        params = ", ".join(f"{name}={_short(values[name])}" for name in names)
        return f"{values.get('task', '')} {values.get('model', '')} ({params})" if params else \
            f"{values.get('task', '')} {values.get('model', '')}"

    @staticmethod
    def _objective(trial) -> str:
        value = (trial.last_result or {}).get("objective")
        return "-" if value is None else f"{value:.4f}"

    def _metric(self, trial) -> str:
        """What ``objective`` is for this trial: the sweep's ``metric``, or under ``metric: objective`` its
        task's own validation metric."""
        if self.spec.metric != "objective":
            return self.spec.metric
        from runner.tasks import TASKS

        return TASKS.get(self._value(trial, "task")).monitor

    def _best(self) -> dict[str, Any]:
        """Per task, the ended trial with the best objective (tasks' objectives are different metrics)."""
        pick = max if self.spec.mode == "max" else min
        found: dict[str, Any] = {}
        for trial in self._trials:
            if trial.status != "TERMINATED" or (trial.last_result or {}).get("objective") is None:
                continue
            task = self._value(trial, "task")
            found[task] = pick([found[task], trial], key=lambda t: t.last_result["objective"]) if task in found \
                else trial
        return found

    def counts(self) -> dict[str, int]:
        """Trials by state, from Tune's list (trials restored by a resume included)."""
        found = {"completed": 0, "stopped": 0, "failed": 0, "running": 0}
        for trial in self._trials:
            if trial.status == "TERMINATED":
                found["completed" if _ran_to_end(trial) else "stopped"] += 1
            elif trial.status == "ERROR":
                found["failed"] += 1
            elif trial.status == "RUNNING":
                found["running"] += 1
        return found

    def eta(self) -> str:
        counts = self.counts()
        left = self.total - counts["completed"] - counts["stopped"] - counts["failed"]
        if left <= 0:
            return "0 min"
        if not self._ended_here:
            return "after the first trial ends"
        return _minutes((time.monotonic() - self._started) / self._ended_here * left)

    def render(self):
        """The view: a progress bar line, image-cache builds running, the best so far, then a table of running
        trials."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        counts = self.counts()
        ended = counts["completed"] + counts["stopped"] + counts["failed"]
        total = self.total
        header = Table.grid(padding=(0, 1))
        header.add_row(ProgressBar(total=total, completed=ended, width=24),
                       Text(f"{ended}/{total} ended ({counts['completed']} completed, {counts['stopped']} stopped, "
                            f"{counts['failed']} failed), {counts['running']} running; ETA {self.eta()}"))
        builds = [Text(f"caching {build.image_size}px images: {build.done}/{build.total} (once: later trials "
                       "read the cache)") for build in self.builds()]
        best = self._best()
        lines = [Text(f"best {self._metric(trial)} {self._objective(trial)}: {self.row_id(trial)} "
                      f"{self._described(trial)}") for trial in best.values()] or [Text("best: none yet")]
        running = [t for t in self._trials if t.status == "RUNNING"]
        parts = [header, *builds, *lines]
        if running:
            table = Table("running", "model", "epoch", "last value", box=None, pad_edge=False)
            for trial in running[:SHOWN_RUNNING]:
                last = trial.last_result or {}
                value = "-" if last.get("objective") is None else f"{self._metric(trial)} {self._objective(trial)}"
                table.add_row(self.row_id(trial), self._value(trial, "model"), str(last.get("epoch", "starting")),
                              value)
            parts.append(table)
        if len(running) > SHOWN_RUNNING:
            parts.append(Text(f"... and {len(running) - SHOWN_RUNNING} more running"))
        return Group(*parts)


def _ran_to_end(trial) -> bool:
    from runner.sweep.trainable import ran_to_end

    return ran_to_end(trial.last_result)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
