"""Sweep assembly: ``build_sweep``'s layers (file < profile < --quick < --set), the profile chosen by the GPUs,
the CLI's dry run building the same spec as a library call, ``weights: auto`` meaning the same in ``train``
as in a sweep, and search spaces found as package data, in ``./search_spaces`` or at a path. No training,
no Ray."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import make_class_folders

import runner
from runner.cli import main
from runner.config import resolve_config
from runner.errors import ConfigError
from runner.overrides import parse_overrides
from runner.sweep.assemble import build_sweep, load_sweep
from runner.sweep.space import SEARCH_SPACES, SHIPPED, SHIPPED_DIR, USER, describe, describe_run, find_search_space

REPO = Path(__file__).resolve().parents[1]
#: Every key the layers touch, each set by the file; the comments say which layer should win.
LAYERED = {
    "tasks": ["pneumonia"], "models": ["baseline"],
    "fixed": {"epochs": 5, "image_size": 32, "learning_rate": 1e-3, "bootstrap": 50},
    "space": {"filters": {"type": "categorical", "choices": [4, 8]}},
    "num_samples": 8, "max_failures": 3, "seed": 1,
    "scheduler": {"type": "asha", "max_t": 5, "grace_period": 1},
    "resources": {"cpu": 1, "gpu": 0},
    "profiles": {"cpu": {"num_samples": 3, "seed": 7, "fixed": {"epochs": 4, "learning_rate": 2e-3}},
                 "big": {"num_samples": 20}},
}


def _write(folder: Path, spec: dict, name: str = "layered") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_each_layer_wins_over_the_one_before(tmp_path: Path) -> None:
    """file < profile < --quick < --set, each layer seen in the spec: a key only the file sets, one the
    profile overrides, one --quick overrides over the profile, and one --set overrides over --quick."""
    spec = build_sweep(_write(tmp_path, LAYERED), parse_overrides(["num_samples=4", "fixed.image_size=48"]),
                       profile="cpu", quick=True)
    assert spec.max_failures == 3, "the file"
    assert spec.seed == 7 and spec.fixed["learning_rate"] == 2e-3, "the profile over the file"
    assert spec.fixed["epochs"] == 1 and spec.scheduler.type == "fifo", "--quick over the profile"
    assert spec.num_samples == 4 and spec.fixed["image_size"] == 48, "--set over --quick"
    assert spec.profile == "cpu"


def test_quick_with_an_explicit_num_samples_runs_that_many_in_the_dry_run(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, LAYERED)
    assert main(["sweep", str(path), "--dry-run", "--profile", "big", "--quick", "--set", "num_samples=4"]) == 0
    out = capsys.readouterr().out
    assert "  4 trials over tasks pneumonia" in out and "scheduler: FIFO" in out and "epochs=1" in out


def test_quick_shrinks_the_demo_data_but_keeps_a_data_set_of_the_users(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "images", {"normal": 4, "pneumonia": 4})
    demo = build_sweep({**LAYERED, "profiles": {}}, quick=True, name="demo")
    assert demo.fixed["data"] == {"n": 120}
    own = build_sweep({**LAYERED, "profiles": {}, "fixed": {**LAYERED["fixed"], "data": str(data)}}, quick=True,
                      name="own")
    assert own.fixed["data"] == str(data) and own.fixed["epochs"] == 1


def test_a_profiles_demo_size_never_becomes_an_option_of_the_users_data_set(tmp_path: Path) -> None:
    """Every shipped ``cpu`` profile sizes the demo (``fixed.data: {n: 240}``), and merged into the user's
    ``--set 'fixed.data={path: ..., label_map: ...}'`` (the form the error for ``data=X`` beside ``data.K=V``
    asks for) it was "unknown data option 'n' for layout 'class_folders'" on every machine without a GPU. A
    mapping naming a data set (a path or a layout) now replaces one that only adjusts the demo; one that adjusts
    the demo still merges, and two naming a data set still merge (a label map kept when the path changes)."""
    data = make_class_folders(tmp_path / "images", {"normal": 12, "pneumonia": 12})
    own = {"path": str(data), "label_map": {"NORMAL": "normal"}}
    for quick in (False, True):
        spec = build_sweep("transfer", parse_overrides([f"fixed.data={own}", "tasks=[pneumonia]"]), profile="cpu",
                           quick=quick)
        assert spec.fixed["data"] == own
    assert main(["sweep", "transfer", "--dry-run", "--set", f"fixed.data={own}", "--set", "tasks=[pneumonia]"]) == 0
    demo = build_sweep("transfer", parse_overrides(["fixed.data.seed=3"]), profile="cpu")
    assert demo.fixed["data"] == {"n": 240, "seed": 3}
    elsewhere = make_class_folders(tmp_path / "other", {"normal": 12, "pneumonia": 12})
    layered = {**LAYERED, "profiles": {"cpu": {"fixed": {"data": {"path": str(data)}}}},
               "fixed": {**LAYERED["fixed"], "data": {"path": str(elsewhere), "classes": ["normal", "pneumonia"]}}}
    assert build_sweep(layered, profile="cpu", name="two").fixed["data"] == {"path": str(data),
                                                                             "classes": ["normal", "pneumonia"]}
    config = resolve_config({"task": "pneumonia", "model": "baseline", "data": {"n": 100}}, {"data": own})
    assert config.data["path"] == str(data) and "n" not in config.data


def test_relative_data_paths_are_made_absolute_where_the_sweep_starts(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray runs each trial in its own working directory: the sweep's data paths are resolved from the directory
    it starts in, wherever they are given (``tests/test_sweep.py`` runs a sweep on one)."""
    make_class_folders(tmp_path / "xray", {"normal": 12, "pneumonia": 12})
    (tmp_path / "spec.yaml").write_text("path: xray\n")
    monkeypatch.chdir(tmp_path)
    spec = build_sweep({**LAYERED, "profiles": {}, "data": "xray",
                        "fixed": {**LAYERED["fixed"], "test_data": {"path": "spec.yaml"}},
                        "space": {**LAYERED["space"], "data": {"type": "categorical", "choices": ["xray", "demo"]}},
                        "per_task": {"pneumonia": {"data": {"type": "categorical", "choices": ["spec.yaml"]}}}},
                       name="relative")
    assert spec.data == str(tmp_path / "xray")
    assert spec.fixed["test_data"] == {"path": str(tmp_path / "spec.yaml")}
    assert spec.space["data"]["choices"] == [str(tmp_path / "xray"), "demo"]
    assert spec.per_task["pneumonia"]["data"]["choices"] == [str(tmp_path / "spec.yaml")]


