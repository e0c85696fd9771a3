"""HPO efficiency: how much training compute each search strategy spends before it finds a near-best model.

Usage: ``python -m bench.hpo_efficiency [--seeds 0 1 2] [--trials 9] [--epochs 9] [--out DIR]``.

For the demo ``scratch`` task (pneumonia, small_cnn) and the demo ``transfer`` task (covid, vgg16, weights
none offline, frozen layers searched), three strategies run the same number of trials through the real
sweep driver (Ray Tune, in this process), one trial per core at once, as a sweep runs on this machine:

- ``grid``: Optuna's GridSampler over a 3 x 3 grid, FIFO: every trial trains all its epochs;
- ``optuna_asha``: Optuna TPE over the grid's ranges, ASHA stopping (grace 1 epoch, reduction factor 3);
- ``random_asha``: random search with the same ASHA, separating the searcher's effect from early stopping.

Compute is images x epochs trained (``n_train`` x ``epochs_run`` per leaderboard row, ASHA-stopped trials
included at the epochs they ran). The target for one task and seed is the best validation F1 (``val_f1``,
or ``val_f1_macro`` for covid) that grid or Optuna + ASHA found, minus 0.01; a strategy's cost is the compute
spent by the trials finished up to and including its first one at or above the target (trials still running
then are not charged, a small bias every strategy shares). A strategy that never gets there is
charged all its compute and marked as not reaching it. The headline ``hpo_compute_ratio`` is Optuna + ASHA's
total cost over grid's, summed over tasks and seeds; target <= 1/3.

A comparison only means something where some trial learned: a (task, seed) whose best validation ROC AUC is
below ``LEARNED_AUC`` is shown but left out of the ratios, since every strategy "reaches" a chance-level
best with its first finished trial, which would flatter the early-stopping strategies.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from bench._results import Section, figure, work_folder

DEMO_IMAGES = 160
IMAGE_SIZE = 32
LEARNING_RATES = [1e-4, 1e-3, 1e-2]
TOLERANCE = 0.01
TARGET_RATIO = 1 / 3
LEARNED_AUC = 0.6
STRATEGIES = ("grid", "optuna_asha", "random_asha")


@dataclass(frozen=True)
class Family:
    """A demo sweep family: its task and model, the columns it is judged by, and the parameter searched
    beside the learning rate (its grid choices; a float range between the ends when ``continuous``)."""

    task: str
    model: str
    f1: str
    auc: str
    second: str
    choices: list
    continuous: bool
    fixed: dict


FAMILIES = {
    "scratch": Family("pneumonia", "small_cnn", "val_f1", "val_roc_auc", "dropout", [0.0, 0.25, 0.5], True, {}),
    "transfer": Family("covid", "vgg16", "val_f1_macro", "val_roc_auc_ovr", "frozen_layers", [0, 0.5, "all"],
                       False, {"weights": "none"}),
}


def sweep_yaml(family: str, strategy: str, seed: int, trials: int, epochs: int) -> dict:
    chosen = FAMILIES[family]
    if strategy == "grid":
        space = {"learning_rate": {"type": "categorical", "choices": LEARNING_RATES},
                 chosen.second: {"type": "categorical", "choices": chosen.choices}}
    else:
        space = {"learning_rate": {"type": "float", "low": LEARNING_RATES[0], "high": LEARNING_RATES[-1], "log": True},
                 chosen.second: ({"type": "float", "low": chosen.choices[0], "high": chosen.choices[-1]}
                                 if chosen.continuous else {"type": "categorical", "choices": chosen.choices})}
    fixed = {"epochs": epochs, "early_stopping": 0, "image_size": IMAGE_SIZE, "batch_size": 16, "bootstrap": 0,
             "augment": False, "seed": seed, "data": {"n": DEMO_IMAGES}, "plots": False, **chosen.fixed}
    scheduler = ({"type": "fifo"} if strategy == "grid" else
                 {"type": "asha", "max_t": epochs, "grace_period": 1, "reduction_factor": 3})
    return {"description": f"hpo efficiency: {family} / {strategy}", "tasks": [chosen.task], "models": [chosen.model],
            "fixed": fixed, "space": space, "num_samples": trials, "seed": seed,
            "searcher": "grid" if strategy == "grid" else strategy.split("_")[0], "scheduler": scheduler,
            "resources": {"cpu": 1, "gpu": 0, "workers": 0}}


@dataclass(frozen=True)
class Trace:
    """One sweep's trials in the order they finished: compute spent by each, the validation F1 and ROC AUC
    each found."""

    compute: list[float]
    scores: list[float]
    aucs: list[float]

    def cost_to_reach(self, target: float) -> tuple[float, bool]:
        spent = 0.0
        for compute, score in zip(self.compute, self.scores, strict=True):
            spent += compute
            if score >= target:
                return spent, True
        return spent, False


def run_strategy(family: str, strategy: str, seed: int, trials: int, epochs: int, work: Path) -> Trace:
    """One real sweep through the sweep driver; its leaderboard rows, in finishing order, become a Trace."""
    from runner import leaderboard
    from runner.sweep.run import SweepRun, run_sweep
    from runner.sweep.space import parse_spec

    name = f"{family}-{strategy}-{seed}"
    spec = parse_spec(sweep_yaml(family, strategy, seed, trials, epochs), name, name)
    results = str(work / "results")
    run = SweepRun(sweep_id=name, name=name, results=results, storage=str(work / "tune"), source=name,
                   overrides={}, profile=None)
    run_sweep(spec, run, printer=lambda _: None)
    board = leaderboard.load(results, sweep=name).sort_values("finished_at")
    images = float(board["n_train"].dropna().iloc[0])  # ASHA-stopped rows carry no data counts; same data
    chosen = FAMILIES[family]
    return Trace(compute=[images * float(epochs_run) for epochs_run in board["epochs_run"]],
                 scores=[float(value) for value in board[chosen.f1].fillna(-1.0)],
                 aucs=[float(value) for value in board[chosen.auc].fillna(0.0)])


def measure(families: list[str], seeds: list[int], trials: int, epochs: int, work: Path
            ) -> dict[tuple[str, int], dict[str, Trace]]:
    import ray

    from runner.sweep.run import init_ray

    init_ray(None, lambda _: None)
    try:
        return {(family, seed): {strategy: run_strategy(family, strategy, seed, trials, epochs, work)
                                 for strategy in STRATEGIES}
                for family in families for seed in seeds}
    finally:
        ray.shutdown()


def costs(traces: dict[str, Trace]) -> dict[str, tuple[float, bool]]:
    """Each strategy's compute to reach the best of grid and Optuna + ASHA, minus the tolerance."""
    best = max(max(traces[s].scores) for s in ("grid", "optuna_asha"))
    return {strategy: trace.cost_to_reach(best - TOLERANCE) for strategy, trace in traces.items()}


