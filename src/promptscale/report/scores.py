"""Result rows -> SuperGLUE scores: per run, per (method, model, setting) over seeds, per task.

Aggregation only; drawing lives in :mod:`promptscale.report.figures`, text tables in
:mod:`promptscale.report.tables`. The score of one run is the mean over SuperGLUE tasks of each
task's mean metric (CB, MultiRC and ReCoRD average their two metrics first; AX-b / AX-g are not
scored), in percent. Cells show the mean over seeds and the population std (``ddof=0``, so a
single seed has std 0). Every function reads the rows under one protocol choice
(:mod:`promptscale.report.selection`): ``paper`` (default), ``generate`` or ``rank``.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from promptscale.data.tasks import SCORED_TASKS
from promptscale.report.labels import method_key, setting_key, task_key
from promptscale.report.selection import (
    INVALID,
    method_protocol,
    protocol_rows,
    protocols_present,
    row_selected_by,
    task_score,
)

CellKey = tuple[Any, ...]
"""(method, model, total_params, setting): one point of a line (a line = method x setting)."""


@dataclass
class SeedRun:
    """One seed of one cell: its metric values per task and which protocols chose its step."""

    metrics: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    selected_by: set[str] = field(default_factory=set)


def _setting(row: dict) -> str:
    return str(row.get("setting") or "")


def _latest(rows: list[dict], by_setting: bool) -> dict[tuple, dict]:
    """One row per measurement (cell, seed, task, metric): the latest by timestamp, warning on reruns."""
    latest: dict[tuple, dict] = {}
    dup = 0
    # Stable sort: equal timestamps keep file order, so the later-appended row wins.
    for r in sorted(rows, key=lambda r: str(r.get("timestamp") or "")):
        key = (
            r["method"],
            r["model"],
            r["total_params"],
            _setting(r) if by_setting else "",
            r["seed"],
            r["task"],
            r["metric"],
        )
        dup += key in latest
        latest[key] = r
    if dup:
        warnings.warn(
            f"{dup} measurement(s) appear in more than one row (same method, model, seed, task, "
            "metric); keeping the latest. Filter by experiment if these are different runs.",
            stacklevel=4,
        )
    return latest


def seed_runs(rows: list[dict], by_setting: bool = False, protocol: str = "paper") -> dict[tuple, SeedRun]:
    """Metric values per (method, model, total_params, setting, seed), under a protocol choice.

    Uses status ``"ok"``, split ``"val"`` rows (:func:`~promptscale.report.selection.protocol_rows`).
    When one measurement appears more than once (a rerun), the latest row by timestamp wins.
    The setting (rows' ``setting`` column, Figure 3) is ``""`` unless ``by_setting``.
    """
    out: dict[tuple, SeedRun] = defaultdict(SeedRun)
    for (*cell, seed, task, metric), r in _latest(protocol_rows(rows, protocol), by_setting).items():
        run = out[(*cell, seed)]
        run.metrics[task][metric] = float(r["value"])
        run.selected_by.add(row_selected_by(r))
    return dict(out)


def seed_task_scores(
    rows: list[dict], by_setting: bool = False, protocol: str = "paper"
) -> dict[tuple, dict[str, float]]:
    """Task scores per (method, model, total_params, setting, seed): ``{cell_seed: {task: score}}``.

    A task's score is the mean of its metrics listed in its ``TaskSpec`` (all metrics present
    but ``invalid`` for an unknown task); a task lacking some of them warns and averages the rest.
    """
    return _task_scores(seed_runs(rows, by_setting, protocol))


def _task_scores(runs: dict[tuple, SeedRun]) -> dict[tuple, dict[str, float]]:
    out: dict[tuple, dict[str, float]] = {}
    for group, run in runs.items():
        scores = {}
        for task, vals in run.metrics.items():
            score, missing = task_score(task, vals)
            if score is None:
                continue  # only non-score metrics (e.g. loss, invalid) recorded for this task
            if missing:
                warnings.warn(
                    f"{group[0]}/{group[1]}{' ' + group[3] if group[3] else ''} seed {group[4]}: task {task} lacks "
                    f"metric(s) {missing}; its score averages the others only",
                    stacklevel=4,
                )
            scores[task] = score
        if scores:
            out[group] = scores
    return out


def _mean_std(xs: list[float]) -> tuple[float, float]:
    mean = sum(xs) / len(xs)
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))  # ddof=0


def _record(cell: CellKey, xs: list[float], **more: Any) -> dict:
    """One table row: the cell's columns, mean, std and count of ``xs`` (one value per seed), ``more``."""
    method, model, params, setting = cell
    mean, std = _mean_std(xs)
    return (
        dict(method=method, model=model, total_params=params, setting=setting, mean=mean, std=std, n_seeds=len(xs))
        | more
    )