def test_a_data_spec_file_named_as_the_path_of_a_mapping_takes_the_mappings_options(tmp_path: Path) -> None:
    """``fixed.data=spec.yaml`` beside ``fixed.data.split.seed=1`` sets data both as a value and as a group, so
    a data-spec file could not be adjusted from ``--set`` at all: ``{path: spec.yaml, ...}`` now reads the file
    and lays the mapping's keys over it."""
    data = make_class_folders(tmp_path / "images", {"NORMAL": 12, "PNEUMONIA": 12})
    (tmp_path / "spec.yaml").write_text("data:\n  path: images\n  split: {train: 0.5, val: 0.25, test: 0.25}\n")
    config = resolve_config({"task": "pneumonia", "model": "baseline"},
                            {"data": {"path": str(tmp_path / "spec.yaml"), "split": {"seed": 4}}})
    assert config.data == {"path": str(data.resolve()), "split": {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 4}}
    given = f"fixed.data={{path: {tmp_path / 'spec.yaml'}, split: {{seed: 4}}}}"
    spec = build_sweep("transfer", parse_overrides([given, "tasks=[pneumonia]"]), profile="cpu")
    assert spec.fixed["data"]["split"] == {"seed": 4}  # expanded when each trial's config is made
    assert main(["sweep", "transfer", "--dry-run", "--set", f"fixed.data={{path: {tmp_path / 'spec.yaml'}}}",
                 "--set", "tasks=[pneumonia]"]) == 0


def test_quick_keeps_a_models_own_image_size_at_its_smallest() -> None:
    """InceptionV3 needs 75 px: ``transfer``'s own per-model sizes for it survive ``--quick`` (cut to the
    smallest), so the quick sweep loads instead of failing in every InceptionV3 trial."""
    for profile, smallest in (("cpu", 75), (None, 150)):
        spec = build_sweep("transfer", profile=profile, quick=True, resolve_weights=False)
        assert spec.fixed["image_size"] == 64 and "image_size" not in spec.space
        assert spec.per_model["inception_v3"]["image_size"]["choices"] == [smallest]


@pytest.mark.parametrize(("sizes", "error"), [
    ([75, 150], None),
    ([50, 75], "fixed, per_model.inception_v3.image_size = 50 (task 'pneumonia', model 'inception_v3'): image_size=50"),
])
def test_a_fixed_key_every_trial_draws_anew_is_checked_as_drawn(tmp_path: Path, sizes: list, error: str | None) -> None:
    path = _write(tmp_path, {**LAYERED, "models": ["inception_v3"], "space": {}, "profiles": {},
                             "fixed": {"image_size": 64, "weights": "none", "epochs": 1},
                             "per_model": {"inception_v3": {"image_size": {"type": "categorical", "choices": sizes}}}})
    if error is None:
        assert load_sweep(path).fixed["image_size"] == 64
        return
    with pytest.raises(ConfigError, match=re.escape(error)):
        load_sweep(path)


