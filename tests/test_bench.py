"""The benchmark harness itself: figures judged against targets, the HPO cost accounting, the sweeps the HPO
benchmark runs, and the GPU benchmark on a machine without a GPU. The measurements are never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import hpo_efficiency as hpo
from bench._results import Section, figure, passed


def test_figures_are_judged_against_their_targets() -> None:
    assert passed(figure(0.2, 1 / 3, "x", "lower")) == "yes"
    assert passed(figure(0.5, 1 / 3, "x", "lower")) == "no"
    assert passed(figure(0.95, 0.9, "x", "higher")) == "yes"
    assert passed(figure(12.0, None, "ms", "lower")) == "-"
    assert passed(figure(None, 0.9, "x", "higher")) == "not measured"


def test_benchmarks_md_lists_every_target_with_its_verdict() -> None:
    from bench.__main__ import measured_section, updated

    one = Section("Input pipeline", "bench/pipeline.py", "python -m bench.pipeline", "a table",
                  {"fast_ratio": figure(0.2, 1 / 3, "x", "lower"), "free": figure(3.0, None, "s", "lower")},
                  {"fast_ratio": "fast over slow"})
    two = Section("Soak", "bench/soak.py", "python -m bench.soak", "another",
                  {"gpu_ratio": figure(None, 0.9, "x", "higher"), "slow_ratio": figure(2.0, 1.25, "x", "lower")})
    measured = {"pipeline": measured_section("pipeline", one, "python -m bench", 9.5),
                "soak": measured_section("soak", two, "python -m bench", 0.25)}
    text, results = updated(measured, {**one.figures, **two.figures}, "", {})
    targets = text.split("## Targets", 1)[1].split("## Input pipeline", 1)[0]
    assert "`fast_ratio` (fast over slow) | 0.2x | <= 0.3333x | yes |" in targets
    assert "`gpu_ratio` (Soak) | not measured | >= 0.9x | not measured |" in targets
    assert "`slow_ratio` (Soak) | 2x | <= 1.25x | no |" in targets
    assert "free" not in targets  # no target: listed in its section only
    assert "Command: `python -m bench.soak`" in text and "by `python -m bench` (9.5 minutes for this section)" in text
    assert text.index("## Input pipeline") < text.index("## Soak") and set(results) == {*one.figures, *two.figures}


def test_a_run_keeps_the_sections_and_figures_of_the_benchmarks_it_did_not_run() -> None:
    """A default run after ``--only main_command`` (or ``--full``) must not drop what those measured; a
    benchmark that no longer exists leaves the page."""
    from bench.__main__ import measured_section, updated

    earlier = Section("The main command", "bench/main_command.py", "python -m bench.main_command", "six trials",
                      {"main_command_wall_s": figure(206.8, 180, "s", "lower"),
                       "main_command_trials": figure(6, None, "trials", "higher")},
                      {"main_command_wall_s": "the command, 2 cores"})
    gone = Section("Retired", "bench/retired.py", "python -m bench.retired", "old", {"retired_x": figure(1, 2, "x",
                                                                                                         "lower")})
    first, recorded = updated({"main_command": measured_section("main_command", earlier, "python -m bench --only "
                                                                "main_command", 3.5)}, earlier.figures, "", {})
    first += "\n" + gone.markdown() + "\n"
    recorded = {**recorded, **gone.figures, "orphan_x": figure(1, None, "x", "lower")}
    soak = Section("Soak", "bench/soak.py", "python -m bench.soak", "100 trials",
                   {"soak_trials": figure(100, 100, "trials", "higher")})
    text, results = updated({"soak": measured_section("soak", soak, "python -m bench", 2.0)}, soak.figures, first,
                            recorded)
    assert "six trials" in text and "by `python -m bench --only main_command` (3.5 minutes" in text
    assert "`main_command_wall_s` (the command, 2 cores) | 206.8 s | <= 180 s | no |" in text.split("## Soak")[0]
    assert text.index("## Soak") < text.index("## The main command"), "benchmark order, not run order"
    assert "Retired" not in text and set(results) == {"soak_trials", "main_command_wall_s", "main_command_trials"}
    assert results["main_command_wall_s"] == recorded["main_command_wall_s"]


NULL = hpo.Null(chance=0.66, step=0.0002, images=160)


def test_hpo_cost_counts_compute_until_the_first_trial_near_the_best_of_all_strategies() -> None:
    grid = hpo.Trace(compute=[90, 90, 90, 90], scores=[0.5, 0.7, 0.9, 0.6], proposed=[0.5, 0.7, 0.9, 0.6])
    asha = hpo.Trace(compute=[90, 10, 30, 10], scores=[0.6, 0.4, 0.895, 0.3], proposed=[0.6, 0.4, 0.895, 0.3])
    random = hpo.Trace(compute=[10, 10], scores=[0.2, 0.3], proposed=[0.2, 0.3])
    warm = hpo.Trace(compute=[30, 90], scores=[0.93, 0.5], proposed=[0.93, 0.5])
    cost = hpo.costs({"grid": grid, "random_asha": random, "optuna_asha": asha, "warm_asha": warm}, 0.01)
    assert cost == {"grid": (360, False), "random_asha": (20, False), "optuna_asha": (140, False),
                    "warm_asha": (30, True)}, "the bar is the best of all four strategies (0.93), minus 0.01"
    assert hpo.costs({"grid": grid, "optuna_asha": asha}, 0.01) == {"grid": (270, True), "optuna_asha": (130, True)}
    assert hpo.costs({"grid": grid, "optuna_asha": asha}, 0.35) == {"grid": (180, True), "optuna_asha": (90, True)}
    assert hpo.learned({"grid": grid, "optuna_asha": asha}, NULL)
    flat = hpo.Trace(compute=[10], scores=[0.66], proposed=[0.66])
    assert not hpo.learned({"grid": flat, "optuna_asha": flat}, NULL), "a chance-level best is left out"


def test_hpo_tolerance_is_never_finer_than_the_objective_can_resolve() -> None:
    assert hpo.Null(chance=0.7, step=0.0002, images=160).tolerance == hpo.TOLERANCE
    assert hpo.Null(chance=0.8, step=0.0139, images=17).tolerance == 0.0139
    assert hpo.Null(chance=0.7, step=0.0002, images=160, spread=0.03).tolerance == 0.03


def test_hpo_spread_pools_the_grid_points_seed_to_seed_variance_above_chance(tmp_path: Path) -> None:
    """Real leaderboard rows of three grid sweeps (seeds): per grid point the variance of the objective over
    the seeds, pooled (mean, then square root) over the points above chance; another strategy's rows and a
    dead point (AUC 0.5 everywhere, below chance) are left out."""
    from test_leaderboard import make_result

    from runner import leaderboard

    values = {(1e-3, 0.0): [0.90, 0.94, 0.92], (1e-4, 0.5): [0.80, 0.86, 0.83], (1e-2, 0.0): [0.5, 0.5, 0.45]}
    results = tmp_path / "scratch" / "results"
    for seed in range(3):
        for strategy in ("grid", "random_asha"):
            sweep = hpo.sweep_id("scratch", strategy, seed)
            for index, ((rate, dropout), scores) in enumerate(values.items()):
                score = scores[seed] if strategy == "grid" else 0.99 - 0.2 * seed  # counted, it would widen it
                result = make_result(trial_id=f"{sweep}-{index}", seed=seed, val={"roc_auc": score},
                                     hp={"learning_rate": rate, "dropout": dropout})
                leaderboard.write_row(results, leaderboard.row_from_result(result, sweep_id=sweep, sweep_name=sweep))
    expected = np.sqrt(np.mean([np.var(values[1e-3, 0.0], ddof=1), np.var(values[1e-4, 0.5], ddof=1)]))
    assert hpo.grid_spread("scratch", tmp_path, chance=0.66) == pytest.approx(expected)


def test_hpo_rung_agreement_ranks_live_grid_trials_at_each_rung_against_their_last_epoch(tmp_path: Path) -> None:
    """Real rows and result.json histories of grid trials (4 epochs, ASHA rungs 1 and 3): per rung, the rank
    correlation of that epoch's objective with the last epoch's, over the trials that learned; a dead trial
    (never above chance) and the other strategies' rows are left out."""
    import json

    from test_leaderboard import make_result

    from runner import leaderboard

    histories = [[0.70, 0.80, 0.90, 0.91], [0.80, 0.75, 0.85, 0.84], [0.90, 0.70, 0.80, 0.82],
                 [0.75, 0.86, 0.86, 0.88], [0.50, 0.50, 0.49, 0.50]]
    results = tmp_path / "anomaly" / "results"
    for strategy in ("grid", "optuna_asha"):
        sweep = hpo.sweep_id("anomaly", strategy, 0)
        for index, history in enumerate(histories if strategy == "grid" else [[0.9, 0.1, 0.1, 0.1]] * 3):
            folder = tmp_path / sweep / str(index)
            folder.mkdir(parents=True)
            (folder / "result.json").write_text(json.dumps({"history": {"val_roc_auc": history}}))
            result = make_result(trial_id=f"{sweep}-{index}", val={"roc_auc": history[-1]})
            leaderboard.write_row(results, leaderboard.row_from_result(
                result, sweep_id=sweep, sweep_name=sweep, extra={"trial_dir": str(folder)}))
    live = np.array(histories[:4])
    ranks = live.argsort(axis=0).argsort(axis=0)
    expected = {rung: np.corrcoef(ranks[:, rung - 1], ranks[:, -1])[0, 1] for rung in (1, 3)}
    assert hpo.rung_agreement("anomaly", tmp_path, chance=0.66, size=hpo.Size(epochs=4)) == pytest.approx(expected)


