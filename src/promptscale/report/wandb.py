"""W&B dashboards: per-job summaries, a sweep summary run, and result rows pulled back from W&B.

Three pieces, all offline-capable (``logger.mode``) and none able to fail a training run:

- :func:`log_job_summary` (called by ``train.run`` at the end of every job) writes the best dev
  metrics of the job into its run summary, so the W&B UI can draw score vs parameters from
  finished runs alone. Every job run carries:

  - ``group`` = ``experiment_name``; tags = method, model name, task names;
  - config: the resolved job config plus ``params`` (``params.model_params`` is the frozen
    backbone, the figure's x axis; ``params.trainable_params``; ``params.total_params``);
  - summary: under the protocol that selected the best dev step (``selected_by``):
    ``best/<task>/<metric>``, ``best/<task>/score``, ``best/<task>/step``, ``best/score`` (mean
    task score over the job's scored tasks); the same under the other protocol as
    ``best_<protocol>/...`` (e.g. ``best_rank/score``); ``best/<task>/invalid`` (the % of
    generated outputs that were no valid label, whichever protocol selected); and the flat
    keys ``method``, ``model``, ``size``, ``family``, ``model_params``, ``seed``, ``experiment``,
    ``setting``, ``config_hash``, ``selected_by``.

  In the UI: a scatter/line panel with x = ``summary.model_params`` (log scale), y =
  ``summary.best/score``, grouped by ``summary.method`` (and ``summary.setting`` for Figure 3).

- :func:`log_sweep_summary` (called by the sweep-end hook) starts one extra run
  (``job_type="summary"``) logging a ``wandb.Table`` of every result row (method, setting,
  model, size, parameters, protocol, task, metric, seed, value), the score table of each
  protocol, and one score-vs-parameters line chart per method (a line per setting) under the
  paper's protocol for that method; and what the hook drew: each figure as an image
  (``figures/<name>``, e.g. ``figures/gap``), the gap's CI table (``gap``: per size the
  difference and its interval; ``gap_tasks``: per task) and ``gap_closed_at``.

Reading runs back into rows (``promptscale-figure --source wandb``) is :mod:`promptscale.report.wandb_rows`.

Imports scores (lazily: the training path needs no pandas), never figures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from promptscale.data.tasks import TASKS
from promptscale.report.labels import method_label
from promptscale.report.selection import (
    INVALID,
    method_protocol,
    protocols_present,
    row_protocol,
    row_selected_by,
    task_score,
    usable,
)

log = logging.getLogger(__name__)
PREFIX = "best"
TABLE_COLUMNS = ("method", "setting", "model", "size", "parameters", "protocol", "task", "metric", "seed", "value")


# ---------------------------------------------------------------------- per job


def _prefix(protocol: str, metric: str, selected: str) -> str:
    """Summary key prefix of a row: ``best`` for the selecting protocol (and invalid), else ``best_<p>``."""
    return PREFIX if protocol == selected or metric == INVALID else f"{PREFIX}_{protocol}"


def job_summary(rows: list[dict]) -> dict[str, Any]:
    """The summary keys of one job's run, from its result rows (see the module docstring)."""
    if not rows:
        return {}
    first = rows[0]
    selected = row_selected_by(first)
    out: dict[str, Any] = {
        "method": first["method"],
        "model": first["model"],
        "size": first.get("size"),
        "family": first.get("family") or "",
        "model_params": first["total_params"],
        "seed": first["seed"],
        "experiment": first["experiment"],
        "setting": first.get("setting") or "",
        "config_hash": first["config_hash"],
        "selected_by": selected,
    }
    per_task: dict[str, dict[str, dict[str, float]]] = {}
    for r in rows:
        prefix = _prefix(row_protocol(r), r["metric"], selected)
        out[f"{prefix}/{r['task']}/{r['metric']}"] = r["value"]
        if r.get("step") is not None:
            out[f"{prefix}/{r['task']}/step"] = r["step"]
        per_task.setdefault(prefix, {}).setdefault(r["task"], {})[r["metric"]] = float(r["value"])
    for prefix, tasks in per_task.items():
        scores = []
        for task, metrics in tasks.items():
            score, missing = task_score(task, metrics)
            if score is None or missing:
                continue
            out[f"{prefix}/{task}/score"] = score
            if task in TASKS and TASKS[task].in_score:
                scores.append(score)
        if scores:
            out[f"{prefix}/score"] = sum(scores) / len(scores)
    return out


def log_job_summary(logger, rows: list[dict]) -> None:
    """Writes :func:`job_summary` into the job's W&B run; a W&B problem is only logged.

    Other trackers (``logger=csv``, ``logger=tensorboard``) have no run summary: nothing to do.
    """
    from promptscale.tracking import is_wandb

    if not is_wandb(logger) or not rows:
        return
    try:
        logger.experiment.summary.update(job_summary(rows))
    except Exception as err:  # noqa: BLE001 - W&B must never fail a run
        log.warning("W&B summary not written (%s: %s)", type(err).__name__, err)


