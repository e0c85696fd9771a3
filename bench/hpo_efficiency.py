"""HPO efficiency: how much training compute each search strategy spends before it finds a near-best model.

Usage: ``python -m bench.hpo_efficiency [--tasks scratch anomaly] [--seeds 0 1 2 3 4] [--trials 12] [--epochs 4]
[--images 400] [--image-size 32] [--out DIR]``.

For each demo family (``scratch``: pneumonia, small_cnn, learning rate x dropout; ``anomaly``: anomaly,
conv_autoencoder, learning rate x anomaly score; ``transfer``: covid, vgg16 with weights none offline, frozen
layers, only when asked for) and seed, four strategies run through the real sweep driver (Ray Tune, in this
process), one trial per core at once, as a sweep runs on this machine:

- ``grid``: Optuna's GridSampler over a 3 x 3 grid, FIFO: all 9 points, each trains all its epochs;
- ``random_asha``: random search over the grid's ranges, ASHA stopping (grace 1 epoch, reduction factor 3);
- ``optuna_asha``: TPE (startup trials scaled to the budget, multivariate, constant liar) with the same ASHA;
- ``warm_asha``: the same TPE + ASHA, its study warm-started (``warm_start: {sweeps: [..], enqueue: 1}``)
  from the ``optuna_asha`` sweep of the next seed in the list (another seed: another sampler and training
  seed), read from the family's results folder as a user's later sweep would; with a single seed, from an
  extra ``optuna_asha`` sweep with seed + 100. The earlier sweep's compute is not charged to the warm one:
  reusing it is the point of a warm start.

Every family optimises its validation ROC AUC (the sweep's ``metric:``), measured on a validation split of
40% of the demo images (``SPLIT``). Both choices make the objective say how good a model is: at the demo's
default 15% a 120-image set judged trials on 17 images (ROC AUC in steps of 0.014, coarser than the
tolerance), and F1 at the fixed 0.5 threshold, the pneumonia task's own monitor, measured after a few short
epochs whether the output bias had crossed 0.5 (all-positive 0.66 or all-negative 0.0 in most epochs), not
whether the model had learnt.

Compute is images x epochs trained (``n_train`` x ``epochs_run`` per leaderboard row, ASHA-stopped trials
included at the epochs they ran). The bar for one family and seed is the best objective that ANY of the four
strategies found, minus the tolerance: the best over all of them, so no strategy is judged against a bar only
it set. The tolerance is 0.01, or the objective's resolution where that is coarser: its step on that
validation split, or the seed-to-seed spread of one configuration's objective (the grid trains the same 9
points under every seed: ``grid_spread``). A bar finer than either asks for the one lucky trial that set the
best, not for a region a search can find. A strategy's cost is the compute spent by
its trials finished up to and including its first one at or above the bar (trials still running then are not
charged, a small bias every strategy shares); one that never gets there is charged all its compute and
marked. The ratios sum those costs over families and seeds: ``hpo_compute_ratio`` = TPE+ASHA / grid (target
<= 0.25), ``hpo_tpe_vs_random_ratio`` = TPE+ASHA / random+ASHA (<= 0.75), ``hpo_warm_vs_cold_ratio`` = warm /
cold TPE+ASHA (<= 0.5), and the same per family.

A comparison only means something where some trial learned: a (family, seed) whose best objective is not
above chance (the best that any of ``NULL_SCORINGS`` random scorers, or a constant one, gets on the same
validation labels with the task's own metric code) is shown but left out of the ratios, since every strategy
"reaches" a chance-level best with its first finished trial.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import mean

import numpy as np

from bench._results import Section, figure, work_folder

LEARNING_RATES = [1e-4, 1e-3, 1e-2]
TOLERANCE = 0.01
#: The demo images' split: 40% to validation so the objective resolves differences of the tolerance
#: (ROC AUC steps of 1 / (positives x negatives)), 10% to a test split that no strategy looks at.
SPLIT = {"train": 0.5, "val": 0.4, "test": 0.1}
#: Random scorings of the validation labels that set a family's chance level and measure its objective's step.
NULL_SCORINGS = 1000
STRATEGIES = ("grid", "random_asha", "optuna_asha", "warm_asha")
#: Configurations of the earlier sweep re-run first by the warm sweep (its best one).
WARM_ENQUEUE = 1
#: name: (numerator, denominator, target, label)
RATIOS = {
    "hpo_compute_ratio": ("optuna_asha", "grid", 0.25, "TPE + ASHA compute to near-best / grid's"),
    "hpo_tpe_vs_random_ratio": ("optuna_asha", "random_asha", 0.75, "TPE + ASHA / random + ASHA"),
    "hpo_warm_vs_cold_ratio": ("warm_asha", "optuna_asha", 0.5, "warm-started TPE + ASHA / cold TPE + ASHA"),
    "hpo_compute_ratio_random_asha": ("random_asha", "grid", None, "random + ASHA / grid"),
}


@dataclass(frozen=True)
class Family:
    """A demo sweep family: its task and model, the validation metric its sweeps optimise (``score``), and the
    parameter searched beside the learning rate (its grid choices; a float range between the ends when
    ``continuous``)."""

    task: str
    model: str
    score: str
    second: str
    choices: list
    continuous: bool
    fixed: dict


FAMILIES = {
    "scratch": Family("pneumonia", "small_cnn", "val_roc_auc", "dropout", [0.0, 0.25, 0.5], True, {}),
    "anomaly": Family("anomaly", "conv_autoencoder", "val_roc_auc", "score", ["mse", "ssim", "latent"], False,
                      {"filters": [16, 32, 64], "latent_dim": 32, "bottleneck": "dense"}),
    "transfer": Family("covid", "vgg16", "val_roc_auc_ovr", "frozen_layers", [0, 0.5, "all"], False,
                       {"weights": "none"}),
}
DEFAULT_FAMILIES = ["anomaly", "scratch"]


@dataclass(frozen=True)
class Size:
    """How big each sweep is: trials, epochs at most, demo images, image side in pixels."""

    trials: int = 12
    epochs: int = 4
    images: int = 400
    image_size: int = 32


def _space(chosen: Family, strategy: str) -> dict:
    if strategy == "grid":
        return {"learning_rate": {"type": "categorical", "choices": LEARNING_RATES},
                chosen.second: {"type": "categorical", "choices": chosen.choices}}
    return {"learning_rate": {"type": "float", "low": LEARNING_RATES[0], "high": LEARNING_RATES[-1], "log": True},
            chosen.second: ({"type": "float", "low": chosen.choices[0], "high": chosen.choices[-1]}
                            if chosen.continuous else {"type": "categorical", "choices": chosen.choices})}


def fixed_values(family: str, seed: int, size: Size) -> dict:
    """The keys every trial of the family shares (its ``fixed:`` block)."""
    return {"epochs": size.epochs, "early_stopping": 0, "image_size": size.image_size, "batch_size": 16,
            "bootstrap": 0, "augment": False, "seed": seed, "data": {"n": size.images, "split": SPLIT},
            "plots": False, **FAMILIES[family].fixed}


def sweep_yaml(family: str, strategy: str, seed: int, size: Size, warm_from: str | None = None) -> dict:
    """The search space of one strategy's sweep; ``warm_from`` is the sweep id a ``warm_asha`` sweep starts from.
    No per-epoch checkpoints (``checkpoint_every: 0``): they only serve a trial restarted after a failure, and
    compute here is counted in images x epochs, not seconds."""
    chosen = FAMILIES[family]
    scheduler = ({"type": "fifo"} if strategy == "grid" else
                 {"type": "asha", "max_t": size.epochs, "grace_period": 1, "reduction_factor": 3})
    found = {"description": f"hpo efficiency: {family} / {strategy}", "tasks": [chosen.task],
             "models": [chosen.model], "fixed": fixed_values(family, seed, size), "space": _space(chosen, strategy),
             "metric": chosen.score, "mode": "max",
             "num_samples": len(LEARNING_RATES) * len(chosen.choices) if strategy == "grid" else size.trials,
             "seed": seed, "checkpoint_every": 0,
             "searcher": {"grid": "grid", "random_asha": "random"}.get(strategy, "optuna"), "scheduler": scheduler,
             "resources": {"cpu": 1, "gpu": 0, "workers": 0}}
    if strategy == "warm_asha":
        found["warm_start"] = {"sweeps": [warm_from], "enqueue": WARM_ENQUEUE}
    return found


@dataclass(frozen=True)
class Null:
    """What a family's objective can tell apart: on its validation split (``images`` of them), ``chance`` is the
    best score that any of ``NULL_SCORINGS`` random scorers or a constant scorer gets and ``step`` the smallest
    gap between two distinct scores of theirs (the split's granularity); once the grid sweeps have run,
    ``spread`` is how much one configuration's objective moves from seed to seed (``grid_spread``) and
    ``rungs`` how well each ASHA rung's objective ranks trials by their last epoch's (``rung_agreement``)."""

    chance: float
    step: float
    images: int
    spread: float = 0.0
    rungs: dict[int, float] = field(default_factory=dict)

    @property
    def tolerance(self) -> float:
        """How far below the best a trial may score and still count as near-best: ``TOLERANCE``, or the
        objective's resolution where that is coarser. A bar finer than the split's step, or than the spread
        of one configuration between seeds, is reached by one lucky trial, not found by a search."""
        return max(TOLERANCE, self.step, self.spread)


def _scorings(kind: str, rows: int, classes: int, rng: np.random.Generator) -> tuple[list, list]:
    """Constant scorers (every image the same score, or the same class) and ``NULL_SCORINGS`` random ones."""
    if kind == "multiclass":
        return ([np.tile(np.eye(classes)[index], (rows, 1)) for index in range(classes)],
                [rng.dirichlet(np.ones(classes), rows) for _ in range(NULL_SCORINGS)])
    return [np.zeros(rows), np.ones(rows)], [rng.random(rows) for _ in range(NULL_SCORINGS)]


def validation_null(family: str, size: Size) -> Null:
    """The family's chance level and objective step, from the validation split its trials are judged on (the
    same data spec, split and decoded cache) and the task's own metric code. The step comes from the random
    scorers alone: a constant scorer's ties put it half a step from the others."""
    from runner.config import make_config
    from runner.tasks import TASKS
    from runner.trial import load_splits

    chosen = FAMILIES[family]
    config = make_config({"task": chosen.task, "model": chosen.model, **fixed_values(family, 0, size)})
    task = TASKS.get(chosen.task)
    val = load_splits(config, task, lambda _: None)[1]["val"]
    params = task.bind_params(config.task_params)
    key = chosen.score.removeprefix("val_")

    def scored(scorings: list) -> np.ndarray:
        found = [task.evaluate(val, scoring, params)[key] for scoring in scorings]
        return np.unique(np.round([score for score in found if score is not None], 9))

    constant, random = (scored(scorings) for scorings in _scorings(task.kind, len(val.records), len(task.classes),
                                                                    np.random.default_rng(0)))
    return Null(chance=float(max(constant.max(), random.max())), step=float(np.diff(random).min()),
                images=len(val.records))


