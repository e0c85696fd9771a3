"""Config input, from the corpus items of ``tests/bad_corpus.py`` (the ``config`` block): YAML read as people
write it (``1e-3`` is a float, a key given twice is an error), values Ray would only assert on after it started,
paths of the wrong kind, a damaged sweep record, and ``sweep --dry-run``. None of these tests starts Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray
from bad_corpus import ITEMS, TINY_SWEEP, TRUNCATED_SWEEP_ID
from conftest import make_class_folders

from runner.cli import main
from runner.config import load_config_file, resolve_config
from runner.data._dataset import read_spec_file
from runner.errors import ConfigError, StorageError
from runner.overrides import parse_overrides
from runner.sweep.assemble import load_sweep
from runner.sweep.record import SweepRun, find_sweep


def _item(name: str, tmp_path: Path) -> Path:
    return ITEMS[name](tmp_path / name)


def test_exponent_floats_load_as_floats_and_ints_stay_ints(tmp_path: Path) -> None:
    spec = load_sweep(str(_item("yaml_exponent_floats", tmp_path)))
    low, high = spec.space["learning_rate"]["low"], spec.space["learning_rate"]["high"]
    assert (low, high, spec.fixed["learning_rate"]) == (0.0001, 0.03, 0.001)
    assert all(type(value) is float for value in (low, high, spec.fixed["learning_rate"]))
    assert type(spec.num_samples) is int and type(spec.fixed["image_size"]) is int


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_train_refuses_a_seed_numpy_cannot_take_before_training(seed: str, tmp_path: Path, capsys) -> None:
    """Before: NumPy's ``ValueError: Seed must be between 0 and 2**32 - 1`` as a traceback, after the data had
    been read."""
    assert main(["train", "--task", "pneumonia", "--model", "baseline", "--set", f"seed={seed}", "--out",
                 str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: seed={seed} must be an integer from 0 to 2147483647\n"


def test_set_values_read_as_the_files_do() -> None:
    assert parse_overrides(["learning_rate=1e-3", "data.n=200", "weights=none", "epochs=3", "dropout=3E-1",
                            "name=1e3x"]) == {"learning_rate": 0.001, "data": {"n": 200}, "weights": "none",
                                              "epochs": 3, "dropout": 0.3, "name": "1e3x"}
    config = resolve_config({"task": "pneumonia", "model": "baseline"},
                            parse_overrides(["learning_rate=1e-3", "mixed_precision=off", "data.n=200"]))
    assert (config.learning_rate, config.mixed_precision, config.data["n"]) == (0.001, "off", 200)


@pytest.mark.parametrize(("value", "message"), [
    ('data={path: x, label_regex: "_(\\d)\\.png$"}', r"\(found unknown escape character 'd'\): in double quotes "
                                                     r"write a backslash as \\\\, or use single quotes$"),
    ('data.label_regex="_(\\d)"', r"\(found unknown escape character 'd'\)"),
    ("tasks=[pneumonia, covid", r"\(expected ',' or '\]', but got '<stream end>'\): close each bracket and quote"),
])
def test_a_set_value_that_opens_yaml_but_is_not_is_one_error(value: str, message: str) -> None:
    """Before: the text stayed a string, so a data mapping with a double-quoted regex became a data path named
    by the whole mapping ('data path .../{layout: ...} does not exist'), and a quoted regex kept its quotes.
    Text that does not open a mapping, list or quoted string still stays the text typed."""
    with pytest.raises(ConfigError, match=r"^--set value '.*' is not valid YAML " + message):
        parse_overrides([value])
    assert parse_overrides(["name=a: b: c", "data.label_regex='_(\\d)'"]) == {
        "data": {"label_regex": "_(\\d)"}, "name": "a: b: c"}


@pytest.mark.parametrize("pairs", [["data=/scans", "data.label_map.COVID=covid"],
                                   ["data.label_map.COVID=covid", "data=/scans"]])
def test_a_key_set_as_a_value_and_as_a_group_is_refused_in_either_order(pairs: list[str]) -> None:
    """Before: with the group first, ``data=/scans`` silently replaced it and the label_map was gone."""
    with pytest.raises(ConfigError, match=r"^--set '.*': 'data' is set both as a value and as a group: set it once, "
                                          r"as a mapping \(--set 'data=\{path: PATH, label_map: \{\.\.\.\}\}'\)$"):
        parse_overrides(pairs)
    assert parse_overrides(["data.n=5", "data={seed: 2}"]) == {"data": {"n": 5, "seed": 2}}  # a mapping adds to it
    assert parse_overrides(["epochs=1", "epochs=3"]) == {"epochs": 3}  # a value given twice: the last, as ever


def test_train_takes_an_exponent_learning_rate_from_set(tmp_path: Path, capsys) -> None:
    """Before: ``error: learning_rate='1e-3' must be a number > 0``. ``bootstrap`` is checked after the
    learning rate, so its error shows the rate was read as a number, and no training runs."""
    assert main(["train", "--task", "pneumonia", "--model", "baseline", "--set", "learning_rate=1e-3",
                 "--set", "bootstrap=-1", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: bootstrap=-1 must be an integer >= 0 (0 = off)\n"


LOAD_ERRORS = {
    "yaml_duplicate_block": "{path}: key 'fixed' is given twice (lines 3 and 12): keep one",
    "yaml_duplicate_nested_key": "{path}: key 'epochs' is given twice (lines 4 and 6): keep one",
    "yaml_list": "search space {path} holds a list, not a mapping of keys to values",
    "yaml_not_utf8": "search space {path} is not UTF-8 text (byte 0): save it as UTF-8 YAML",
    "yaml_folder": "search space {path} is a folder, not a YAML file: give the path of the file",
    "sweep_grace_above_max_t": "{path}: scheduler.grace_period=5 is more than scheduler.max_t=3",
    "sweep_reduction_factor_one": "{path}: scheduler.reduction_factor=1 must be > 1",
    "sweep_no_resources": "{path}: resources: cpu 0 and gpu 0: a trial needs some resource to run on",
    "sweep_negative_seed": "{path}: fixed (task 'pneumonia', model 'baseline'): seed=-1 must be an integer from 0 "
                           "to 2147483647",
    "sweep_negative_searcher_seed": "{path}: seed=-3 (the searcher's) must be an integer from 0 to 2147483647",
    "sweep_batch_over_two_gpus": "{path}: fixed (task 'pneumonia', model 'baseline'): batch_size=15 does not split "
                                 "evenly over the 2 GPUs of resources.gpu=2: use a multiple of 2",
    "sweep_negative_concurrency": "{path}: max_concurrent_trials=-1 must be >= 1, or null",
    "sweep_zero_concurrency": "{path}: max_concurrent_trials=0 must be >= 1, or null",
    "sweep_bad_unchosen_profile": "{path} (profile 'gpu'): unknown key 'num_sample' (did you mean 'num_samples'?)",
    "sweep_missing_data_path": "{path}: fixed (task 'pneumonia', model 'baseline'): data: data path "
                               "/no/such/xray/folder does not exist",
    "sweep_data_option_typo": "{path}: fixed (task 'pneumonia', model 'baseline'): data: unknown data option "
                              "'layot' for layout 'demo': choose from",
}


@pytest.mark.parametrize("item", LOAD_ERRORS)
def test_bad_search_space_is_one_error_at_load(item: str, tmp_path: Path) -> None:
    path = _item(item, tmp_path)
    with pytest.raises(ConfigError) as error:
        load_sweep(str(path))
    assert LOAD_ERRORS[item].format(path=path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("item", ["sweep_grace_above_max_t", "sweep_bad_unchosen_profile", "yaml_duplicate_block"])
def test_sweep_command_fails_before_ray_starts(item: str, tmp_path: Path, capsys) -> None:
    path = _item(item, tmp_path)
    assert main(["sweep", str(path), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and LOAD_ERRORS[item].format(path=path) in err
    assert not ray.is_initialized() and not (tmp_path / "results" / "tune").exists()


def test_unknown_profile_fails_before_ray_starts(tmp_path: Path, capsys) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(json.dumps({**TINY_SWEEP, "profiles": {"cpu": {"num_samples": 1}}}))
    assert main(["sweep", str(path), "--profile", "gpu", "--results", str(tmp_path / "results")]) == 2
    assert capsys.readouterr().err == f"error: {path}: unknown profile 'gpu': choose from cpu\n"
    assert not ray.is_initialized()


def test_config_and_data_spec_files_share_the_reader(tmp_path: Path) -> None:
    folder = _item("yaml_folder", tmp_path)
    with pytest.raises(ConfigError, match=f"^config file {folder} is a folder, not a YAML file"):
        load_config_file(folder)
    spec = tmp_path / "data.yaml"
    spec.write_text("data:\n  layout: demo\n  n: 60\n  n: 80\n")
    with pytest.raises(ConfigError, match=f"^{spec}: key 'n' is given twice \\(lines 3 and 4\\)"):
        read_spec_file(spec)


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--task", "pneumonia", "--model", "baseline", "--config", "{folder}"],
     "error: config file {folder} is a folder, not a YAML file: give the path of the file\n"),
    (["train", "--task", "pneumonia", "--model", "baseline", "--config", "{list}"],
     "error: config file {list} holds a list, not a mapping of keys to values: write it as key: value lines\n"),
    (["cluster", "check", "{folder}"], "error: cluster file {folder} is a folder, not a YAML file: give the path "
                                       "of the file\n"),
    (["cluster", "check", "{latin}"], "error: cluster file {latin} is not UTF-8 text (byte 0): save it as UTF-8 "
                                      "YAML\n"),
])
def test_file_of_the_wrong_kind_is_one_error_line(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    paths = {"folder": _item("yaml_folder", tmp_path), "list": _item("yaml_list", tmp_path),
             "latin": _item("yaml_not_utf8", tmp_path)}
    assert main([arg.format(**paths) for arg in argv]) == 2
    assert capsys.readouterr().err == message.format(**paths)


@pytest.mark.parametrize(("argv", "option"), [
    (["train", "--task", "pneumonia", "--model", "baseline", "--out", "{file}"], "--out"),
    (["data", "demo", "--out", "{file}"], "--out"),
    (["report", "some-sweep", "--out", "{file}"], "--out"),
    (["leaderboard", "--results", "{file}"], "--results"),
    (["sweep", "scratch", "--results", "{file}"], "--results"),
])
def test_a_file_where_a_folder_is_wanted_is_refused(argv: list[str], option: str, tmp_path: Path, capsys) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_:
        main([arg.format(file=file) for arg in argv])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.endswith(f"error: argument {option}: {file} is a file, not a folder: give a folder (it is created "
                         "if missing)"), last
    assert file.read_text() == "not a folder"


def test_a_path_under_a_file_is_refused(tmp_path: Path, capsys) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("x")
    with pytest.raises(SystemExit):
        main(["train", "--task", "pneumonia", "--model", "baseline", "--out", str(file / "trials")])
    assert f"{file / 'trials'} is under {file}, which is a file, not a folder" in capsys.readouterr().err


def test_report_onto_a_folder_named_like_the_page_is_one_error(tmp_path: Path) -> None:
    from runner import storage

    (tmp_path / "s1.html").mkdir()
    with pytest.raises(StorageError, match=f"^cannot write {tmp_path / 's1.html'}: it is a folder"):
        storage.write_text(str(tmp_path / "s1.html"), "<html>")


def test_truncated_sweep_record_says_which_file_and_how_to_recover(tmp_path: Path, capsys) -> None:
    results = _item("sweep_record_truncated", tmp_path)
    record = results / "sweeps" / f"{TRUNCATED_SWEEP_ID}.json"
    for sweep_id in (TRUNCATED_SWEEP_ID, None):  # by id, and as the newest sweep of that name
        with pytest.raises(ConfigError) as error:
            find_sweep(str(results), "tiny", sweep_id)
        assert str(error.value).startswith(f"sweep record {record} is damaged (Unterminated string")
        assert str(error.value).endswith("restore it from a backup, or start a new sweep (the finished trials' "
                                         "leaderboard rows are intact)")
    assert main(["sweep", "tiny", "--resume", TRUNCATED_SWEEP_ID, "--results", str(results)]) == 2
    assert capsys.readouterr().err.startswith(f"error: sweep record {record} is damaged")
    assert not ray.is_initialized()


def test_a_resume_refuses_start_options_and_a_space_file_changed_since_the_start(tmp_path: Path, capsys) -> None:
    """Before: ``--resume --set fixed.batch_size=8`` (or ``--quick``, ``--profile``, ``--storage``) ran the
    recorded values without a word, and a space file edited since the start gave the trials still to run other
    fixed values than the ones before them, under one sweep id. Both are one error, before Ray starts."""
    import yaml

    from runner.sweep.space import space_digest

    path, results = tmp_path / "tiny.yaml", tmp_path / "results"
    path.write_text(yaml.safe_dump(TINY_SWEEP))
    SweepRun(sweep_id="tiny-1", name="tiny", results=str(results), storage=str(results / "tune"), source=str(path),
             overrides={}, profile=None, space_digest=space_digest(str(path))).save()
    resume = ["sweep", str(path), "--resume", "tiny-1", "--results", str(results)]
    assert main([*resume, "--set", "fixed.batch_size=8", "--quick"]) == 2
    assert capsys.readouterr().err == (f"error: --set, --quick: chosen when a sweep starts, and --resume continues "
                                       f"tiny-1 as it started (its record: {results}/sweeps/tiny-1.json); leave that "
                                       "out, or start a new sweep\n")
    path.write_text(yaml.safe_dump({**TINY_SWEEP, "num_samples": 9}))
    assert main(resume) == 2
    assert capsys.readouterr().err == (f"error: search space {path} has changed since sweep tiny-1 started: the "
                                       "trials run now would not match the ones before them; put the file back as "
                                       "it was, or start a new sweep\n")
    assert not ray.is_initialized()


def test_sweep_record_is_replaced_whole(tmp_path: Path) -> None:
    """``save`` writes a new file and renames it over the old one (a new inode): a reader, or a crash mid-write,
    sees the old record or the new one, never a mix; no temporary file stays behind."""
    run = SweepRun(sweep_id="tiny-1", name="tiny", results=str(tmp_path), storage=str(tmp_path / "tune"),
                   source="tiny.yaml", overrides={"num_samples": 2}, profile=None)
    run.save()
    record = tmp_path / "sweeps" / "tiny-1.json"
    first = record.stat().st_ino
    SweepRun(**{**json.loads(record.read_text()), "profile": "cpu"}).save()
    assert record.stat().st_ino != first and json.loads(record.read_text())["profile"] == "cpu"
    assert [p.name for p in record.parent.iterdir()] == ["tiny-1.json"]
    assert find_sweep(str(tmp_path), "tiny", None).profile == "cpu"


def _tiny_sweep_on_files(tmp_path: Path, **changes: object) -> Path:
    data = make_class_folders(tmp_path / "images", {"normal": 8, "pneumonia": 8})
    path = tmp_path / "tiny.yaml"
    profiles = {"cpu": {"num_samples": 3, "scheduler": {"max_t": 4}}}
    fixed, scheduler = {"epochs": 1, "image_size": 32}, {"type": "asha", "max_t": 9}
    path.write_text(json.dumps({**TINY_SWEEP, "fixed": fixed, "data": str(data), "scheduler": scheduler,
                                "profiles": profiles, **changes}))
    return path


def test_dry_run_checks_and_prints_the_sweep_without_ray(tmp_path: Path, capsys,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU here: the cpu profile is chosen, as a real run would
    path = _tiny_sweep_on_files(tmp_path)
    assert main(["sweep", str(path), "--dry-run", "--set", "fixed.learning_rate=2e-3",
                 "--results", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    for line in ["no GPU on this machine: using the search space's 'cpu' profile",
                 "  tasks: pneumonia   models: baseline",
                 "  learning_rate: float 0.001 .. 0.01 (log)",
                 "  fixed: epochs=1, image_size=32, learning_rate=0.002",
                 "  profile: cpu",
                 "  3 trials over tasks pneumonia x models baseline",
                 "  per trial: 1 CPU, 0 GPU, trained in the trial process",
                 "  scheduler: ASHA: after epoch 1, 3 a trial goes on only if in the best 1/3 so far (max_t 4, "
                 "grace_period 1)",
                 "  searcher: Optuna TPE (seed 0): 2 random trials, then proposals from the results so far",
                 f"  data for pneumonia: {tmp_path / 'images'} (class_folders): train ",
                 "classes normal, pneumonia",
                 "dry run: every check passed; nothing was trained and Ray was not started"]:
        assert line in out, (line, out)
    assert not ray.is_initialized() and not (tmp_path / "results").exists()


def test_dry_run_quick_is_fifo_with_two_trials(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert main(["sweep", str(_tiny_sweep_on_files(tmp_path)), "--dry-run", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "profile: cpu" not in out and "  2 trials over" in out and "scheduler: FIFO" in out


def test_dry_run_lists_the_data_and_fails_on_what_only_listing_finds(tmp_path: Path, capsys) -> None:
    path = _item("sweep_unknown_label_in_data", tmp_path)
    load_sweep(str(path))  # the options and the path are fine: only listing the files finds the bad label
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: data of task 'pneumonia': ")
    assert "label 'pnuemonia' is not one of normal, pneumonia (8 such images)" in err
    assert not ray.is_initialized()


def test_dry_run_refuses_data_whose_splits_cannot_hold_the_classes(tmp_path: Path, capsys) -> None:
    """Two images per class cannot put both classes in train, val and test: the trials would train and report
    f1 0.0 on a split missing a class, so the dry run stops there, as the trial would."""
    data = make_class_folders(tmp_path / "data", {"normal": 2, "pneumonia": 2})
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps({**TINY_SWEEP, "data": str(data)}))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: data of task 'pneumonia': split '") and "has no '" in err
    assert not ray.is_initialized()
