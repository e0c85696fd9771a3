"""Faults, each injected for real into a real sweep or build: a trial process killed mid-epoch, two sweeps on
one results folder, a read-only or full results disk, a killed cache build, a GPU request on a machine
without GPUs. Every process a test starts is stopped by pid (its own process group)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from test_sweep import TINY as SWEEP_TINY
from test_sweep import _wait_for_rows, _write

from runner import leaderboard

# the sweep tests' tiny sweep, one trial at a time in submission order
TINY = {**SWEEP_TINY, "num_samples": 1, "scheduler": {"type": "fifo"}}


def _sweep_command(path: Path, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "runner", "sweep", str(path), "--results", str(results), *extra]


@contextmanager
def _started(command: list[str]) -> Iterator[subprocess.Popen]:
    """A process in its own process group, killed with everything it started if the test leaves early."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)


def _reports(tune_folder: Path) -> list[dict]:
    """Every epoch report Tune has written so far (``result.json``: one JSON object per line, per trial)."""
    found = []
    for path in tune_folder.glob("*/*/result.json"):
        found += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return found


def _wait_for_epoch(tune_folder: Path, epoch: int, driver: subprocess.Popen, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        reports = [r for r in _reports(tune_folder) if r.get("epoch", 0) >= epoch and "result_json" not in r]
        if reports:
            return reports[0]
        assert driver.poll() is None, driver.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"no trial reached epoch {epoch} after {timeout} s"
        time.sleep(0.05)


def _trial_failures(tune_folder: Path) -> dict[str, int]:
    """trial id -> failures, from Tune's saved experiment state."""
    state = json.loads(max(tune_folder.glob("*/experiment_state-*.json")).read_text())
    return {json.loads(trial)["trial_id"]: json.loads(runtime)["num_failures"]
            for trial, runtime in state["trial_data"]}


@pytest.mark.parametrize("resources", [
    pytest.param({"cpu": 1, "gpu": 0, "workers": 0}, id="trial-process"),
    pytest.param({"cpu": 2, "gpu": 0, "workers": 1}, id="ray-train-worker", marks=pytest.mark.slow),  # ~1.5 min
])
def test_a_killed_trial_process_resumes_from_its_last_checkpoint(tmp_path: Path, resources: dict) -> None:
    """SIGKILL to the process training a trial, once it has checkpointed two epochs: Tune retries the trial,
    which continues at its last checkpointed epoch (not epoch 0) and ends with its whole history. The second
    trial (in a reused or fresh trial process) must not pick up the first one's checkpoint. With ``workers: 1``
    the process killed is the trial's Ray Train worker (its ``train_pid`` is not the trial process's ``pid``):
    the retried trial's new Train run finds the killed one's checkpoint under the same run name."""
    epochs = 6
    spec = {**TINY, "num_samples": 2, "max_concurrent_trials": 1, "max_failures": 2, "resources": resources,
            "fixed": {**TINY["fixed"], "epochs": epochs, "data": {"n": 120}, "batch_size": 8}}
    path, results = _write(tmp_path, spec), tmp_path / "results"
    with _started(_sweep_command(path, results)) as driver:
        report = _wait_for_epoch(results / "tune", 2, driver)
        assert (report["train_pid"] != report["pid"]) == bool(resources["workers"]), report
        train_run = list((results / "tune").glob(f"*/train/{report['trial_id']}-train"))
        assert bool(train_run) == bool(resources["workers"]), "a Ray Train run holds a Train trial's checkpoints"
        os.kill(report["train_pid"], signal.SIGKILL)
        killed_at = report["epoch"]
        output, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, output[-3000:]
    board = leaderboard.load(results)
    assert len(board) == 2 and board["trial_id"].is_unique, board[["trial_id", "status"]]
    assert (board["status"] == "completed").all(), board[["status", "error"]]
    killed = board[board["trial_id"] == report["trial_id"]].iloc[0]
    other = board[board["trial_id"] != report["trial_id"]].iloc[0]
    assert killed_at <= killed["resumed_from_epoch"] < epochs, "resumed from its last checkpoint, not from 0"
    assert pd.isna(other["resumed_from_epoch"]), "another trial picked up the killed trial's checkpoint"
    result = json.loads((Path(killed["trial_dir"]) / "result.json").read_text())
    assert result["resumed_from_epoch"] == killed["resumed_from_epoch"] and result["epochs_run"] == epochs
    assert all(len(values) == epochs for values in result["history"].values()), "the history lost epochs"
    assert _trial_failures(results / "tune")[report["trial_id"]] >= 1
    kept = [f for f in (results / "tune").glob("*/*/checkpoint_*/**/*") if f.is_file()]
    assert not kept, "an ended trial's checkpoints are emptied"
    if resources["workers"]:  # the checkpoints were the Train runs': each removed as its trial ended
        assert not list((results / "tune").glob("*/train/*")), list((results / "tune").glob("*/train/*"))
    else:  # Tune's checkpoint folders stay (a killed driver's save may list the trial as running), empty
        assert list((results / "tune").glob("*/*/checkpoint_*"))


def test_two_sweeps_on_one_results_folder_at_once_lose_nothing(tmp_path: Path, cache_dir: Path) -> None:
    """Two drivers (two Ray instances) writing one results folder and building one shared cache at once."""
    spec = {**TINY, "num_samples": 2, "fixed": {**TINY["fixed"], "epochs": 1}}
    path, results = _write(tmp_path, spec), tmp_path / "results"
    with _started(_sweep_command(path, results)) as first, _started(_sweep_command(path, results)) as second:
        outputs = [first.communicate(timeout=600)[0], second.communicate(timeout=600)[0]]
    assert [first.returncode, second.returncode] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    board = leaderboard.load(results)
    assert len(board) == 4 and board["trial_id"].is_unique and board["sweep_id"].nunique() == 2
    assert (board.groupby("sweep_id").size() == 2).all()
    assert (board["status"] == "completed").all() and board["val_f1"].notna().all()
    files = list((results / "leaderboard").rglob("*"))
    assert not [f for f in files if f.name.startswith(".")], "a temporary file was left behind"
    for file in [f for f in files if f.suffix == ".parquet"]:
        assert pq.read_table(file).num_rows == 1
    assert len(list((cache_dir / "images").glob("*.h5"))) == 1 and not list((cache_dir / "images").glob(".*tmp*"))


def _one_error_line(stderr: str) -> str:
    """The CLI's own message: exactly one ``error:`` line, no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


def test_gpu_request_on_a_machine_without_gpus_fails_before_any_trial(tmp_path: Path) -> None:
    path, results = _write(tmp_path, TINY), tmp_path / "results"
    run = subprocess.run(_sweep_command(path, results, "--set", "resources.gpu=1"), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    line = _one_error_line(run.stderr)
    assert "resources.gpu=1 per trial but the cluster has 0 GPUs" in line and "--set resources.gpu=0" in line
    assert str(path) in line
    assert not (results / "leaderboard").exists() and not (results / "trials").exists()
    assert not list(results.glob("tune/*/tune_trial_*")), "a trial started"


@contextmanager
def _mounted(target: Path, *options: str) -> Iterator[None]:
    """A real mount (tmpfs, or a read-only bind of the folder onto itself); skipped where mounting is not
    permitted (an unprivileged container), where the unprivileged-user and file-size tests still run."""
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    made = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"mount not permitted here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


def _seed_rows(results: Path, count: int) -> None:
    for number in range(count):
        leaderboard.write_row(results, leaderboard.failed_row(
            sweep_id="earlier", sweep_name="earlier", trial_id=f"t{number}", task="pneumonia", model="baseline",
            hyperparameters={"learning_rate": 0.001}, error="seeded"))


def test_read_only_results_folder_is_refused_before_ray_starts(tmp_path: Path) -> None:
    """A read-only bind mount of a results folder that already holds rows: one error line, exit 2, and the
    rows still read."""
    path, results = _write(tmp_path, TINY), tmp_path / "results"
    _seed_rows(results, 2)
    with _mounted(results, "--bind", str(results)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(results)], check=True)
        run = subprocess.run(_sweep_command(path, results), capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
        line = _one_error_line(run.stderr)
        assert f"cannot write {results}: Read-only file system: free space on that disk or make it writable" in line
        assert "ray:" not in run.stdout, "Ray started although the results folder cannot be written"
        assert len(leaderboard.load(results)) == 2


WRITE_AS = """
import resource, signal, sys
from runner import leaderboard
from runner.errors import CxrError
if sys.argv[2] == "small-disk":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)    # a write past the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
row = leaderboard.failed_row(sweep_id="earlier", sweep_name="earlier", trial_id="new", task="pneumonia",
                             model="baseline", hyperparameters={"learning_rate": 0.001}, error="x" * 5000)