def grid_spread(family: str, work: Path, chance: float) -> float:
    """The seed-to-seed standard deviation of one configuration's objective, pooled over the grid's points
    that learned (mean above chance, dead ones would pull it to 0): the grid trains the same 9 points under
    every seed, so its rows measure how reproducible the objective is. 0 with fewer than two seeds."""
    from runner import leaderboard

    chosen = FAMILIES[family]
    board = leaderboard.load(str(work / family / "results"))
    grid = board[board["sweep_id"].str.startswith(f"{family}-grid-")]
    by_point = grid.groupby(["hp_learning_rate", f"hp_{chosen.second}"])[chosen.score]
    variances = [values.var() for _, values in by_point if len(values) > 1 and values.mean() > chance]
    return float(np.sqrt(np.mean(variances))) if variances else 0.0


def rung_agreement(family: str, work: Path, chance: float, size: Size) -> dict[int, float]:
    """Per ASHA rung (epoch), the Spearman rank correlation between a grid trial's objective at that epoch
    and at its last, over the grid's trials that learned (best epoch above chance; telling dead trials from
    live ones is easy): grid trials train every epoch, so their histories show what ASHA's stop decisions
    at that rung could know of the result."""
    from scipy.stats import spearmanr

    from runner import leaderboard
    from runner.sweep.space import parse_spec

    score = FAMILIES[family].score
    board = leaderboard.load(str(work / family / "results"))
    histories = [json.loads((Path(folder) / "result.json").read_text())["history"][score]
                 for folder in board.loc[board["sweep_id"].str.startswith(f"{family}-grid-"), "trial_dir"]]
    live = [history for history in histories if max(history) > chance]
    spec = parse_spec(sweep_yaml(family, "random_asha", 0, size), "rungs", "rungs")
    rungs = [int(rung) for rung in spec.scheduler.rungs(size.epochs) if rung < size.epochs]
    if len(live) < 3:
        return {}
    return {rung: float(spearmanr([h[rung - 1] for h in live], [h[-1] for h in live]).statistic) for rung in rungs}