# ---------------------------------------------------------------------- sweep summary


def _results_table(ok: list[dict]):
    import wandb

    return wandb.Table(
        columns=list(TABLE_COLUMNS),
        data=[
            [
                r["method"],
                r.get("setting") or "",
                r["model"],
                r.get("size") or r["model"],
                int(r["total_params"]),
                row_protocol(r),
                r["task"],
                r["metric"],
                r["seed"],
                float(r["value"]),
            ]
            for r in ok
        ],
    )


def drawn_files(files: Mapping[str, Any]) -> dict[str, Any]:
    """What the summary run logs of the drawn figures: ``figures/<stem>`` images of every PNG, the gap's
    CI tables (``gap``, ``gap_tasks``) and ``gap_closed_at`` (per family, ``"; "``-joined)."""
    from pathlib import Path

    import pandas as pd
    import wandb

    out: dict[str, Any] = {f"figures/{p.stem}": wandb.Image(str(p)) for p in map(Path, files.values())
                           if p.suffix == ".png" and p.is_file()}  # fmt: skip
    tables = {
        n: pd.read_csv(files[f"{n}.csv"], keep_default_na=False) for n in ("gap", "gap_tasks") if f"{n}.csv" in files
    }
    out |= {name: wandb.Table(dataframe=frame) for name, frame in tables.items()}
    if "gap" in tables:
        closed = tables["gap"].drop_duplicates("family")
        out["gap_closed_at"] = "; ".join(f"{f}: {c}" if len(closed) > 1 else str(c)
                                         for f, c in zip(closed["family"], closed["closed_at"]))  # fmt: skip
    return out


def dashboard(rows: list[dict], files: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the sweep summary run logs: ``{key: wandb.Table | wandb CustomChart | wandb.Image | str}``.

    Keys: ``results`` (every ok dev row), ``scores`` (the score table of each protocol the rows
    have, one row per method x setting x model x protocol) and ``charts/<method>`` (SuperGLUE
    score vs frozen-model parameters, one line per setting, mean over seeds) under the paper's
    protocol for the method, or the one the rows have (old stores: rank); the title says which.
    With ``files`` (the hook's drawn figures: name -> path), :func:`drawn_files`' keys too.
    """
    import pandas as pd
    import wandb

    from promptscale.report.scores import score_table

    ok = usable(rows)
    out: dict[str, Any] = {"results": _results_table(ok), **drawn_files(files or {})}
    tables = {}
    for protocol in protocols_present(ok):
        try:
            tables[protocol] = score_table(ok, by_setting=True, protocol=protocol)
        except ValueError:  # no scored SuperGLUE task (e.g. only AX-b) under it
            continue
    if not tables:
        return out
    scores = pd.concat(tables.values(), ignore_index=True)
    out["scores"] = wandb.Table(dataframe=scores.drop(columns=["tasks"]).astype({"seeds": str}))
    for method in dict.fromkeys(scores["method"]):
        mine = scores[scores["method"] == method]
        protocol = method_protocol(method, "paper")
        t = mine[mine["protocol"] == protocol] if protocol in set(mine["protocol"]) else mine
        protocol = t["protocol"].iloc[0]
        t = t[t["protocol"] == protocol]
        xs, ys, keys = [], [], []
        for key, line in t.groupby("setting", sort=False):
            line = line.sort_values("total_params")
            xs.append([int(x) for x in line["total_params"]])
            ys.append([float(y) for y in line["mean"]])
            keys.append(key or method_label(method))
        out[f"charts/{method}"] = wandb.plot.line_series(
            xs=xs,
            ys=ys,
            keys=keys,
            xname="parameters",
            title=f"{method_label(method)}: SuperGLUE score vs. model parameters ({protocol} protocol)",
        )
    return out


def log_sweep_summary(
    rows: list[dict], tracker, *, name: str, group: str | None, save_dir: str, files: Mapping[str, Any] | None = None
) -> str | None:
    """Starts a ``job_type="summary"`` run that logs :func:`dashboard`; returns its id.

    Args:
        rows: The sweep's result rows.
        tracker: A ``promptscale.tracking.WandbSettings`` (project, entity, mode, tags).
        name: Run name, e.g. ``"demo-summary"``.
        group: W&B group (the experiment name, as the jobs').
        save_dir: Folder for the local (offline) run files.
        files: The figures the hook drew (file name -> path): images and the gap's CI table.

    Returns:
        The run id, or ``None`` when W&B is disabled.
    """
    if tracker is None or tracker.mode == "disabled":
        return None
    import os

    import wandb

    os.makedirs(save_dir, exist_ok=True)
    payload = dashboard(rows, files)
    run = wandb.init(
        project=tracker.project,
        entity=tracker.entity,
        mode=tracker.mode,
        name=name,
        group=group,
        job_type="summary",
        tags=sorted({*tracker.tags, "summary"}),
        dir=save_dir,
        settings=wandb.Settings(init_timeout=60, silent=True),
        reinit="finish_previous",
    )
    try:
        run.log(payload)
        return run.id
    finally:
        run.finish()
