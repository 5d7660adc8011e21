"""Result rows pulled back from W&B: ``promptscale-figure --source wandb`` draws what the store draws.

:func:`fetch_rows` turns the finished job runs of a project (optionally one group = experiment)
into result rows, both protocols with ``protocol`` set, from the summary keys that
:func:`promptscale.report.wandb.job_summary` wrote (``best/...`` for the selecting protocol,
``best_<protocol>/...`` for the other); runs written before protocols existed read as rank.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from promptscale.data.tasks import TASKS, get_task
from promptscale.families import model_family
from promptscale.grouping import setting as setting_of
from promptscale.report.wandb import PREFIX
from promptscale.store.hashing import config_hash, hashable_config
from promptscale.store.rows import INVALID, PROTOCOLS


def _get(mapping: Any, *keys: str, default: Any = None) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return default
        mapping = mapping[key]
    return mapping


def _plain(value: Any) -> Any:
    """W&B API values as plain Python dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _unwrap(value: Any) -> Any:
    """A top-level config value as the run logged it (raw ``config.yaml`` wraps it: ``{"value": x}``)."""
    if isinstance(value, Mapping) and "value" in value and set(value) <= {"value", "desc"}:
        return value["value"]
    return value


def _key_protocol(prefix: str, metric: str, selected: str) -> str | None:
    """The protocol of a summary key's prefix (inverse of :func:`_prefix`); ``None``: not a result key."""
    if metric == INVALID:
        return "generate" if prefix == PREFIX else None
    if prefix == PREFIX:
        return selected
    other = prefix.removeprefix(f"{PREFIX}_")
    return other if prefix.startswith(f"{PREFIX}_") and other in PROTOCOLS else None


def _common_fields(run, config: dict, summary: dict) -> dict | None:
    """Fields every row of a run shares, or ``None`` when the run has no backbone size."""
    params = config.get("params") or {}
    target = _get(config, "method", "_target_") or ""
    method = summary.get("method") or (target.rsplit(".", 2)[-2] if "." in target else target)
    model_params = summary.get("model_params", params.get("model_params"))
    if model_params is None:
        return None
    try:
        chash = summary.get("config_hash") or config_hash(
            hashable_config({k: v for k, v in config.items() if k != "params"})
        )
    except TypeError:
        chash = None
    try:
        label = summary["setting"] if "setting" in summary else setting_of(config)
    except KeyError:
        label = ""
    return {
        "run_id": run.name,
        "experiment": config.get("experiment_name", getattr(run, "group", None)),
        "method": method,
        "model": _get(config, "model", "name"),
        "size": _get(config, "model", "size"),
        "family": summary.get("family") or model_family(config.get("model") or {}),  # as store rows read it
        "total_params": int(model_params),
        "method_params": int(params.get("total_params", model_params)) - int(model_params),
        "trainable_params": params.get("trainable_params"),
        "split": _get(config, "data", "eval_split", default="val"),
        "seed": config.get("seed"),
        "config_hash": chash,
        "git_sha": None,
        "timestamp": str(getattr(run, "created_at", "") or ""),
        "wandb_run_id": run.id,
        "status": "ok",
        "setting": label or "",
        "source": "wandb",
        # Runs logged before protocols were recorded ranked and selected by rank.
        "selected_by": summary.get("selected_by") or "rank",
    }


def run_rows(run) -> list[dict]:
    """Result rows of one ``wandb.apis.public.Run`` (its config and ``best*/`` summary keys).

    Both protocols come back, ``protocol`` set from the key prefix (``best/``: the run's
    ``selected_by``; ``best_<protocol>/``: that one; ``best/<task>/invalid``: generate). Returns
    no rows for runs that are not finished or have no ``best/`` metrics (failed jobs, summary runs).
    """
    if getattr(run, "state", "finished") != "finished" or getattr(run, "job_type", None) == "summary":
        return []
    config = {k: _unwrap(v) for k, v in _plain(dict(run.config)).items()}
    summary = _plain(dict(getattr(run.summary, "_json_dict", None) or run.summary))
    common = _common_fields(run, config, summary)
    if common is None:
        return []
    rows = []
    for key, value in summary.items():
        parts = key.split("/")
        if len(parts) != 3 or parts[2] in ("score", "step") or parts[1] not in TASKS:
            continue
        protocol = _key_protocol(parts[0], parts[2], common["selected_by"])
        if protocol is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        task, metric = parts[1], parts[2]
        rows.append(
            {
                **common,
                "protocol": protocol,
                "task": task,
                "task_version": get_task(task).version,
                "metric": metric,
                "value": float(value),
                "step": summary.get(f"{parts[0]}/{task}/step"),
            }
        )
    return sorted(rows, key=lambda r: (r["protocol"], r["task"], r["metric"]))


def fetch_rows(project: str, entity: str | None = None, group: str | None = None, api=None) -> list[dict]:
    """Result rows of the finished runs of a W&B project (optionally one group = experiment).

    Args:
        project: W&B project.
        entity: W&B entity (user or team); ``None`` for the API's default.
        group: Only runs of this group (jobs are grouped by ``experiment_name``).
        api: A ``wandb.Api`` (default: a new one; needs network and credentials).
    """
    if api is None:
        import wandb

        api = wandb.Api()
    path = f"{entity}/{project}" if entity else project
    filters = {"group": group} if group else None
    try:
        runs: Iterable = api.runs(path, filters=filters, lazy=False)  # config and summary in one query
    except TypeError:  # wandb < 0.21 has no lazy loading
        runs = api.runs(path, filters=filters)
    rows = []
    for run in runs:
        if group is not None and getattr(run, "group", group) != group:
            continue
        rows += run_rows(run)
    return rows