def _seed_sort_key(seed: Any) -> tuple[int, str]:
    return (0, f"{seed:>20}") if isinstance(seed, int) else (1, str(seed))


def _cell_sort_key(r: dict) -> tuple:
    return (method_key(r["method"]), setting_key(r["setting"]), r["total_params"], str(r["model"]))


def _frame(records: list[dict], columns: list[str], by_setting: bool, extra_key=None) -> pd.DataFrame:
    """Sorted by method, setting, size (then ``extra_key``); ``setting`` column only ``by_setting``."""
    records.sort(key=lambda r: (*_cell_sort_key(r), *(extra_key(r) if extra_key else ())))
    cols = [c for c in columns if c != "setting" or by_setting]
    return pd.DataFrame.from_records(records, columns=cols)


def _common_tasks(scored: dict[tuple, dict[str, float]]) -> tuple[list[str], bool]:
    """The scored tasks every run has, and whether some runs had more (with a warning).

    Raises:
        ValueError: No task is common to all runs.
    """
    common = set.intersection(*(set(sc) for sc in scored.values()))
    if not common:
        raise ValueError(
            "no SuperGLUE task is common to all (method, model, seed) runs; filter the rows "
            "(e.g. --experiment). Tasks per run: "
            + "; ".join(f"{g[0]}/{g[1]}/seed {g[4]}: {','.join(sorted(sc))}" for g, sc in scored.items())
        )
    tasks = sorted(common, key=task_key)
    extra = {f"{g[0]}/{g[1]}": sorted(set(sc) - common, key=task_key) for g, sc in scored.items() if set(sc) - common}
    if extra:
        warnings.warn(
            f"runs cover different SuperGLUE tasks; scoring every run over the {len(tasks)} "
            f"task(s) common to all ({', '.join(tasks)}). Left out: "
            + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(extra.items())),
            stacklevel=3,
        )
    return tasks, bool(extra)


SCORE_COLUMNS = ["method", "model", "total_params", "setting", "protocol", "selected_by"]
SCORE_COLUMNS += ["mean", "std", "n_seeds", "seeds", "tasks"]
SEED_COLUMNS = ["method", "model", "total_params", "setting", "protocol", "seed", "score"]


def families(rows: list[dict]) -> dict[tuple[str, int], str]:
    """The model family of each (model, total_params) in the rows; empty unless there are several.

    Rows name their model's family (``family``: T5 1.1 LM-adapted, Flan-T5, T5, mT5, ...); rows
    written before that belong to an unnamed family ``""``. One family needs no column.
    """
    names = {(str(r["model"]), int(r["total_params"])): str(r.get("family") or "") for r in rows}
    return names if len(set(names.values())) > 1 else {}


