"""The ``python -m runner`` command line. Heavy imports (TensorFlow, Ray) happen inside the commands that
need them, so ``--help`` and the light commands start fast."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from runner import storage
from runner.errors import ConfigError, CxrError

if TYPE_CHECKING:
    from runner.sweep.space import SweepSpec


class RegistryHelpFormatter(argparse.HelpFormatter):
    """Help naming the registered tasks, models, layouts and sweeps where a help string says ``<tasks>`` (...):
    each name is written once, in its registry, and a new model shows in ``--help`` without touching this file.
    Read only when help is printed: the registries cost every other command half a second."""

    REGISTRIES: ClassVar[Mapping[str, tuple[str, str]]] = {
        "tasks": ("runner.tasks", "TASKS"), "models": ("runner.models", "MODELS"),
        "layouts": ("runner.data", "ADAPTERS"), "sweeps": ("runner.sweep.space", "SEARCH_SPACES"),
    }

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        for kind, (module, name) in self.REGISTRIES.items():
            if text and f"<{kind}>" in text:
                names = getattr(importlib.import_module(module), name).names()
                text = text.replace(f"<{kind}>", ", ".join(names))
        return text


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="inspect data sets and write the demo data set")
    data_commands = data.add_subparsers(dest="data_command", required=True)

    demo = data_commands.add_parser("demo", help="write the synthetic demo data set as real files",
                                    description="Writes OUT/classification/<class>/*.png (+ manifest.csv), "
                                                "OUT/segmentation/{images,masks}/*.png (+ manifest.csv) and "
                                                "OUT/findings/images/*.png + manifest.csv (several findings per "
                                                "image, label cells like cardiomegaly|effusion): the layouts "
                                                "your own data can use.")
    demo.add_argument("--out", required=True, type=storage.folder_argument, help="folder to write into (created)")
    demo.add_argument("--n", type=int, default=600, help="images per layout (default 600)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    demo.set_defaults(handler=_data_demo)

    check = data_commands.add_parser("check", help="summarise a data set and report every problem",
                                     formatter_class=RegistryHelpFormatter)
    check.add_argument("path", help="data folder, CSV manifest, data spec .yaml, or 'demo'")
    check.add_argument("--task", required=True, help="task the data is for: <tasks>")
    check.add_argument("--layout", help="layout (default: detected): <layouts>")
    check.add_argument("--strict", action="store_true", help="unreadable images are errors, not skipped")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="data option, e.g. --set label_column=finding --set split.seed=1 (or with the data. "
                            "prefix train and sweep use: --set data.split.seed=1)")
    check.add_argument("--cache-dir", type=Path, help="cache folder (default ~/.cache/cxr-runner)")
    check.set_defaults(handler=_data_check)


def _data_demo(args: argparse.Namespace) -> int:
    from runner.data.synthetic import DEMO_CLASSES, DEMO_FINDINGS, write_demo

    out = Path(args.out)
    classification = write_demo(out / "classification", n=args.n, seed=args.seed, size=args.size,
                                classes=DEMO_CLASSES)
    segmentation = write_demo(out / "segmentation", n=args.n, seed=args.seed, size=args.size, masks=True)
    findings = write_demo(out / "findings", n=args.n, seed=args.seed, size=args.size, classes=DEMO_FINDINGS)
    print(f"wrote {classification} (class folders), {segmentation} (images + masks) and {findings} (several "
          "findings per image)")
    return 0


def _data_options(overrides: dict[str, Any]) -> dict[str, Any]:
    """``data check``'s ``--set`` values as data options: written as they are (``label_column=x``) or as ``train``
    and ``sweep`` spell them (``data.label_column=x``), so a line copied from a sweep command checks the same
    data. No layout has an option called ``data``."""
    from runner.overrides import deep_merge

    prefixed = overrides.pop("data", None)
    if prefixed is None:
        return overrides
    if not isinstance(prefixed, dict):
        raise ConfigError(f"--set data={prefixed!r}: data check takes the data path as its argument; --set gives "
                          "data options, as KEY=VALUE or data.KEY=VALUE")
    return deep_merge(overrides, prefixed)


def _data_check(args: argparse.Namespace) -> int:
    """``data check``. A folder holding several data sets (``data demo --out DIR``) fails as one data set
    with a misleading error (a class folder without images): the error names its sub-folders instead."""
    from runner.data import parse_data_spec, prepare
    from runner.data.check import CHECK_IMAGE_SIZE, check_dataset, data_sets_below, several_data_sets_error
    from runner.errors import DataError
    from runner.overrides import parse_overrides
    from runner.tasks import TASKS

    task = TASKS.get(args.task)
    spec = parse_data_spec(args.path, layout=args.layout, overrides=_data_options(parse_overrides(args.overrides)))
    try:
        dataset = task.load_data(spec, cache_dir=args.cache_dir)
    except DataError:
        found = data_sets_below(Path(spec.path), task.needs_masks) if spec.path and not args.layout else []
        if not found:
            raise
        raise DataError(several_data_sets_error(Path(spec.path), task.name, found)) from None
    cached = prepare(dataset, CHECK_IMAGE_SIZE, cache_dir=args.cache_dir, strict=False)
    report = check_dataset(dataset, cached, strict=args.strict or bool(spec.options["strict"]))
    print(report.render())
    return 1 if report.errors else 0


def _add_train_command(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train and evaluate one configuration (no Ray)",
                                formatter_class=RegistryHelpFormatter,
                                description="Train one model on one task and evaluate it on validation, test "
                                            "and (optionally) an external test set. Writes a trial directory "
                                            "under --out: config.yaml, model.keras, predictions.parquet, "
                                            "result.json.")
    train.add_argument("--task", help="<tasks>")
    train.add_argument("--model", help="<models>")
    train.add_argument("--data", help="data folder, CSV manifest, data spec .yaml, or 'demo' (default: the "
                                      "task's demo data)")
    train.add_argument("--test-data", help="an external test set (another hospital): metrics as external_test_*")
    train.add_argument("--config", type=Path, help="YAML file of keys (the same keys --set takes)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="any config key, e.g. --set image_size=64 --set epochs=1 --set dropout=0.3 "
                            "--set data.n=200")
    train.add_argument("--out", type=storage.folder_argument, default="results/trials",
                       help="folder the trial directory is created in (default results/trials)")
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from runner.config import load_config_file, normalise_data, resolve_config
    from runner.overrides import parse_overrides
    from runner.report import metrics_table

    from_file = load_config_file(args.config) if args.config else {}
    flags = {"task": args.task, "model": args.model, "data": normalise_data(args.data),
             "test_data": normalise_data(args.test_data)}
    config = resolve_config(from_file, flags, parse_overrides(args.overrides))

    from runner.trial import run_trial

    result = run_trial(config, Path(args.out))
    print(metrics_table(result.result))
    print(f"trial directory: {result.directory}")
    return 0


def _add_sweep_command(commands: argparse._SubParsersAction) -> None:
    from runner.sweep.assemble import AUTO_PROFILE

    sweep = commands.add_parser("sweep", help="run a search space as a Ray Tune sweep (the main command)",
                                formatter_class=RegistryHelpFormatter,
                                description="Run every trial of a search space (NAME: ./search_spaces/NAME.yaml, "
                                            "else a shipped one; or a YAML path) on Ray: Optuna proposes, ASHA "
                                            "stops poor trials early, each finished trial becomes a leaderboard "
                                            "row. Layers, later ones winning: the file < --profile < --quick < "
                                            "--set.")
    sweep.add_argument("name", nargs="?", help="<sweeps>, or a .yaml path")
    sweep.add_argument("--list", action="store_true",
                       help="show the sweeps (or NAME), their spaces and where each file came from")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override any search-space value, e.g. --set num_samples=4 --set fixed.epochs=2")
    sweep.add_argument("--profile", default=AUTO_PROFILE,
                       help=f"a profile of the YAML; {AUTO_PROFILE} (the default): its 'cpu' profile when there is no "
                            "GPU")
    sweep.add_argument("--quick", action="store_true", help="2 trials, 1 epoch, 64 px: a smoke run (--set still wins)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="check everything that can be checked without training (values, profiles, every "
                            "data set's files and labels) and print the resolved sweep; Ray is not started")
    storage.add_results_argument(sweep, help="results: a folder, or on a cluster shared storage every node reaches "
                                             "(a shared mount or s3://bucket/path); default $CXR_RUNNER_RESULTS or "
                                             "./results")
    sweep.add_argument("--storage", help="Ray Tune's state (default <results>/tune)")
    sweep.add_argument("--address", help="Ray cluster address ('auto' to join the running cluster)")
    sweep.add_argument("--local", action="store_true", help="start Ray on this machine (the default)")
    sweep.add_argument("--resume", nargs="?", const="", metavar="SWEEP_ID",
                       help="continue an interrupted sweep (default: the newest of that name)")
    sweep.add_argument("--retry-failed", action="store_true",
                       help="with --resume: run the trials that ended failed again (same configuration and trial "
                            "id), after fixing what failed them; each one's row is replaced, its earlier errors "
                            "kept (attempts, attempt_errors)")
    sweep.add_argument("--warm-start", nargs="+", metavar="SWEEP_ID",
                       help="start the Optuna study from these earlier sweeps' finished trials (ids in --results), "
                            "replacing the search space's warm_start.sweeps")
    sweep.add_argument("--verbose", action="store_true",
                       help="also show Ray's, TensorFlow's and the trials' own output (by default it goes to "
                            "<results>/sweeps/<sweep_id>.log) and Tune's trial table, with plain lines per trial")
    sweep.add_argument("--mlflow", metavar="URI", help="also log each trial as an MLflow run (sqlite:///PATH/mlflow.db "
                                                       "or http://HOST:PORT; needs the [mlflow] extra)")
    sweep.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    if args.list or not args.name:
        return _list(args.name)
    if args.dry_run:
        return _dry_run(args)
    from runner.sweep.assemble import build_sweep
    from runner.sweep.console import SweepConsole, log_path
    from runner.sweep.record import SweepRun, find_sweep, new_sweep_id
    from runner.sweep.space import space_digest
    from runner.sweep.warm import earlier_rows

    results = storage.resolve(args.results)
    if args.retry_failed and args.resume is None:
        raise ConfigError("--retry-failed reruns the failed trials of an earlier sweep: add --resume [SWEEP_ID]")
    if args.resume is not None:
        run = find_sweep(results, Path(args.name).stem, args.resume or None)
        started_with = _start_only_options(args)
        if started_with:
            raise CxrError(f"{', '.join(started_with)}: chosen when a sweep starts, and --resume continues "
                           f"{run.sweep_id} as it started (its record: "
                           f"{storage.join(run.results, 'sweeps', run.sweep_id + '.json')}); leave that out, or "
                           "start a new sweep")
        if run.stopped:
            print(f"sweep {run.sweep_id} stopped early ({run.stopped['reason']}): nothing to resume; start a new "
                  f"sweep (with another stop.{run.stopped['rule']} to search further)")
            return 0
        print(f"resuming {run.sweep_id}")
    else:
        run = SweepRun(sweep_id=new_sweep_id(Path(args.name).stem), name=Path(args.name).stem, results=results,
                       storage=storage.resolve(args.storage) if args.storage else storage.join(results, "tune"),
                       source=args.name,
                       overrides=_overrides(args), profile=args.profile, quick=args.quick,
                       mlflow=args.mlflow, workdir=os.getcwd(), space_digest=space_digest(args.name))
    address = None if args.local else args.address
    storage.check_writable(run.results)
    record = storage.join(run.results, "sweeps", f"{run.sweep_id}.json")
    with SweepConsole(log_path(run), verbose=args.verbose, started=lambda: storage.is_file(record)) as console:
        # a bad file, key, profile or data set or an unknown warm-start sweep fail before Ray starts: on this
        # machine, build_sweep counts the GPUs without Ray; a sweep refused here leaves no log, so names none
        with run.start_directory(console.line):
            if args.resume is not None:
                run.check_space_unchanged()
            spec = build_sweep(run.source, run.overrides, run.profile, run.quick, gpus=_cluster_gpus(address),
                               printer=console.line)
        if args.resume is None and spec.warm_start.sweeps:
            earlier_rows(run.results, spec.warm_start.sweeps)
        if not args.verbose:
            console.line(f"log: {console.log} (Ray's, TensorFlow's and the trials' own output; --verbose shows it)")
        run = replace(run, profile=spec.profile)  # recorded: a resume on another machine rebuilds the same trials
        from runner.sweep.run import run_sweep, stop_ray  # imports TensorFlow: its start-up notes go to the log

        try:
            outcome = run_sweep(spec, run, address=address, resume=args.resume is not None,
                                retry_failed=args.retry_failed, printer=console.line)
        except KeyboardInterrupt:
            outcome = None
        finally:
            stop_ray()
    if outcome is None or outcome.interrupted:
        print(f"interrupted: finished trials are in the leaderboard; resume with "
              f"python -m runner sweep {run.name} --resume {run.sweep_id} --results {run.results}", file=sys.stderr)
        return 130
    from runner.leaderboard import load, random_init_note, render_table, top

    board = load(run.results, sweep=run.sweep_id)
    failed = board[board["status"] == "failed"] if len(board) else board
    optimised = "each task's validation metric" if spec.metric == "objective" else spec.metric
    print(f"\n{outcome.rows} trials recorded ({len(failed)} failed); best by the metric the sweep optimised "
          f"({optimised}):")
    for task, rows in board.groupby("task", sort=True):
        print(f"\n{task}:\n{render_table(top(rows, n=5))}")
    note = random_init_note(board)
    if note:
        print(f"\n{note}")
    for error, count in (failed["error"].value_counts().items() if len(failed) else ()):
        print(f"{count} trial(s) failed: {error}", file=sys.stderr)
    if outcome.stopped:
        print(f"stopped early: {outcome.stopped}")
    print(f"python -m runner leaderboard --sweep {run.sweep_id} --results {run.results}")
    return 0


def _start_only_options(args: argparse.Namespace) -> list[str]:
    """The options given with ``--resume`` that only a new sweep reads: the record holds what it started with,
    and a resume that took ``--set fixed.batch_size=8`` without a word would still run the recorded value."""
    from runner.sweep.assemble import AUTO_PROFILE

    given = {"--set": args.overrides, "--quick": args.quick, "--profile": args.profile != AUTO_PROFILE,
             "--storage": args.storage, "--mlflow": args.mlflow, "--warm-start": args.warm_start}
    return [flag for flag, value in given.items() if value]


def _list(name: str | None) -> int:
    """``sweep --list [NAME]``: each search space as its file says, and where the file came from (shipped,
    ``./search_spaces`` or a path). A file that does not load is reported and the others still listed."""
    from runner.sweep.assemble import load_sweep
    from runner.sweep.space import SEARCH_SPACES, describe, find_search_space

    found = [find_search_space(name)] if name else [SEARCH_SPACES.get(each) for each in SEARCH_SPACES.names()]
    failed = False
    for space_file in found:
        try:
            print(f"{describe(load_sweep(str(space_file.path)))}\n  from: {space_file.origin} ({space_file.path})\n")
        except CxrError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
    return 2 if failed else 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--set`` values, then ``--warm-start``, which replaces ``warm_start.sweeps`` (``enqueue`` stays). They
    are recorded with the sweep, so ``--resume`` rebuilds the same search space."""
    from runner.overrides import deep_merge, parse_overrides

    overrides = parse_overrides(args.overrides)
    return deep_merge(overrides, {"warm_start": {"sweeps": args.warm_start}}) if args.warm_start else overrides