def learned(traces: dict[str, Trace]) -> bool:
    return max(max(trace.aucs) for trace in traces.values()) >= LEARNED_AUC


def _ratio(spent: dict[str, float], strategy: str) -> float | None:
    return spent[strategy] / spent["grid"] if spent["grid"] else None


def _reading(missed: int, runs: int) -> str:
    """What the ratio can and cannot say: a strategy that never reached the target is charged all its compute,
    a floor on what it would have needed."""
    if not missed:
        return "Every strategy's cost is the compute it spent up to its first near-best trial."
    return (f"Grid search never reached the target in {missed} of {runs} runs; there it is charged all its "
            "compute, less than it would have needed, so the ratios against grid are upper bounds.")


def section(families: list[str], seeds: list[int], trials: int, epochs: int, work: Path) -> Section:
    found = measure(families, seeds, trials, epochs, work)
    lines = ["| task | seed | best val F1 (grid / optuna+asha / random+asha) | best val AUC | grid compute | "
             "optuna+asha | random+asha | counted |", "|---|---|---|---|---|---|---|---|"]
    sums = dict.fromkeys(STRATEGIES, 0.0)
    per_family = {family: dict.fromkeys(STRATEGIES, 0.0) for family in families}
    grid_missed = 0
    for (family, seed), traces in found.items():
        cost, counted = costs(traces), learned(traces)
        grid_missed += not cost["grid"][1]
        for strategy in STRATEGIES if counted else ():
            sums[strategy] += cost[strategy][0]
            per_family[family][strategy] += cost[strategy][0]
        cells = [f"{cost[s][0]:,.0f}" + ("" if cost[s][1] else " (not reached)") for s in STRATEGIES]
        bests = " / ".join(f"{max(traces[s].scores):.3f}" for s in STRATEGIES)
        auc = max(max(trace.aucs) for trace in traces.values())
        chosen = FAMILIES[family]
        lines.append(f"| {family} ({chosen.task}, {chosen.model}) | {seed} | {bests} | {auc:.3f} | {' | '.join(cells)} "
                     f"| {'yes' if counted else f'no: nothing learned (AUC < {LEARNED_AUC})'} |")
    figures = {"hpo_compute_ratio": figure(_ratio(sums, "optuna_asha"), TARGET_RATIO, "x", "lower"),
               "hpo_compute_ratio_random_asha": figure(_ratio(sums, "random_asha"), None, "x", "lower")}
    labels = {"hpo_compute_ratio": "Optuna + ASHA compute to near-best / grid's, tasks and seeds that learned",
              "hpo_compute_ratio_random_asha": "random + ASHA compute to near-best / grid's"}
    for family, spent in per_family.items():
        figures[f"hpo_compute_ratio_{family}"] = figure(_ratio(spent, "optuna_asha"), None, "x", "lower")
        labels[f"hpo_compute_ratio_{family}"] = f"Optuna + ASHA / grid on {family} alone"
    body = "\n".join([
        f"{trials} trials per sweep, {epochs} epochs max, {IMAGE_SIZE} px, {DEMO_IMAGES} demo images, one trial per "
        f"core at once; compute in images x epochs to reach (best of grid and Optuna + ASHA) - {TOLERANCE}.", "",
        *lines, "", _reading(grid_missed, len(found))])
    return Section("HPO efficiency", "bench/hpo_efficiency.py",
                   f"python -m bench.hpo_efficiency --tasks {' '.join(families)} --seeds {' '.join(map(str, seeds))} "
                   f"--trials {trials} --epochs {epochs}", body, figures, labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--out", type=Path, help="keep the work folder here (default: a temporary one)")
    args = parser.parse_args(argv)
    section(args.tasks, args.seeds, args.trials, args.epochs, work_folder(args.out, "hpo-efficiency-")).report()


if __name__ == "__main__":
    main()