@dataclass(frozen=True)
class Trace:
    """One sweep's trials in the order they finished: compute spent by each and the objective each found;
    ``proposed``: the objectives in the order the trials started (the order the searcher proposed them)."""

    compute: list[float]
    scores: list[float]
    proposed: list[float]

    def first_reaching(self, target: float) -> int | None:
        """1-based position (in finishing order) of the first trial at or above ``target``."""
        return next((index for index, score in enumerate(self.scores, start=1) if score >= target), None)

    def cost_to_reach(self, target: float) -> tuple[float, bool]:
        hit = self.first_reaching(target)
        return sum(self.compute[:hit]), hit is not None

    def stopped_early(self) -> int:
        """Trials that trained fewer epochs than the longest one (ASHA stopped them)."""
        return sum(compute < max(self.compute) for compute in self.compute)


@dataclass(frozen=True)
class Measured:
    """A benchmark run: each (family, seed)'s traces by strategy, and each family's validation null."""

    traces: dict[tuple[str, int], dict[str, Trace]]
    nulls: dict[str, Null]

    def counted(self) -> list[tuple[str, int]]:
        """The (family, seed) runs that learned, the ones the ratios use."""
        return [run for run, traces in self.traces.items() if learned(traces, self.nulls[run[0]])]


def sweep_id(family: str, strategy: str, seed: int) -> str:
    return f"{family}-{strategy}-{seed}"