def test_auto_profile_is_cpu_without_gpus_and_asks_the_gpus_only_when_it_must(tmp_path: Path) -> None:
    path = _write(tmp_path, LAYERED)
    messages: list[str] = []
    assert build_sweep(path, gpus=0, printer=messages.append).profile == "cpu"
    assert messages == ["no GPU on this machine: using the search space's 'cpu' profile (--profile to choose another)"]
    with_gpu = build_sweep(path, gpus=1)
    assert with_gpu.profile is None and with_gpu.num_samples == 8

    def never() -> float:
        raise AssertionError("the GPUs were counted although the choice did not need them")

    assert build_sweep(path, profile="big", gpus=never).num_samples == 20
    assert build_sweep(path, profile=None, gpus=never).profile is None, "a record's None: the file as written"
    bad = _write(tmp_path, {**LAYERED, "num_samples": 0}, "bad")
    with pytest.raises(ConfigError, match="num_samples must be >= 1"):
        build_sweep(bad, gpus=never)  # the real run's function joins the cluster: a bad file fails before it


@pytest.mark.parametrize(("profiles", "message"), [
    ({"auto": {"num_samples": 2}}, r"profiles.auto: 'auto' is what --profile takes"),
    ({"big": {"num_sample": 2}}, r"\(profile 'big'\): unknown key 'num_sample'"),
])
def test_bad_profiles_fail_whichever_is_chosen(tmp_path: Path, profiles: dict, message: str) -> None:
    path = _write(tmp_path, {**LAYERED, "profiles": profiles})
    for profile in ("auto", None):
        with pytest.raises(ConfigError, match=message):
            build_sweep(path, profile=profile, gpus=0)