def test_hpo_null_is_measured_on_the_validation_split_the_trials_are_judged_on() -> None:
    """On the real demo split: a ROC AUC's step is 1 / (positives x negatives), and the chance level is the
    top of 1,000 random rankings' AUCs: above 99% of them (sklearn's, drawn independently), and within the
    Mann-Whitney null's spread of 0.5."""
    from sklearn.metrics import roc_auc_score

    from runner.config import make_config
    from runner.data import load_dataset

    size = hpo.Size(images=60)
    null = hpo.validation_null("scratch", size)
    config = make_config({"task": "pneumonia", "model": "small_cnn", **hpo.fixed_values("scratch", 0, size)})
    labels = [r.label for r in load_dataset(config.data).records if r.split == "val"]
    positives = sum(label == "pneumonia" for label in labels)
    assert null.images == len(labels) and null.step == pytest.approx(1 / (positives * (len(labels) - positives)))
    y = np.array([label == "pneumonia" for label in labels])
    rng = np.random.default_rng(12345)
    independent = [roc_auc_score(y, rng.random(len(y))) for _ in range(hpo.NULL_SCORINGS)]
    spread = np.sqrt((len(labels) + 1) / (12 * positives * (len(labels) - positives)))
    assert np.quantile(independent, 0.99) <= null.chance <= 0.5 + 4.5 * spread