def run_strategy(family: str, strategy: str, seed: int, size: Size, work: Path, warm_from: str | None = None
                 ) -> Trace:
    """One real sweep through the sweep driver into the family's results folder."""
    from runner.sweep.assemble import build_sweep
    from runner.sweep.record import SweepRun
    from runner.sweep.run import run_sweep

    name = sweep_id(family, strategy, seed)
    spec = build_sweep(sweep_yaml(family, strategy, seed, size, warm_from), name=name)
    results = str(work / family / "results")
    run = SweepRun(sweep_id=name, name=name, results=results, storage=str(work / family / "tune"), source=name,
                   overrides={}, profile=None)
    run_sweep(spec, run, printer=lambda _: None)
    return trace_of(family, name, work)


def trace_of(family: str, name: str, work: Path) -> Trace:
    """A finished sweep's leaderboard rows as a Trace: in finishing order, and in the order its study asked for
    them (the Optuna trial numbers; rows' start times are only estimated for ASHA-stopped trials)."""
    from runner import leaderboard
    from runner.sweep.study import TRIAL_ID_ATTR, load_study

    results = work / family / "results"
    board = leaderboard.load(str(results), sweep=name)
    images = float(board["n_train"].dropna().iloc[0])  # ASHA-stopped rows carry no data counts; same data
    score = FAMILIES[family].score
    asked = {trial.user_attrs.get(TRIAL_ID_ATTR): trial.number
             for trial in load_study(results / "sweeps" / f"{name}.optuna.log", name).trials}
    finished, proposed = board.sort_values("finished_at"), board.sort_values("trial_id", key=lambda t: t.map(asked))
    return Trace(compute=[images * float(epochs_run) for epochs_run in finished["epochs_run"]],
                 scores=[float(value) for value in finished[score].fillna(-1.0)],
                 proposed=[float(value) for value in proposed[score].fillna(-1.0)])


def warm_source(seeds: list[int], index: int) -> int:
    """The seed of the earlier sweep the ``warm_asha`` sweep of ``seeds[index]`` starts from: the next seed's
    cold TPE sweep (already run), or, with one seed, seed + 100 (run for it)."""
    return seeds[(index + 1) % len(seeds)] if len(seeds) > 1 else seeds[index] + 100


def measure_family(family: str, seeds: list[int], size: Size, work: Path) -> dict[int, dict[str, Trace]]:
    """Every cold strategy for every seed first, so each warm sweep finds its earlier sweep's leaderboard."""
    found = {seed: {strategy: run_strategy(family, strategy, seed, size, work) for strategy in STRATEGIES[:3]}
             for seed in seeds}
    for index, seed in enumerate(seeds):
        source = warm_source(seeds, index)
        if source not in found:
            run_strategy(family, "optuna_asha", source, size, work)
        found[seed]["warm_asha"] = run_strategy(family, "warm_asha", seed, size, work,
                                                warm_from=sweep_id(family, "optuna_asha", source))
    return found