def test_library_build_sweep_is_what_the_dry_run_prints(tmp_path: Path, capsys,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's dry run and a library call with the same arguments build the same spec: every line the dry
    run prints about it is the library spec's description."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    data = make_class_folders(tmp_path / "images", {"normal": 8, "pneumonia": 8})
    path = _write(tmp_path, {**LAYERED, "fixed": {**LAYERED["fixed"], "data": str(data)}})
    assert main(["sweep", str(path), "--dry-run", "--quick", "--set", "seed=9"]) == 0
    out = capsys.readouterr().out
    spec = build_sweep(str(path), {"seed": 9}, quick=True)
    assert spec.profile == "cpu" and spec.seed == 9
    expected = f"{describe(spec)}\n  profile: cpu\n{describe_run(spec, {'CPU': float(os.cpu_count()), 'GPU': 0.0})}"
    assert expected in out, (expected, out)


def test_train_resolves_weights_auto_as_the_sweep_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``train --set weights=auto`` is ImageNet or none, whichever the sweep's ``weights: auto`` gives on this
    machine (offline: none, with the same warning), never a weights file ``<cwd>/auto``."""
    monkeypatch.chdir(tmp_path)
    train_said: list[str] = []
    config = resolve_config({"task": "pneumonia", "model": "vgg16", "image_size": 32},
                            parse_overrides(["weights=auto"]), printer=train_said.append)
    sweep_said: list[str] = []
    spec = build_sweep({"tasks": ["pneumonia"], "models": ["vgg16"], "fixed": {"weights": "auto", "image_size": 32}},
                       name="auto", printer=sweep_said.append)
    assert config.model_params["weights"] == spec.fixed["weights"] in ("imagenet", "none")
    assert train_said == sweep_said
    without = resolve_config({"task": "pneumonia", "model": "vgg16", "image_size": 32, "weights": "none"},
                             printer=train_said.append)
    assert without.model_params["weights"] == "none" and len(train_said) == len(sweep_said)


#: ImageNet weights unreachable, for real: every download goes to a proxy on a closed port (localhost, Ray's
#: own connections, stays direct).
OFFLINE = {**{key: "http://127.0.0.1:9" for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")},
           **{key: "localhost,127.0.0.1" for key in ("NO_PROXY", "no_proxy")}}


def test_weights_auto_offline_pins_frozen_layers_to_0_and_a_weights_file_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Freezing layers of a random backbone only keeps them random: when ``weights: auto`` falls back to
    ``none`` the sweep stops searching ``frozen_layers`` and every trial (and ``train``) uses 0, said once. A
    sweep with a weights file keeps its search as written."""
    from runner.config import make_config
    from runner.models import create_model, save_backbone_weights

    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    source = {"tasks": ["pneumonia"], "models": ["vgg16", "vgg19"], "fixed": {"weights": "auto", "image_size": 32},
              "space": {"frozen_layers": {"type": "categorical", "choices": [0.5, "all"]},
                        "dropout": {"type": "float", "low": 0.0, "high": 0.5}},
              "per_model": {"vgg19": {"frozen_layers": {"type": "categorical", "choices": [4]}}}}
    said: list[str] = []
    spec = build_sweep(source, name="auto", printer=said.append)
    assert spec.fixed["weights"] == "none" and spec.fixed["frozen_layers"] == 0
    assert list(spec.space) == ["dropout"] and spec.per_model == {"vgg19": {}}
    assert len(said) == 1 and "weights: auto -> none" in said[0] and "frozen_layers 0" in said[0], said
    trial = make_config(spec.trial_values({"task": "pneumonia", "model": "vgg19", "dropout": 0.2}))
    assert trial.model_params["weights"] == "none" and trial.model_params["frozen_layers"] == 0
    train = resolve_config({"task": "pneumonia", "model": "vgg16", "image_size": 32, "frozen_layers": "all"},
                           parse_overrides(["weights=auto"]), printer=said.append)
    assert train.model_params["frozen_layers"] == 0 and said[1] == said[0]

    weights = save_backbone_weights(create_model("vgg16", input_shape=(32, 32, 1), weights="none", hidden=8),
                                    tmp_path / "vgg16.weights.h5")
    with_file = {**source, "models": ["vgg16"], "per_model": {}, "fixed": {"weights": str(weights), "image_size": 32}}
    resolved = build_sweep(with_file, name="file", printer=said.append)
    assert resolved == build_sweep(with_file, name="file", resolve_weights=False) and len(said) == 2
    assert "frozen_layers" in resolved.space and "frozen_layers" not in resolved.fixed


def test_shipped_spaces_are_found_from_a_folder_without_search_spaces(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    found = find_search_space("transfer")
    assert found.origin == SHIPPED and found.path == SHIPPED_DIR / "transfer.yaml"
    assert SHIPPED_DIR.parent == Path(runner.__file__).parent, "shipped inside the package"
    assert load_sweep("transfer").models == ("vgg16", "vgg19", "inception_v3", "densenet121")
    assert set(SEARCH_SPACES.names()) == {"anomaly", "findings", "scratch", "segmentation", "transfer"}


def test_the_users_search_spaces_folder_wins_and_list_says_where_each_came_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    own = _write(tmp_path / "search_spaces", {**LAYERED, "description": "my own transfer"}, "transfer")
    _write(tmp_path / "search_spaces", {**LAYERED, "description": "my own"}, "mine")
    assert find_search_space("transfer").origin == USER and load_sweep("transfer").models == ("baseline",)
    assert "mine" in SEARCH_SPACES.names()
    assert main(["sweep", "--list"]) == 0
    out = capsys.readouterr().out
    assert "transfer: my own transfer\n" in out and f"  from: ./search_spaces ({own})\n" in out
    assert f"  from: shipped ({SHIPPED_DIR / 'scratch.yaml'})\n" in out
    assert main(["sweep", str(own), "--list"]) == 0
    assert capsys.readouterr().out.endswith(f"  from: path ({own})\n\n")


def test_list_reports_a_broken_file_and_still_lists_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys) -> None:
    monkeypatch.chdir(tmp_path)
    broken = _write(tmp_path / "search_spaces", {**LAYERED, "profiles": {}, "num_sampels": 2}, "broken")
    assert main(["sweep", "--list"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {broken}: unknown key 'num_sampels'") and "from: shipped" in captured.out


def test_a_wheel_ships_the_search_spaces(tmp_path: Path) -> None:
    """``pip install .`` or a wheel (not only an editable checkout) carries every shipped search space. Built
    from a copy of the project, so the build leaves nothing in the checkout."""
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, source / name)
    for package in ("runner", "tasks"):
        if (REPO / package).is_dir():
            shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("cxr_runner-*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("runner/search_spaces/")}
    assert shipped == {f"runner/search_spaces/{path.name}" for path in SHIPPED_DIR.glob("*.yaml")}
    assert len(shipped) == 5, json.dumps(sorted(shipped))


def test_the_shipped_segmentation_space_never_freezes_a_random_encoder() -> None:
    """Offline ``weights: auto`` is ``none``; trials that froze that random VGG16 encoder over-segmented real
    lung masks (BENCHMARKS.md, "Lung segmentation on real masks"). Every configuration the space can draw
    (each end of every range, every choice) builds a U-Net whose whole encoder trains."""
    from runner.models import create_model
    from runner.sweep.space import edge_configs
    from runner.trial import parameter_counts

    spec = build_sweep("segmentation", {"fixed": {"weights": "none"}}, "cpu", resolve_weights=False)
    configs = list(edge_configs(spec))
    assert len(configs) > 5
    for where, config in configs:
        model = create_model(config.model, input_shape=(32, 32, 1), **config.model_params)
        assert parameter_counts(model)["frozen"] == 0, where