def _with_family(df: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """Adds a ``family`` column after ``model`` where the rows hold several families (else leaves ``df``)."""
    names = families(rows)
    if names and not df.empty:
        keys = zip(df["model"].astype(str), df["total_params"].astype(int))
        df.insert(df.columns.get_loc("model") + 1, "family", [names.get(k, "") for k in keys])
    return df


def _seed_scores(rows: list[dict], by_setting: bool, protocol: str):
    """Per cell, each seed's SuperGLUE score over the tasks common to all runs; with the runs and tasks."""
    runs = seed_runs(rows, by_setting, protocol)
    scored = {g: {t: s for t, s in sc.items() if t in SCORED_TASKS} for g, sc in _task_scores(runs).items()}
    scored = {g: sc for g, sc in scored.items() if sc}
    if not scored:
        raise ValueError(
            f"no status 'ok', split 'val' rows of a scored SuperGLUE task ({', '.join(SCORED_TASKS)}) to plot"
        )
    tasks, restricted = _common_tasks(scored)
    cells: dict[CellKey, list[tuple[Any, float]]] = defaultdict(list)
    for (*cell, seed), sc in scored.items():
        cells[tuple(cell)].append((seed, sum(sc[t] for t in tasks) / len(tasks)))
    for seed_scores in cells.values():
        seed_scores.sort(key=lambda x: _seed_sort_key(x[0]))
    return cells, runs, tasks, restricted


def seed_score_table(rows: list[dict], by_setting: bool = False, protocol: str = "paper") -> pd.DataFrame:
    """Each seed's SuperGLUE score per (method, model, total_params): the points :func:`score_table` averages.

    Columns ``method, model, [family,] total_params, [setting,] protocol, seed, score``; ``attrs``
    as :func:`score_table`'s. Scaling fits (``promptscale.analysis.scaling``) are fitted to these.
    """
    cells, _, tasks, restricted = _seed_scores(rows, by_setting, protocol)
    records = [
        dict(zip(("method", "model", "total_params", "setting"), cell))
        | {"protocol": method_protocol(cell[0], protocol), "seed": seed, "score": score}
        for cell, seed_scores in cells.items()
        for seed, score in seed_scores
    ]
    df = _frame(records, SEED_COLUMNS, by_setting, extra_key=lambda r: _seed_sort_key(r["seed"]))
    df.attrs.update(tasks=tasks, restricted=restricted, protocol=protocol)
    return _with_family(df, rows)


def score_table(rows: list[dict], by_setting: bool = False, protocol: str = "paper") -> pd.DataFrame:
    """SuperGLUE score per (method, model, total_params): mean and std over seeds.

    Each seed's score is the mean over the scored SuperGLUE tasks (AX-b / AX-g excluded) of
    the task scores. If runs cover different task sets, every run is scored over the tasks
    common to all runs (with a warning), so the lines are comparable.

    Args:
        rows: Result rows (``ResultsStore.rows()``); only status ``"ok"``, split ``"val"``
            rows under the protocol choice are used.
        by_setting: Also group by the rows' ``setting`` (Figure 3: one line per setting) and
            add a ``setting`` column after ``total_params``.
        protocol: ``"paper"``, ``"generate"`` or ``"rank"`` (see :mod:`promptscale.report.selection`).

    Returns:
        Columns ``method, model, [family,] total_params, [setting,] protocol, selected_by, mean,
        std, n_seeds, seeds, tasks`` (``family``: only where rows name model families;
        ``protocol``: the rows' protocol; ``selected_by``: the protocol(s) that chose the best dev
        step, comma-joined; ``tasks`` comma-joined), sorted by method, setting, size. ``attrs``:
        ``tasks`` (the scored tasks), ``restricted`` (whether runs had more tasks than were
        scored), ``protocol`` (the choice).

    Raises:
        ValueError: No usable rows, none under the protocol, or no scored task common to all runs.
    """
    cells, runs, tasks, restricted = _seed_scores(rows, by_setting, protocol)
    records = []
    for cell, seed_scores in cells.items():
        chosen_by = set().union(*(runs[(*cell, s)].selected_by for s, _ in seed_scores))
        records.append(
            _record(
                cell,
                [s for _, s in seed_scores],
                protocol=method_protocol(cell[0], protocol),
                selected_by=",".join(sorted(chosen_by)),
                seeds=",".join(str(s) for s, _ in seed_scores),
                tasks=",".join(tasks),
            )
        )
    df = _frame(records, SCORE_COLUMNS, by_setting)
    df.attrs.update(tasks=tasks, restricted=restricted, protocol=protocol)
    return _with_family(df, rows)


def task_table(rows: list[dict], by_setting: bool = False, protocol: str = "paper") -> pd.DataFrame:
    """Task score per (method, model, total_params, task): mean and std over seeds.

    Includes every task present (also AX-b / AX-g and tasks outside the score).

    Args:
        rows: Result rows.
        by_setting: Also group by the rows' ``setting`` (adds a ``setting`` column).
        protocol: The protocol choice (see :func:`score_table`).

    Returns:
        Columns ``method, model, total_params, [setting,] protocol, task, mean, std, n_seeds,
        invalid`` (``invalid``: mean invalid-output % over seeds, NaN where the rows carry none,
        as rank rows never do), sorted by method, setting, size and task order.
    """
    runs = seed_runs(rows, by_setting, protocol)
    cells: dict[tuple, list[float]] = defaultdict(list)
    invalid: dict[tuple, list[float]] = defaultdict(list)
    for (*cell, seed), sc in _task_scores(runs).items():
        for task, s in sc.items():
            cells[(*cell, task)].append(s)
            rate = runs[(*cell, seed)].metrics[task].get(INVALID)
            if rate is not None:
                invalid[(*cell, task)].append(rate)
    records = []
    for (*cell, task), xs in cells.items():
        bad = invalid.get((*cell, task))
        invalid_mean = sum(bad) / len(bad) if bad else math.nan
        records.append(
            _record(tuple(cell), xs, protocol=method_protocol(cell[0], protocol), task=task, invalid=invalid_mean)
        )
    columns = ["method", "model", "total_params", "setting", "protocol", "task", "mean", "std", "n_seeds", "invalid"]
    return _frame(records, columns, by_setting, extra_key=lambda r: task_key(r["task"]))


def invalid_table(rows: list[dict], by_setting: bool = False, tasks: list[str] | None = None) -> pd.DataFrame:
    """Invalid-output % per (method, model, total_params): mean and std over seeds.

    The share of generated outputs that T5's postprocessor maps to no valid label, from the
    ``generate`` rows (every method's, prompt design's too): per seed the mean over the scored
    tasks it has (or ``tasks``). The measured cause of Lester et al. 2021 Fig. 3(c)'s collapse.

    Returns:
        Columns ``method, model, total_params, [setting,] mean, std, n_seeds, tasks``.

    Raises:
        ValueError: No generate rows (the message names the protocols present), or none with
            an ``invalid`` metric.
    """
    present = protocols_present(rows)
    if "generate" not in present:
        raise ValueError(
            "no invalid-output rates: they come with generate rows, and the rows have protocol(s): "
            f"{', '.join(present) or 'none'} (runs evaluated before protocols were recorded have none)"
        )
    wanted = set(tasks or SCORED_TASKS)
    cells: dict[CellKey, list[dict[str, float]]] = defaultdict(list)
    for (*cell, _seed), run in seed_runs(rows, by_setting, "generate").items():
        rates = {t: m[INVALID] for t, m in run.metrics.items() if INVALID in m and t in wanted}
        if rates:
            cells[tuple(cell)].append(rates)
    if not cells:
        raise ValueError("no invalid-output rows (metric 'invalid') of a scored task among the generate rows")
    records = [
        _record(
            cell, [sum(r.values()) / len(r) for r in seeds], tasks=",".join(sorted(set().union(*seeds), key=task_key))
        )
        for cell, seeds in cells.items()
    ]
    columns = ["method", "model", "total_params", "setting", "mean", "std", "n_seeds", "tasks"]
    return _with_family(_frame(records, columns, by_setting), rows)


def score_description(table: pd.DataFrame) -> str:
    """Says which tasks a score table averages, e.g. ``"over 2 of 8 tasks (cb, rte)"``."""
    tasks = table.attrs.get("tasks") or sorted(set(",".join(table["tasks"]).split(",")), key=task_key)
    n = len(SCORED_TASKS)
    if set(tasks) == set(SCORED_TASKS):
        text = f"over all {n} tasks"
    else:
        text = f"over {len(tasks)} of {n} tasks ({', '.join(tasks)})"
    if table.attrs.get("restricted"):
        text += ", the tasks common to all runs"
    return text


def table_protocols(rows: list[dict], protocol: str = "paper") -> tuple[str, ...]:
    """Protocols a per-task table shows: every concrete one the rows have, else the choice alone.

    So a table drawn next to a ``paper`` figure also shows each run's ``rank`` rows, adjacent.
    """
    present = protocols_present(rows)
    return tuple(present) if len(present) > 1 else (protocol,)