def measure(families: list[str], seeds: list[int], size: Size, work: Path) -> Measured:
    import ray

    from runner.sweep.run import init_ray

    nulls = {family: validation_null(family, size) for family in families}  # also decodes the data once
    init_ray(None, lambda _: None)
    try:
        traces = {(family, seed): found for family in families
                  for seed, found in measure_family(family, seeds, size, work).items()}
    finally:
        ray.shutdown()
    return Measured(traces, {family: replace(null, spread=grid_spread(family, work, null.chance),
                                             rungs=rung_agreement(family, work, null.chance, size))
                             for family, null in nulls.items()})


def target_of(traces: dict[str, Trace], tolerance: float) -> float:
    """The best objective any strategy found on this family and seed, minus the tolerance."""
    return max(max(trace.scores) for trace in traces.values()) - tolerance


def costs(traces: dict[str, Trace], tolerance: float) -> dict[str, tuple[float, bool]]:
    """Each strategy's compute to reach the best any strategy found, minus the tolerance."""
    target = target_of(traces, tolerance)
    return {strategy: trace.cost_to_reach(target) for strategy, trace in traces.items()}


def learned(traces: dict[str, Trace], null: Null) -> bool:
    """Whether the best objective of the run is above what a scorer that learnt nothing gets."""
    return max(max(trace.scores) for trace in traces.values()) > null.chance


def _ratio(spent: dict[str, float], numerator: str, denominator: str) -> float | None:
    return spent[numerator] / spent[denominator] if spent.get(denominator) else None


def _verdict(name: str, figures: dict[str, dict]) -> str:
    value, target = figures[name]["value"], RATIOS[name][2]
    if value is None:
        return f"`{name}` is not measured (nothing learned)"
    if value <= target:
        return f"`{name}` = {value:.3f}: met, {target - value:.3f} under its {target} target"
    return f"`{name}` = {value:.3f}: missed by {value - target:.3f} ({value / target:.1f}x its {target} target)"


def _order(hits: list[int | None], others: list[int | None]) -> str:
    """How often the first strategy's first near-best trial came before, with or after the second's."""
    never = 10**6
    pairs = [(never if a is None else a, never if b is None else b) for a, b in zip(hits, others, strict=True)]
    return (f"earlier in {sum(a < b for a, b in pairs)}, at the same position in {sum(a == b for a, b in pairs)}, "
            f"later in {sum(a > b for a, b in pairs)} of {len(pairs)}")


def _positions(hits: list[int | None]) -> str:
    return "[" + ", ".join("never" if hit is None else str(hit) for hit in hits) + "]"


def _lone_bars(measured: Measured) -> int:
    """Runs where a single strategy reached the bar: the bar is then one lucky trial of that strategy."""
    lone = 0
    for run in measured.counted():
        traces, tolerance = measured.traces[run], measured.nulls[run[0]].tolerance
        lone += sum(t.first_reaching(target_of(traces, tolerance)) is not None for t in traces.values()) == 1
    return lone


def _bar_setters(measured: Measured) -> str:
    """Which strategy's trial scored each counted run's best (ties count for each)."""
    tops = [(traces, max(max(t.scores) for t in traces.values()))
            for traces in (measured.traces[run] for run in measured.counted())]
    return ", ".join(f"{strategy} {sum(max(traces[strategy].scores) == top for traces, top in tops)}"
                     for strategy in STRATEGIES)


def _after_startup(measured: Measured, startup: int) -> str:
    """Per family, the mean objective of the trials TPE proposed after its first ``startup`` random ones
    (ASHA-stopped ones at the rung they stopped on) against random search's trials at the same positions, over
    the counted runs: what the proposals of TPE's model were worth."""
    means = []
    for family in measured.nulls:
        runs = [run for run in measured.counted() if run[0] == family]
        tpe, rand = ([score for run in runs for score in measured.traces[run][strategy].proposed[startup:]]
                     for strategy in ("optuna_asha", "random_asha"))
        if tpe and rand:
            means.append(f"{family} {mean(tpe):.3f} against {mean(rand):.3f}")
    return "; ".join(means)