try:
    leaderboard.write_row(sys.argv[1], row)
except CxrError as error:
    print(error)
    sys.exit(2)
"""


@pytest.mark.parametrize(("how", "reason"), [("unprivileged", "Permission denied"), ("small-disk", "File too large")])
def test_a_leaderboard_row_that_cannot_be_written_is_a_clear_error_and_no_partial_file(
        tmp_path: Path, how: str, reason: str) -> None:
    """Without mounts: a writer that may not write the folder (run as ``nobody``), and a writer whose files may
    not grow past 2 KB (RLIMIT_FSIZE: the kernel refuses the bytes as a full disk would)."""
    results = tmp_path / "results"
    _seed_rows(results, 2)
    command = [sys.executable, "-c", WRITE_AS, str(results), how]
    if how == "unprivileged":
        tmp_path.chmod(0o755)
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert run.returncode == 2, run.stdout + run.stderr[-2000:]
    assert run.stdout.startswith(f"cannot write {results}/leaderboard/earlier/new.parquet: {reason}: free space")
    assert sorted(p.name for p in (results / "leaderboard" / "earlier").iterdir()) == ["t0.parquet", "t1.parquet"]
    assert len(leaderboard.load(results)) == 2


def _fill(folder: Path) -> None:
    """Writes until the file system is full (the trial folders may already have filled it)."""
    try:
        with open(folder / "filler", "wb") as handle:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
    except OSError as error:
        assert error.errno == errno.ENOSPC, error


def test_a_results_disk_that_fills_mid_sweep_stops_it_with_one_error_line(tmp_path: Path) -> None:
    """Results on a small tmpfs that the test fills once the first trial is recorded: the next trial cannot
    write its folder (Tune logs that trial's traceback, as for any failed trial), its failed row cannot be
    written either, and the driver ends with one error line naming the file and what to do, not Tune's
    wrapped traceback; the recorded row still reads and no partial Parquet file is left."""
    spec = {**TINY, "num_samples": 2, "max_concurrent_trials": 1, "max_failures": 0}
    path, results = _write(tmp_path, spec), tmp_path / "results"
    with _mounted(results, "-t", "tmpfs", "-o", "size=8m", "tmpfs"):
        command = _sweep_command(path, results, "--storage", str(tmp_path / "tune"))
        with _started(command) as driver:
            _wait_for_rows(results, 1, driver, poll=0.1)
            _fill(results)
            output, _ = driver.communicate(timeout=300)
        assert driver.returncode == 2, output[-3000:]
        line = output.strip().splitlines()[-1]
        assert line.startswith("error: cannot write ") and "TuneError" not in output, output[-3000:]
        assert "No space left on device: free space on that disk" in line and str(results) in line
        board = leaderboard.load(results)
        assert len(board) == 1 and board["status"][0] == "completed"
        assert not [p for p in (results / "leaderboard").rglob("*") if p.name.startswith(".")]


def test_a_killed_cache_build_is_rebuilt_and_never_read_half_written(tmp_path: Path, cache_dir: Path) -> None:
    """A cache build killed while it writes, with a second process waiting on its lock: the waiter builds the
    cache itself and reads every image; then a trial reads the finished cache without rebuilding it."""

    from conftest import write_image

    data = tmp_path / "xray"
    original = write_image(tmp_path / "large.png", size=(1024, 1024))
    pixels = original.read_bytes()
    for number in range(300):  # large images, so the build takes long enough to be killed mid-way
        (data / ("NORMAL", "PNEUMONIA")[number % 2]).mkdir(parents=True, exist_ok=True)
        # a distinct byte after the PNG's end: identical files in two splits would be refused as a leak
        (data / ("NORMAL", "PNEUMONIA")[number % 2] / f"{number}.png").write_bytes(pixels + number.to_bytes(2))
    prepare = (f"from runner.data import load_dataset, prepare; print('ready', flush=True); "
               f"c = prepare(load_dataset({str(data)!r}), 64, progress=False); "
               f"print('images', len(c.images(None)), 'skipped', len(c.skipped))")
    images = cache_dir / "images"
    with _started([sys.executable, "-c", prepare]) as builder:
        deadline = time.monotonic() + 120
        while not list(images.glob(".*.tmp-*")):
            assert builder.poll() is None and time.monotonic() < deadline, builder.stdout.read()[-3000:]
            time.sleep(0.005)
        with _started([sys.executable, "-c", prepare]) as waiter:
            assert waiter.stdout.readline().strip() == "ready"
            time.sleep(0.5)  # listing 300 files, then blocked on the builder's lock
            assert not list(images.glob("*.h5")), "the build finished before it could be killed"
            os.killpg(builder.pid, signal.SIGKILL)
            builder.wait(timeout=60)
            output, _ = waiter.communicate(timeout=300)
    assert waiter.returncode == 0 and "images 300 skipped 0" in output, output[-3000:]
    assert len(list(images.glob("*.h5"))) == 1 and not list(images.glob(".*.tmp-*"))
    built = next(images.glob("*.h5")).stat().st_mtime_ns
    trained = subprocess.run([sys.executable, "-m", "runner", "train", "--task", "pneumonia", "--model", "baseline",
                              "--data", str(data), "--set", "image_size=64", "--set", "epochs=1", "--set",
                              "bootstrap=0", "--out", str(tmp_path / "trials")], capture_output=True, text=True,
                             timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in images.glob("*.h5")] == [built], "the trial rebuilt a complete cache"
