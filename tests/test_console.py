"""What a person running ``python -m runner sweep`` sees: in a real pseudo-terminal the live view and one line
per ended trial; without a terminal one plain line per trial event. Ray's, Tune's, TensorFlow's and the
trials' own output reaches neither: it is in the sweep's log."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import yaml

#: What Ray, Tune and TensorFlow print in a sweep (seen on this machine before the console existed).
NOISE = ("Running in local mode", "Checkpoint successfully created", "absl", "oneDNN", "cuda drivers",
         "== Status ==", "(tune_trial pid", "WARNING", "Token authentication", "A new study created")
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TRIAL_LINE = re.compile(r"^\[(\d)/2\] (\w+)  baseline  (.*)$", re.M)


def _space(tmp_path: Path, filters: list[int]) -> Path:
    """Two one-epoch baseline trials, one per ``filters`` value (grid), on 40 demo images."""
    spec = {"description": "console test", "tasks": ["pneumonia"], "models": ["baseline"],
            "fixed": {"epochs": 1, "learning_rate": 0.01, "image_size": 32, "bootstrap": 0, "early_stopping": 0,
                      "plots": False, "data": {"n": 40}},
            "space": {"filters": {"type": "categorical", "choices": filters}},
            "searcher": "grid", "num_samples": 2, "scheduler": {"type": "fifo"}, "max_failures": 0,
            "resources": {"cpu": 1, "gpu": 0, "workers": 0}}
    path = tmp_path / "console.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _in_a_terminal(argv: list[str], timeout: float = 600) -> tuple[int, str]:
    """Runs ``argv`` with a pseudo-terminal as its standard input, output and error; returns its exit status
    and everything it wrote there."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 40 rows, 160 columns
    env = {**os.environ, "TERM": "xterm-256color"}
    process = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif process.poll() is not None:
            break
    process.wait(timeout=60)
    os.close(leader)
    return process.returncode, b"".join(chunks).decode(errors="replace")


def _log(results: Path) -> Path:
    """The sweep's log (beside its record and its Optuna study, ``<id>.optuna.log``)."""
    (log,) = (path for path in (results / "sweeps").glob("*.log") if not path.name.endswith(".optuna.log"))
    return log


def test_the_sweep_shows_a_live_view_in_a_terminal_and_nothing_of_ray_or_tensorflow(tmp_path: Path) -> None:
    results = tmp_path / "results"
    code, shown = _in_a_terminal([sys.executable, "-m", "runner", "sweep", str(_space(tmp_path, [4, 8])),
                                  "--results", str(results)])
    text = CONTROL.sub("", shown)
    assert code == 0, text[-3000:]
    assert "\x1b[" in shown  # drawn in place, with control codes
    assert re.search(r"0/2 ended \(0 completed, 0 stopped, 0 failed\), \d running; ETA after the first", text), text
    assert "2/2 ended (2 completed, 0 stopped, 0 failed), 0 running" in text
    assert re.search(r"best val_f1 \d\.\d{4}: \w+ pneumonia baseline \(filters=[48]\)", text), text[-3000:]
    assert re.search(r"running +model +epoch +last value", text)
    ended = TRIAL_LINE.findall(CONTROL.sub("\n", shown).replace("\r", "\n"))  # lines printed above the view
    assert sorted({index for index, _, _ in ended}) == ["1", "2"], text[-3000:]
    assert all(re.match(r"val_f1 \d\.\d{4}  completed at epoch 1  \d+\.\d min", rest) for _, _, rest in ended)
    assert "2 trials recorded (0 failed)" in text  # the final summary stays
    assert f"log: {results / 'sweeps'}" in text
    assert not [noise for noise in NOISE if noise in text], [n for n in NOISE if n in text]
    assert "Running in local mode" in _log(results).read_text()  # it went to the log, not away


def test_without_a_terminal_each_trial_event_is_one_plain_line_and_a_failure_names_the_log(tmp_path: Path) -> None:
    """``filters: -1`` cannot build: that trial fails, and its one-line error and the log path reach the
    console; nothing else does, and nothing is drawn in place."""
    results = tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "runner", "sweep", str(_space(tmp_path, [4, -1])), "--results",
                          str(results)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    shown = run.stdout + run.stderr
    assert "\x1b" not in shown and "\r" not in shown
    started = re.findall(r"^started  (\w+)  pneumonia baseline \(filters=(-?\d)\)$", run.stdout, re.M)
    assert sorted(filters for _, filters in started) == ["-1", "4"], run.stdout
    ended = {trial: rest for _, trial, rest in TRIAL_LINE.findall(run.stdout)}
    assert sorted(ended) == sorted(trial for trial, _ in started), run.stdout
    failed = dict(started)
    bad = next(trial for trial, filters in failed.items() if filters == "-1")
    log = _log(results)
    assert re.fullmatch(rf"failed after \d+\.\d min: \w+: .+ \(details: {re.escape(str(log))}\)", ended[bad]), \
        ended[bad]
    good = next(trial for trial in ended if trial != bad)
    assert re.fullmatch(r"val_f1 \d\.\d{4}  completed at epoch 1  \d+\.\d min", ended[good]), ended[good]
    printed = [line for line in run.stdout.splitlines() if line.strip()]
    assert len(printed) == len(set(printed))  # no line printed twice
    assert not [noise for noise in NOISE if noise in shown], [n for n in NOISE if n in shown]
    assert "Running in local mode" in _log(results).read_text()


def test_a_running_cache_build_is_in_the_view_and_said_once_without_a_terminal(tmp_path: Path, cache_dir: Path
                                                                                ) -> None:
    """The driver draws the view while a trial process decodes its data set: the build's progress file
    (written as ``runner.data.cache`` writes it) shows as a line of the view, and without a terminal as one
    plain line, however many steps see it."""
    import io

    from ray.tune.experiment import Trial
    from rich.console import Console

    from runner.data.cache import _ProgressFile
    from runner.sweep.assemble import load_sweep
    from runner.sweep.console import LiveView, SweepConsole
    from runner.sweep.record import SweepRun
    from runner.sweep.run import LeaderboardWriter

    spec = load_sweep(str(_space(tmp_path, [4, 8])))
    trial = Trial("tune_trial", config={"filters": 4}, stub=True)
    trial.set_status(Trial.RUNNING)
    run = SweepRun(sweep_id="console-1", name="console", results=str(tmp_path), storage=str(tmp_path / "tune"),
                   source="console.yaml", overrides={}, profile=None)
    view = LiveView(spec, tmp_path / "sweep.log", LeaderboardWriter(run, spec))
    view.on_step_begin(0, [trial])
    (cache_dir / "images").mkdir(parents=True)
    building = _ProgressFile(cache_dir / "images" / "key-32px-1ch.h5", total=40, size=32)
    building.update(0)
    building.update(40)
    drawn = Console(file=io.StringIO(), width=160)
    drawn.print(view.render())
    assert "caching 32px images: 40/40 (once: later trials read the cache)" in drawn.file.getvalue()

    shown = io.StringIO()
    with SweepConsole(tmp_path / "sweep.log", verbose=True, stream=shown):
        for step in range(3):
            view.on_step_begin(step, [trial])
    assert shown.getvalue().splitlines() == ["caching  40 images at 32px, once: later trials read the cache"]
    building.remove()
    drawn = Console(file=io.StringIO(), width=160)
    drawn.print(view.render())
    assert "caching" not in drawn.file.getvalue()