def _rungs_line(measured: Measured) -> str:
    return "; ".join(f"{family}: " + ", ".join(f"epoch {rung} {rho:.2f}" for rung, rho in null.rungs.items())
                     for family, null in measured.nulls.items() if null.rungs) or "not measured (too few trials)"


def _reruns_near_best(measured: Measured) -> int:
    """Runs where the warm sweep's first trial, the re-run of the earlier sweep's best, reached the bar."""
    return sum(measured.traces[run]["warm_asha"].proposed[0]
               >= target_of(measured.traces[run], measured.nulls[run[0]].tolerance) for run in measured.counted())


def _nulls_line(measured: Measured) -> str:
    return "; ".join(f"{family}: {null.images} validation images, chance {null.chance:.3f}, objective step "
                     f"{null.step:.5f}, seed-to-seed spread of one configuration {null.spread:.3f}, tolerance "
                     f"{null.tolerance:.3f}" for family, null in measured.nulls.items())


def reading(measured: Measured, figures: dict[str, dict], size: Size) -> str:
    """Why each target was met or missed, from what the run shows: where (in finishing order) each strategy's
    first near-best trial came, how much ASHA stopped early, what TPE's proposals were worth."""
    from runner.sweep.study import startup_trials

    counted = [measured.traces[run] for run in measured.counted()]
    if not counted:
        return "No family and seed learned anything (best objective at chance): no ratio is measured."
    asha = [traces[s] for traces in counted for s in STRATEGIES[1:]]
    stopped, asha_trials = sum(t.stopped_early() for t in asha), sum(len(t.compute) for t in asha)
    grid_per_trial = sum(sum(t["grid"].compute) / len(t["grid"].compute) for t in counted) / len(counted)
    asha_per_trial = sum(sum(t.compute) for t in asha) / asha_trials
    hits = {strategy: [measured.traces[run][strategy].first_reaching(
        target_of(measured.traces[run], measured.nulls[run[0]].tolerance)) for run in measured.counted()]
        for strategy in STRATEGIES}
    startup = startup_trials(size.trials)
    at_random = sum(hit is not None and hit <= startup for hit in hits["optuna_asha"])
    return "\n".join([
        "Position (in finishing order) of each strategy's first near-best trial, per counted family and seed: "
        + "; ".join(f"{strategy} {_positions(hits[strategy])}" for strategy in STRATEGIES) + ". "
        f"The best objective of a run, which sets its bar, came from: {_bar_setters(measured)} (of {len(counted)} "
        f"runs). In {_lone_bars(measured)} of {len(counted)} runs only one strategy reached the bar at all, so the "
        f"bar was a single trial's score. Validation splits: {_nulls_line(measured)}.", "",
        f"- {_verdict('hpo_compute_ratio', figures)}. ASHA stopped {stopped} of {asha_trials} ASHA trials "
        f"early: an ASHA trial cost {asha_per_trial:,.0f} images x epochs on average, a grid trial "
        f"{grid_per_trial:,.0f}; TPE + ASHA found the near-best trial {_order(hits['optuna_asha'], hits['grid'])} "
        "runs compared with grid, whose FIFO order reaches the best point only when its enumeration does. "
        f"ASHA stops on a rung's objective, which ranks the trials that learned like their last epoch does with "
        f"Spearman {_rungs_line(measured)} (the grid's trials, which run every epoch): a stopped trial keeps its "
        "rung value, and a rung that cannot tell good trials from fair ones stops the good ones too.",
        f"- {_verdict('hpo_tpe_vs_random_ratio', figures)}. Both share the same ASHA rung decisions, so only the "
        f"proposals differ: TPE draws its first {startup} of {size.trials} trials at random and proposes the next "
        "ones while others are still running (two at once), from results that are mostly one-epoch rung "
        f"values; {at_random} of its hits came within those first {startup} random trials. The trials it "
        f"proposed after them scored on average (random search's at the same positions after 'against'): "
        f"{_after_startup(measured, startup)}. TPE's first "
        f"near-best trial came {_order(hits['optuna_asha'], hits['random_asha'])} runs compared with random search.",
        f"- {_verdict('hpo_warm_vs_cold_ratio', figures)}. The warm sweep's study holds the earlier sweep's "
        f"trials and re-runs its best configuration first (enqueue {WARM_ENQUEUE}, on the new seed): that re-run "
        f"was near-best in {_reruns_near_best(measured)} of {len(counted)} runs, and "
        f"the warm sweep's first near-best trial came {_order(hits['warm_asha'], hits['optuna_asha'])} runs "
        "compared with the cold one. Where the re-run missed, the earlier seed's best did not carry over within "
        "the tolerance to another seed's data order and initialisation.",
    ])