def _cluster_gpus(address: str | None) -> Callable[[], float] | None:
    """What ``build_sweep`` counts to choose a profile: None (this machine's GPUs, which the Ray this command
    starts sees) unless the sweep joins a cluster (``--address``, ``$RAY_ADDRESS``); then a function that joins
    it and counts the cluster's GPUs, which ``build_sweep`` asks only after the file is checked."""
    if not (address or os.environ.get("RAY_ADDRESS")):
        return None

    def count() -> float:
        import ray

        from runner.sweep.run import init_ray

        init_ray(address, print)
        return ray.cluster_resources().get("GPU", 0)

    return count


def _dry_run(args: argparse.Namespace) -> int:
    """``sweep --dry-run``: the sweep ``build_sweep`` assembles for the real run here (profile, ``--quick``,
    ``--set``), every value validated, every data set listed, and what would run printed. Imports no Ray, and
    leaves ``weights: auto`` to the real run (resolving it may download ImageNet weights)."""
    from runner.sweep.assemble import build_sweep, local_gpus
    from runner.sweep.space import describe, describe_run
    from runner.sweep.warm import plan
    from runner.sweep.weights import AUTO

    if args.resume is not None:
        raise ConfigError("--dry-run checks a new sweep: leave --resume out")
    gpus = local_gpus()
    spec = build_sweep(args.name, _overrides(args), args.profile, args.quick, gpus=gpus, resolve_weights=False)
    data = _check_sweep_data(spec)
    print(describe(spec))
    if spec.profile:
        print(f"  profile: {spec.profile}")
    print(describe_run(spec, {"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}))
    if spec.fixed.get("weights") == AUTO:
        print("  weights: auto is resolved when the sweep starts (ImageNet if it loads, else none)")
    if spec.warm_start.sweeps:
        print("  " + plan(spec, storage.resolve(args.results)).line())
    print("\n".join(data))
    print("dry run: every check passed; nothing was trained and Ray was not started")
    return 0


def _check_sweep_data(spec: SweepSpec) -> list[str]:
    """Lists every data set the sweep's trials read, as a trial would (files, labels, splits, masks present;
    no pixel decoded), each once; returns a summary line per data set."""
    from runner.sweep.space import edge_configs
    from runner.tasks import TASKS

    seen, lines = set(), []
    for _, config in edge_configs(spec):
        task = TASKS.get(config.task)
        for key in ("data", "test_data"):
            value = getattr(config, key)
            if value is None or (config.task, repr(value), config.cache_dir) in seen:
                continue
            seen.add((config.task, repr(value), config.cache_dir))
            try:
                dataset = task.load_data(value, whole=key == "test_data",
                                         cache_dir=Path(config.cache_dir) if config.cache_dir else None)
            except CxrError as error:
                raise ConfigError(f"{spec.source}: {key} of task '{task.name}': {error}") from None
            counts = ", ".join(f"{split} {sum(n.values())}" for split, n in dataset.counts().items())
            skipped = f", {len(dataset.problems)} unusable files skipped" if dataset.problems else ""
            lines.append(f"  {key} for {task.name}: {dataset.root} ({dataset.spec.layout}): {counts}; classes "
                         f"{', '.join(dataset.classes)}{skipped}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runner",
                                     description="cxr-runner: chest X-ray experiments, from one trial to a "
                                                 "Ray cluster sweep.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(commands)
    _add_train_command(commands)
    _add_sweep_command(commands)
    from runner.cluster import add_cluster_command
    from runner.confirm import add_confirm_command
    from runner.evaluate import add_evaluate_command
    from runner.html_report import add_report_command
    from runner.leaderboard import add_leaderboard_command
    from runner.rerun import add_rerun_command

    add_leaderboard_command(commands)
    add_cluster_command(commands)
    add_rerun_command(commands)
    add_evaluate_command(commands)
    add_confirm_command(commands)
    add_report_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except CxrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