def _measured(*runs: dict[str, hpo.Trace]) -> hpo.Measured:
    return hpo.Measured({("scratch", seed): traces for seed, traces in enumerate(runs)}, {"scratch": NULL})


def test_hpo_ratios_sum_costs_over_the_seeds_that_learned() -> None:
    reached = {"grid": hpo.Trace([100, 100], [0.5, 0.9], [0.5, 0.9]),
               "random_asha": hpo.Trace([10, 40], [0.5, 0.9], [0.5, 0.9]),
               "optuna_asha": hpo.Trace([20, 10], [0.9, 0.5], [0.9, 0.5]),
               "warm_asha": hpo.Trace([10], [0.9], [0.9])}
    flat = {strategy: hpo.Trace([1], [0.5], [0.5]) for strategy in hpo.STRATEGIES}
    figures, labels = hpo.ratio_figures(_measured(reached, flat), ["scratch"])
    assert figures["hpo_compute_ratio"] == {"value": 0.1, "target": 0.25, "unit": "x", "better": "lower"}
    assert figures["hpo_tpe_vs_random_ratio"]["value"] == 0.4 and figures["hpo_warm_vs_cold_ratio"]["value"] == 0.5
    assert figures["hpo_warm_vs_cold_ratio_scratch"]["target"] is None
    assert "scratch alone" in labels["hpo_compute_ratio_scratch"]


def test_hpo_section_says_by_how_much_each_target_is_met_or_missed() -> None:
    measured = _measured({"grid": hpo.Trace([100, 100], [0.5, 0.9], [0.5, 0.9]),
                          "random_asha": hpo.Trace([10, 40, 10], [0.5, 0.9, 0.7], [0.5, 0.9, 0.7]),
                          "optuna_asha": hpo.Trace([20, 10, 10], [0.5, 0.9, 0.8], [0.5, 0.9, 0.8]),
                          "warm_asha": hpo.Trace([10, 30], [0.5, 0.9], [0.5, 0.9])})
    body = hpo.render(measured, ["scratch"], [0], hpo.Size(trials=8)).body
    assert "`hpo_compute_ratio` = 0.150: met, 0.100 under its 0.25 target" in body
    assert "`hpo_tpe_vs_random_ratio` = 0.600: met" in body
    assert "`hpo_warm_vs_cold_ratio` = 1.333: missed by 0.833 (2.7x its 0.5 target)" in body
    assert "TPE draws its first 2 of 8 trials at random" in body and "1 of its hits came within" in body
    assert "The trials it proposed after them scored on average (random search's at the same positions after " \
        "'against'): scratch 0.800 against 0.700." in body
    assert "came from: grid 1, random_asha 1, optuna_asha 1, warm_asha 1 (of 1 runs)" in body, "ties count for each"
    assert ("scratch: 160 validation images, chance 0.660, objective step 0.00020, seed-to-seed spread of one "
            "configuration 0.000, tolerance 0.010") in body


