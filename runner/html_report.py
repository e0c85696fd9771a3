"""``python -m runner report SWEEP_ID``: one self-contained HTML page about a sweep.

Everything comes from what the sweep already wrote: the leaderboard rows (``runner.leaderboard.load``), the
sweep record ``<results>/sweeps/<id>.json`` (to rebuild the search space for Optuna's importances), and the
best trials' folders (their ``result.json`` and per-trial PNGs, ``runner.plots``). Images are embedded as
base64 ``data:`` URIs and the page's only script is inline (sorting the table), so the file can be mailed,
archived or opened offline: it loads nothing from anywhere.

Sections: compute used, the leaderboard (click a header to sort), the best trial of each task and model with
its plots (and, for a binary or multi-class task, its test calibration: ECE, Brier score, temperature),
external validation (``runner evaluate``'s rows: internal test beside each external data set), the
confirmation of the top configurations with new seeds (only once ``python -m runner confirm`` has recorded
runs for the sweep), the monitored metric against each hyper-parameter, parallel coordinates, Optuna
parameter importances, the trials ASHA stopped, and the failed trials. A section with nothing to show (no trial stopped,
one finished trial to plot) is left out, and one line under the title says which and why, so every heading on
the page has content under it; external validation and confirmation appear only once their commands ran.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from runner import leaderboard, storage
from runner.confirm import CONFIDENCE, confirm_sweep_id, summarise
from runner.errors import ConfigError
from runner.plots import new_figure
from runner.report import human_duration
from runner.sweep.importance import direction, finished_rows, numeric_values, parameter_importances

__all__ = ["add_report_command", "render_report", "write_report"]

SORT_SCRIPT = """
for (const table of document.querySelectorAll("table.sortable")) {
  table.querySelectorAll("th").forEach((th, column) => th.addEventListener("click", () => {
    const ascending = th.dataset.order !== "asc";
    table.querySelectorAll("th").forEach(other => delete other.dataset.order);
    th.dataset.order = ascending ? "asc" : "desc";
    const key = row => {
      const cell = row.cells[column];
      const text = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
      const number = Number(text);
      return text === "" || Number.isNaN(number) ? [1, text] : [0, number];
    };
    const body = table.tBodies[0];
    const rows = Array.from(body.rows).sort((a, b) => {
      const [ka, va] = key(a), [kb, vb] = key(b);
      const order = ka !== kb ? ka - kb : (va < vb ? -1 : va > vb ? 1 : 0);
      return ascending ? order : -order;
    });
    rows.forEach(row => body.appendChild(row));
  }));
}
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-bottom: 0.3em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; }
table.sortable th { cursor: pointer; background: #f3f3f3; }
table.sortable th[data-order="asc"]::after { content: " \\25B2"; }
table.sortable th[data-order="desc"]::after { content: " \\25BC"; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed { color: #a00; } tr.stopped { color: #666; }
img { max-width: 100%; border: 1px solid #eee; margin: 4px 0; }
.note { color: #666; font-size: 0.9em; }
.warning { background: #fff3cd; border: 1px solid #e0c36a; padding: 0.5em; }
.scroll { overflow-x: auto; }
"""


# --------------------------------------------------------------------------------------------------- CLI


def add_report_command(commands: argparse._SubParsersAction) -> None:
    """Add ``report`` to the ``python -m runner`` subcommands (called from ``runner.cli``)."""
    report = commands.add_parser(
        "report", help="write a sweep's self-contained HTML report",
        description="Writes OUT/<sweep_id>.html: leaderboard (sortable), best trial per task and model with its "
                    "plots, metric vs hyper-parameters, parallel coordinates, Optuna parameter importances, trials "
                    "stopped by ASHA, failures and compute used. Images are embedded; the page loads nothing.")
    report.add_argument("sweep_id", help="the sweep id (python -m runner leaderboard shows them)")
    storage.add_results_argument(report)
    report.add_argument("--out", type=storage.folder_argument,
                        help="folder to write the HTML file into (default <results>/reports)")
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    path = write_report(args.results, args.sweep_id, args.out)
    print(f"wrote {path}")
    return 0


def write_report(results: str, sweep_id: str, out: str | None = None) -> str:
    """Renders the report and writes ``<out>/<sweep_id>.html``; returns its location."""
    location = storage.join(out or storage.join(results, "reports"), f"{sweep_id}.html")
    storage.write_text(location, render_report(results, sweep_id))
    return location


# ------------------------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class Omitted:
    """What a section function returns instead of its HTML when it has nothing to show: why, in a few words."""

    why: str


Section = str | Omitted


def _sweep_record(results: str, sweep_id: str) -> dict[str, Any] | None:
    text = storage.read_text(storage.join(results, "sweeps", f"{sweep_id}.json"))
    return json.loads(text) if text else None


def _search_space(record: dict[str, Any] | None):
    """The sweep's search space as it ran (profile, ``--set``, ``--quick``), or None if it cannot be
    rebuilt (the YAML moved): importances then infer distributions from the rows."""
    if record is None:
        return None
    from runner.sweep.assemble import build_sweep

    try:
        return build_sweep(record["source"], record.get("overrides") or {}, record.get("profile"),
                           bool(record.get("quick")), resolve_weights=False)
    except (ConfigError, OSError):
        return None


def _with_objective(board: pd.DataFrame) -> pd.DataFrame:
    """Every row with ``optimised_by`` (the validation metric its sweep optimised), ``objective`` (its value,
    NaN when none) and ``rank`` within its task (1 = best, by that metric's mode)."""
    finished = finished_rows(board)["objective"]
    board = board.assign(objective=finished.reindex(board.index).astype(float),
                         optimised_by=leaderboard.optimised(board)[0])
    ranks = pd.Series(np.nan, index=board.index)
    for _, rows in board.groupby("task", sort=False):
        ascending = direction(rows) == "min"
        ranks[rows.index] = rows["objective"].rank(ascending=ascending, method="min")
    return board.assign(rank=ranks).sort_values(["task", "rank"], na_position="last", kind="mergesort")


def _varying(rows: pd.DataFrame) -> list[str]:
    """hp_ columns whose values differ between rows: what the sweep searched. Data specs are left out: a
    failed row records the spec as given, a finished one as resolved, so they differ without being searched."""
    return [c for c in rows.columns if c.startswith("hp_") and c not in ("hp_data", "hp_test_data")
            and rows[c].dropna().astype(str).nunique() > 1]


# ----------------------------------------------------------------------------------------------- render


def render_report(results: str, sweep_id: str) -> str:
    """The whole page as one HTML string."""
    record = _sweep_record(results, sweep_id)
    everything = leaderboard.load(results)  # read once: this sweep's rows and its confirmation runs
    recorded = leaderboard.of_sweep(everything, sweep_id)
    if recorded.empty and record is None:
        raise ConfigError(f"no sweep '{sweep_id}' in {results}: check the id (python -m runner leaderboard "
                          "--results DIR lists sweeps) and --results")
    board = _with_objective(recorded)
    spec = _search_space(record)
    name = record["name"] if record else (board["sweep_name"].iloc[0] if len(board) else sweep_id)
    sections = [
        ("Compute used", _compute_section(board)),
        ("Leaderboard", _leaderboard_section(board)),
        ("Best trial per task and model", _best_section(board)),
        ("External validation", _external_section(results, sweep_id, board)),
        ("Confirmation with new seeds", _confirmation_section(recorded, leaderboard.of_sweep(
            everything, confirm_sweep_id(sweep_id)))),
        ("Validation metric vs hyper-parameters", _scatter_section(board)),
        ("Parallel coordinates", _parallel_section(board)),
        ("Parameter importances (Optuna)", _importance_section(board, spec)),
        ("Trials stopped by ASHA", _stopped_section(board)),
        ("Failed trials", _failed_section(board)),
    ]
    body = "".join(f"<h2>{escape(title)}</h2>\n{content}\n" for title, content in sections
                   if isinstance(content, str))
    omitted = "; ".join(f"{title} ({content.why})" for title, content in sections if isinstance(content, Omitted))
    left_out = _note(f"Left out, with nothing to show: {omitted}.") + "\n" if omitted else ""
    note = leaderboard.random_init_note(board)
    warning = f"<p class=\"warning\"><b>{escape(note)}</b></p>\n" if note else ""
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    source = f" from <code>{escape(str(record['source']))}</code>" if record else ""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>sweep {escape(sweep_id)}</title><style>{STYLE}</style></head><body>\n"
            f"<h1>Sweep {escape(sweep_id)}</h1>\n<p class=\"note\">search space <b>{escape(str(name))}</b>{source}; "
            f"{len(board)} trial(s); report written {made}. Ranking uses validation metrics only; test metrics "
            f"are shown beside them, never used to choose.</p>\n{warning}{left_out}{body}<script>{SORT_SCRIPT}</script>"
            "</body></html>\n")


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] | None = None,
           sortable: bool = True) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row, css in zip(rows, classes if classes is not None else [""] * len(rows), strict=True):
        cells = "".join(_cell(value) for value in row)
        body.append(f"<tr class=\"{escape(css)}\">{cells}</tr>" if css else f"<tr>{cells}</tr>")
    kind = " class=\"sortable\"" if sortable else ""
    return f"<div class=\"scroll\"><table{kind}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>" \
           "</table></div>"


def _cell(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "<td data-value=\"\">-</td>"
    if isinstance(value, bool | np.bool_):
        return f"<td>{str(bool(value)).lower()}</td>"
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        shown = f"{number:.4g}" if not float(number).is_integer() else f"{int(number)}"
        return f"<td class=\"number\" data-value=\"{number!r}\">{shown}</td>"
    return f"<td>{escape(str(value))}</td>"


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return _img(buffer.getvalue(), "plot")


def _img(data: bytes, alt: str) -> str:
    return f"<img alt=\"{escape(alt)}\" src=\"data:image/png;base64,{base64.b64encode(data).decode()}\">"


def _note(text: str) -> str:
    return f"<p class=\"note\">{escape(text)}</p>"


# ---------------------------------------------------------------------------------------------- sections


def _compute_section(board: pd.DataFrame) -> str:
    """Trials by status, CPU/GPU time spent training and evaluating, images pushed through training."""
    counts = board["status"].value_counts() if len(board) else pd.Series(dtype=int)
    train = float(board["train_seconds"].fillna(0).sum()) if len(board) else 0.0
    evaluation = float(board["eval_seconds"].fillna(0).sum()) if len(board) else 0.0
    images = _images_trained(board)
    started, finished = (board["started_at"].dropna(), board["finished_at"].dropna()) if len(board) else ((), ())
    wall = (finished.max() - started.min()).total_seconds() if len(started) and len(finished) else None
    devices = ", ".join(sorted(board["device"].dropna().astype(str).unique())) if len(board) else ""
    rows = [("trials", len(board)), *((f"  {status}", int(counts.get(status, 0))) for status in leaderboard.STATUSES),
            ("training time (summed over trials)", human_duration(train)),
            ("evaluation time (summed over trials)", human_duration(evaluation)),
            ("images trained on (epochs x training images)", images),
            ("sweep wall-clock (first start to last finish)", None if wall is None else human_duration(wall)),
            ("devices", devices or None), *_gpu_rows(board)]
    return _table(("", "value"), rows, sortable=False) + _note(
        "A trial stopped by ASHA counts its epochs up to the stop; failed trials count nothing (their time is "
        "not recorded).")


def _gpu_rows(board: pd.DataFrame) -> list[tuple[str, Any]]:
    """The trials' GPU telemetry (``runner.gpu``): utilisation, the mean of the trials' means and the highest
    peak, and the highest memory peak; one line saying there is none when no trial ran with ``nvidia-smi``."""
    columns = ["gpu_util_mean", "gpu_util_peak", "gpu_memory_peak_mb"]
    sampled = board.dropna(subset=columns) if all(column in board for column in columns) else board.iloc[:0]
    if not len(sampled):
        return [("GPU telemetry", "none: no trial ran with nvidia-smi (CPU)")]
    return [("GPU utilisation while training (mean of the trials' means, %)", float(sampled["gpu_util_mean"].mean())),
            ("GPU utilisation, highest peak (%)", float(sampled["gpu_util_peak"].max())),
            ("GPU memory, highest peak (MiB)", float(sampled["gpu_memory_peak_mb"].max())),
            ("trials with GPU telemetry", len(sampled))]


def _images_trained(board: pd.DataFrame) -> int:
    """Sum of epochs x training images; a stopped row (no data counts) borrows them from a completed row of
    the same data spec."""
    if board.empty:
        return 0
    known = board.dropna(subset=["n_train"])
    per_data = dict(zip(known["hp_data"], known["n_train"], strict=False)) if "hp_data" in board else {}
    total = 0
    for _, row in board.iterrows():
        n_train = row["n_train"] if not pd.isna(row["n_train"]) else per_data.get(row.get("hp_data"))
        if n_train is not None and not pd.isna(row["epochs_run"]):
            total += int(row["epochs_run"]) * int(n_train)
    return total


def _leaderboard_section(board: pd.DataFrame) -> Section:
    if board.empty:
        return Omitted("no trial recorded yet")
    varying = _varying(board)
    rows = []
    for _, row in board.iterrows():
        test = leaderboard.test_metric_of(row["optimised_by"])
        rows.append([row["rank"], row["trial_id"], row["status"], row["task"], row["model"], row["optimised_by"],
                     row["objective"], row.get(test) if test else None, *(row[c] for c in varying),
                     row["epochs_run"], row["train_seconds"], row["error"]])
    header = ["rank", "trial", "status", "task", "model", "metric", "validation", "test",
              *(c[3:] for c in varying), "epochs", "train s", "error"]
    return _note("Click a column header to sort. Rank is within each task, by its validation metric.") + \
        _table(header, rows, board["status"].astype(str).tolist())


def _trial_result(trial_dir: Any) -> dict[str, Any] | None:
    if not isinstance(trial_dir, str) or not trial_dir:
        return None
    text = storage.read_text(storage.join(trial_dir, "result.json"))
    return json.loads(text) if text else None


def _best_section(board: pd.DataFrame) -> Section:
    completed = board[(board["status"] == "completed") & board["objective"].notna()] if len(board) else board
    if completed.empty:
        return Omitted("no completed trial with a validation metric")
    parts = [_note("The best completed trial of each task and model by its validation metric (stopped trials "
                   "have no test evaluation and no plots).")]
    for (task, model), rows in completed.groupby(["task", "model"], sort=True):
        best = rows.sort_values("rank", kind="mergesort").iloc[0]
        parts.append(f"<h3>{escape(str(task))} / {escape(str(model))}: {escape(str(best['trial_id']))}</h3>")
        test = leaderboard.test_metric_of(best["optimised_by"])
        hps = ", ".join(f"{c[3:]}={best[c]}" for c in _varying(board) if not pd.isna(best[c]))
        parts.append(_note(f"{best['optimised_by']} {best['objective']:.4f}"
                           + (f", {test} {best[test]:.4f}" if test and not pd.isna(best.get(test)) else "")
                           + (f"; {hps}" if hps else "")))
        calibration = _calibration_note(best)
        if calibration:
            parts.append(_note(calibration))
        parts.append(_trial_images(best["trial_dir"]))
    return "\n".join(parts)


def _calibration_note(row: pd.Series) -> str:
    """The row's calibration on each held-out split (ECE with its 95% interval, Brier score; after temperature
    scaling too, when the trial scaled), or "" for a task whose scores are not class probabilities."""
    def value(column: str) -> float | None:
        found = row.get(column)
        return None if found is None or pd.isna(found) else float(found)

    parts = []
    for split, title in (("test", "test"), ("external_test", "external test")):
        ece, brier = value(f"{split}_ece"), value(f"{split}_brier")
        if ece is None:
            continue
        low, high = value(f"{split}_ece_ci_low"), value(f"{split}_ece_ci_high")
        text = f"{title} ECE {ece:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None
                                           else "") + (f", Brier {brier:.3f}" if brier is not None else "")
        after = value(f"{split}_ece_calibrated")
        if after is not None:
            text += f"; after temperature scaling ECE {after:.3f}, Brier {value(f'{split}_brier_calibrated'):.3f}"
        parts.append(text)
    temperature = value("val_temperature")
    if parts and temperature is not None:
        parts.append(f"temperature {temperature:.3g} fitted on validation")
    return "calibration: " + "; ".join(parts) if parts else ""


def _external_section(results: str, sweep_id: str, board: pd.DataFrame) -> str | None:
    """Each data set ``runner evaluate`` ran the sweep's trials on: internal test beside external, per trial.
    None (no section) before ``evaluate`` ran, as for the confirmation section."""
    from runner.evaluate import COMPARISON_HEADER, comparison, load_evaluations

    found = load_evaluations(results, sweep_id)
    if found.empty or board.empty:
        return None
    trials = board.drop_duplicates("trial_id").set_index("trial_id", drop=False)
    parts = [_note("Each recorded model on data it never saw (python -m runner evaluate), beside its own test split: "
                   "a large drop on another hospital's images is the sign of shortcut learning. Nothing was fitted "
                   "on these sets (thresholds and temperatures come from validation).")]
    for (root, fingerprint), rows in found.groupby(["data_root", "data_fingerprint"], sort=False):
        parts.append(f"<h3>{escape(str(root))}</h3>" + _note(f"data {str(fingerprint)[:12]}, "
                                                             f"{int(rows['n_images'].iloc[0])} images"))
        lines = [comparison(trials.loc[row["trial_id"]], row) for _, row in rows.iterrows()
                 if row["trial_id"] in trials.index]
        parts.append(_table(COMPARISON_HEADER, lines))
    return "\n".join(parts)


def _confirmation_section(board: pd.DataFrame, confirm_board: pd.DataFrame) -> str | None:
    """``python -m runner confirm``'s runs of this sweep (``runner.confirm.summarise``), per task: each confirmed
    configuration's single-run rank and value, then over its new seeds the mean, sd and interval of the
    validation metric and its test / external-test counterparts, and the verdict. None (no section) when the
    sweep has no confirmation runs."""
    summaries = summarise(board, confirm_board)
    if not summaries:
        return None
    parts = [_note(f"The top configurations of each task trained again with new seeds (python -m runner "
                   f"confirm). Statistics are over the new runs only: the original run was chosen for its value. "
                   f"CI: {CONFIDENCE:.0%} Student-t interval of the mean.")]
    for summary in summaries:
        header = ["rank", "by mean", "trial", "model", "single run", "runs", "failed"]
        fields = [(column, field) for column in summary.columns for field in ("mean", "sd", "low", "high")]
        header += [f"{column} {'CI ' if field in ('low', 'high') else ''}{field}" for column, field in fields]
        rows = [[record["rank"], record["rank_by_mean"], record["trial_id"], record["model"], record["single_run"],
                 record["runs"], record["failed"], *(record[f"{column}_{field}"] for column, field in fields)]
                for record in summary.table.to_dict("records")]
        parts += [f"<h3>{escape(summary.task)}: {escape(summary.metric)} ({escape(summary.mode)})</h3>",
                  _table(header, rows), _note(summary.verdict())]
    return "\n".join(parts)


def _trial_images(trial_dir: Any) -> str:
    result = _trial_result(trial_dir)
    if result is None:
        return _note(f"trial folder {trial_dir} not readable here: no plots")
    names = result.get("plots") or []
    notes = [_note(f"plotting failed in this trial: {result['plot_error']}")] if result.get("plot_error") else []
    if not names:
        notes.append(_note("this trial has no plots (plots: false)"))
    images = [_img(data, name) for name in names
              if (data := storage.read_bytes(storage.join(str(trial_dir), name))) is not None]
    return "\n".join([*notes, *images])


def _by_task(board: pd.DataFrame) -> Iterable[tuple[str, str, pd.DataFrame]]:
    """(task, monitor, finished rows) per task with at least two finished trials."""
    finished = board[board["objective"].notna()] if len(board) else board
    for task, rows in finished.groupby("task", sort=True):
        if len(rows) >= 2:
            yield str(task), str(rows["optimised_by"].iloc[0]), rows


_TOO_FEW = "needs at least two finished trials of a task with differing hyper-parameters"


def _scatter_section(board: pd.DataFrame) -> Section:
    parts = []
    for task, monitor, rows in _by_task(board):
        varying = _varying(rows)
        if not varying:
            continue
        columns = min(3, len(varying))
        figure = new_figure(4 * columns, 3.2 * -(-len(varying) // columns))
        grid = np.atleast_1d(figure.subplots(-(-len(varying) // columns), columns, squeeze=False)).ravel()
        for axes, column in zip(grid, varying, strict=False):
            _metric_against(axes, rows, column, monitor)
        for axes in grid[len(varying):]:
            axes.axis("off")
        parts.append(f"<h3>{escape(task)}</h3>{_png(figure)}")
    return "\n".join(parts) or Omitted(_TOO_FEW)


def _metric_against(axes, rows: pd.DataFrame, column: str, monitor: str) -> None:
    present = rows[rows[column].notna()]
    numbers = numeric_values(present[column])
    colors = ["C1" if status == "stopped" else "C0" for status in present["status"]]
    if numbers is not None:
        axes.scatter(numbers, present["objective"], c=colors, s=25)
        positive = numbers[numbers > 0]
        if len(positive) == len(numbers) and positive.max() / positive.min() >= 100:
            axes.set_xscale("log")
    else:
        labels = sorted(present[column].astype(str).unique())
        x = [labels.index(str(v)) + np.random.default_rng(len(labels)).uniform(-0.1, 0.1) for v in present[column]]
        axes.scatter(x, present["objective"], c=colors, s=25)
        axes.set_xticks(range(len(labels)), [label[:14] for label in labels], rotation=20, fontsize="small")
    axes.set(xlabel=column[3:], ylabel=monitor)
    axes.grid(alpha=0.3)
    axes.set_title("blue: completed, orange: stopped", fontsize="x-small")


def _parallel_section(board: pd.DataFrame) -> Section:
    parts = []
    for task, monitor, rows in _by_task(board):
        varying = _varying(rows)
        if varying:
            parts.append(f"<h3>{escape(task)}</h3>{_png(_parallel_coordinates(rows, varying, monitor))}")
    return "\n".join(parts) or Omitted(_TOO_FEW)


def _parallel_coordinates(rows: pd.DataFrame, columns: Sequence[str], monitor: str):
    """One vertical axis per hyper-parameter plus the metric, each scaled to [0, 1] (categories spread evenly,
    log scale for ranges over two decades); one line per trial, coloured by the metric."""
    from matplotlib import colormaps

    axes_names = [*columns, "objective"]
    scaled, ticks = [], []
    for column in axes_names:
        values, labels = _unit_scale(rows[column])
        scaled.append(values)
        ticks.append(labels)
    data = np.array(scaled).T
    figure = new_figure(max(6.0, 1.6 * len(axes_names)), 4)
    axes = figure.subplots()
    objective = rows["objective"].to_numpy(float)
    span = np.ptp(objective) or 1.0
    cmap = colormaps["viridis"]
    for line, value in zip(data, objective, strict=True):
        axes.plot(range(len(axes_names)), line, color=cmap((value - objective.min()) / span), alpha=0.8)
    for position, labels in enumerate(ticks):
        axes.axvline(position, color="grey", linewidth=0.8)
        for y, text in labels:
            axes.text(position + 0.03, y, text, fontsize="x-small", va="center")
    axes.set_xticks(range(len(axes_names)), [c.removeprefix("hp_") if c != "objective" else monitor
                                             for c in axes_names])
    axes.set_yticks([])
    axes.set_ylim(-0.05, 1.05)
    axes.set_title("one line per finished trial; colour: validation metric (yellow = high)", fontsize="small")
    return figure


def _unit_scale(values: pd.Series) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Values mapped to [0, 1] and the (position, label) ticks to print on the axis; missing values at -0.05
    would be confusing, so they sit at 0 under a 'missing' tick."""
    numbers = numeric_values(values.dropna())
    if numbers is not None and len(numbers) == len(values):
        x = numbers.to_numpy(float)
        log = (x > 0).all() and x.max() / x.min() >= 100
        x = np.log10(x) if log else x
        low, high = x.min(), x.max()
        unit = (x - low) / (high - low) if high > low else np.full_like(x, 0.5)
        shown = (10 ** low, 10 ** high) if log else (low, high)
        return unit, [(0.0, f"{shown[0]:.3g}"), (1.0, f"{shown[1]:.3g}")]
    labels = sorted(values.fillna("missing").astype(str).unique())
    step = 1 / max(len(labels) - 1, 1)
    positions = {label: index * step for index, label in enumerate(labels)}
    unit = np.array([positions[str(v)] for v in values.fillna("missing")], dtype=float)
    return unit, [(positions[label], label[:16]) for label in labels]


def _importance_section(board: pd.DataFrame, spec) -> Section:
    try:
        importances = parameter_importances(board, spec)
    except (ValueError, RuntimeError) as error:
        return Omitted(f"not computed: {error}")
    if not importances:
        return Omitted("not computed: no searched parameter varies across the finished trials")
    figure = new_figure(7, 0.45 * len(importances) + 1)
    axes = figure.subplots()
    names = list(importances)[::-1]
    axes.barh(names, [importances[n] for n in names], color="C0")
    axes.set(xlabel="importance (sums to 1)", xlim=(0, 1))
    where = "the sweep's search space" if spec is not None else "the values in the rows (search space file not found)"
    return _note("optuna.importance.get_param_importances (its default evaluator) for each trial's validation "
                 f"metric, from the finished trials "
                 f"(completed and stopped), with distributions from {where}. Only parameters every finished "
                 "trial has are assessed.") + _png(figure) + _table(("parameter", "importance"),
                                                                   list(importances.items()))


def _stopped_section(board: pd.DataFrame) -> Section:
    stopped = board[board["status"] == "stopped"] if len(board) else board
    if stopped.empty:
        return Omitted("no trial was stopped")
    varying = _varying(board)
    rows = [[r["trial_id"], r["task"], r["model"], r["epochs_run"], r["optimised_by"], r["objective"],
             *(r[c] for c in varying)] for _, r in stopped.iterrows()]
    return _note("ASHA ended these trials early: their metric is the last validation value before the stop.") + \
        _table(["trial", "task", "model", "epochs run", "metric", "last validation", *(c[3:] for c in varying)], rows)


def _failed_section(board: pd.DataFrame) -> Section:
    failed = board[board["status"] == "failed"] if len(board) else board
    if failed.empty:
        return Omitted("no trial failed")
    varying = _varying(board)
    rows = [[r["trial_id"], r["task"], r["model"], r["error"], *(r[c] for c in varying)] for _, r in failed.iterrows()]
    return _table(["trial", "task", "model", "error", *(c[3:] for c in varying)], rows, ["failed"] * len(rows))