def _table(measured: Measured) -> list[str]:
    names = " / ".join(STRATEGIES)
    lines = [f"| family | seed | best objective ({names}) | bar | "
             + " | ".join(f"{s} compute" for s in STRATEGIES) + " | counted |", "|---" * (5 + len(STRATEGIES)) + "|"]
    for (family, seed), traces in measured.traces.items():
        null, chosen = measured.nulls[family], FAMILIES[family]
        cost = costs(traces, null.tolerance)
        cells = [f"{cost[s][0]:,.0f}" + ("" if cost[s][1] else " (not reached)") for s in STRATEGIES]
        bests = " / ".join(f"{max(traces[s].scores):.3f}" for s in STRATEGIES)
        counted = "yes" if learned(traces, null) else f"no: nothing learned (best <= chance {null.chance:.3f})"
        lines.append(f"| {family} ({chosen.task}, {chosen.model}, {chosen.score}) | {seed} | {bests} | "
                     f"{target_of(traces, null.tolerance):.3f} | {' | '.join(cells)} | {counted} |")
    return lines


def _spent(measured: Measured, families: list[str]) -> dict[str, float]:
    """Each strategy's cost summed over the given families' seeds that learned."""
    spent = dict.fromkeys(STRATEGIES, 0.0)
    for family, seed in measured.counted():
        if family in families:
            for strategy, (cost, _) in costs(measured.traces[family, seed], measured.nulls[family].tolerance).items():
                spent[strategy] += cost
    return spent


def ratio_figures(measured: Measured, families: list[str]) -> tuple[dict[str, dict], dict[str, str]]:
    """The headline ratios over every family (with their targets) and each family's own (without)."""
    figures, labels = {}, {}
    for scope in [None, *families]:
        spent = _spent(measured, families if scope is None else [scope])
        for name, (numerator, denominator, target, label) in RATIOS.items():
            key = name if scope is None else f"{name}_{scope}"
            figures[key] = figure(_ratio(spent, numerator, denominator), target if scope is None else None,
                                  "x", "lower")
            labels[key] = f"{label}, families and seeds that learned" if scope is None else f"{label}, {scope} alone"
    return figures, labels


def section(families: list[str], seeds: list[int], size: Size, work: Path) -> Section:
    return render(measure(families, seeds, size, work), families, seeds, size)


def render(measured: Measured, families: list[str], seeds: list[int], size: Size) -> Section:
    """The section of measured traces: the per-seed table, why each target was met or missed, the figures."""
    figures, labels = ratio_figures(measured, families)
    body = "\n".join([
        f"{size.trials} trials per sweep, {size.epochs} epochs max, {size.image_size} px, {size.images} demo "
        f"images split {' / '.join(f'{share:.0%}' for share in SPLIT.values())} (train / val / test), one trial per "
        "core at once; objective: validation ROC AUC; compute in images x epochs to reach the bar (best any of the "
        "four strategies found on that family and seed, minus the tolerance); `warm_asha` warm-starts from the "
        "`optuna_asha` sweep of the next seed.", "", *_table(measured), "", reading(measured, figures, size)])
    return Section("HPO efficiency", "bench/hpo_efficiency.py",
                   f"python -m bench.hpo_efficiency --tasks {' '.join(families)} --seeds {' '.join(map(str, seeds))} "
                   f"--trials {size.trials} --epochs {size.epochs} --images {size.images} "
                   f"--image-size {size.image_size}", body, figures, labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Size()
    parser.add_argument("--tasks", nargs="+", choices=sorted(FAMILIES), default=DEFAULT_FAMILIES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=default.trials)
    parser.add_argument("--epochs", type=int, default=default.epochs)
    parser.add_argument("--images", type=int, default=default.images)
    parser.add_argument("--image-size", type=int, default=default.image_size)
    parser.add_argument("--out", type=Path, help="keep the work folder here (default: a temporary one)")
    args = parser.parse_args(argv)
    size = Size(args.trials, args.epochs, args.images, args.image_size)
    section(args.tasks, args.seeds, size, work_folder(args.out, "hpo-efficiency-")).report()


if __name__ == "__main__":
    main()