def test_hpo_warm_sweeps_start_from_another_seeds_cold_tpe_sweep() -> None:
    assert [hpo.warm_source([0, 1, 2], index) for index in range(3)] == [1, 2, 0]
    assert hpo.warm_source([3], 0) == 103, "one seed: an extra earlier sweep, never the sweep itself"


@pytest.mark.parametrize("family", sorted(hpo.FAMILIES))
@pytest.mark.parametrize("strategy", hpo.STRATEGIES)
def test_hpo_benchmark_sweeps_are_valid_search_spaces(family: str, strategy: str) -> None:
    from runner.sweep.assemble import build_sweep

    warm_from = hpo.sweep_id(family, "optuna_asha", 2)
    spec = build_sweep(hpo.sweep_yaml(family, strategy, seed=1, size=hpo.Size(trials=6), warm_from=warm_from),
                       name="hpo")
    assert spec.num_samples == (9 if strategy == "grid" else 6), "grid runs every point of its 3 x 3 grid"
    assert spec.searcher == {"grid": "grid", "random_asha": "random"}.get(strategy, "optuna")
    assert spec.metric == hpo.FAMILIES[family].score and spec.checkpoint_every == 0
    assert spec.scheduler.type == ("fifo" if strategy == "grid" else "asha")
    assert list(spec.warm_start.sweeps) == ([warm_from] if strategy == "warm_asha" else [])


def test_gpu_benchmark_without_a_gpu_says_so_and_exits_0() -> None:
    run = subprocess.run([sys.executable, "-m", "bench.gpu_throughput"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "no GPU visible to TensorFlow: GPU throughput not measured" in run.stdout
    assert "| `gpu_pipeline_vs_memory_ratio` (lowest pipeline / in-memory images/s over all configurations) | " \
           "not measured | >= 0.9x | not measured |" in run.stdout


def test_gpu_benchmark_measures_both_inputs_on_the_cpu_when_allowed() -> None:
    from bench import gpu_throughput

    section = gpu_throughput.section(["baseline"], [8], steps=2, images=40, allow_cpu=True, size=32)
    rows = [line for line in section.body.splitlines() if line.startswith("| baseline | 32 |")]
    assert [row.split(" | ")[2] for row in rows] == ["float32", "mixed"]
    for row in rows:
        pipeline, memory = (float(cell.replace(",", "")) for cell in row.split(" | ")[4:6])
        assert pipeline > 0 and memory > 0
    assert section.figures["gpu_pipeline_vs_memory_ratio"]["value"] is None, "CPU figures are never GPU figures"


def test_segmentation_benchmark_without_the_shared_images_says_so_and_measures_nothing(tmp_path: Path) -> None:
    from bench import segmentation_real

    section = segmentation_real.section(64, 2, 1, 1, tmp_path, root=tmp_path / "absent")
    assert section.body.startswith(f"Not measured: {tmp_path / 'absent'} is absent")
    assert section.figures and all(entry["value"] is None for entry in section.figures.values())
    assert not list(tmp_path.iterdir()), "nothing trained"


def test_anomaly_benchmark_without_the_shared_images_says_so_and_measures_nothing(tmp_path: Path) -> None:
    from bench import anomaly_real

    section = anomaly_real.section(1, 32, 0, tmp_path, root=tmp_path / "absent")
    assert section.body == f"Not measured: {tmp_path / 'absent'} is missing (the shared real images)."
    assert section.figures and all(entry["value"] is None for entry in section.figures.values())
    assert not list(tmp_path.iterdir()), "nothing trained"


def test_main_command_one_class_level_is_the_best_constant_prediction() -> None:
    from bench.main_command import one_class_level

    binary = np.array(["normal"] * 14 + ["pneumonia"] * 22)
    # all pneumonia: precision 22/36, recall 1, F1 = 2 * 22 / (22 + 36); all normal: F1 of pneumonia 0
    assert one_class_level(binary, "val_f1", "pneumonia") == pytest.approx(44 / 58)
    three = np.array(["covid"] * 5 + ["normal"] * 8 + ["pneumonia"] * 20)
    # all pneumonia: that class's F1 = 2 * 20 / (20 + 33), the other two 0, averaged over three classes
    assert one_class_level(three, "val_f1_macro", "pneumonia") == pytest.approx(40 / 53 / 3)
