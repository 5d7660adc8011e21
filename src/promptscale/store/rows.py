"""Result rows of one job: what the results store, the figures and W&B read.

One row per task x metric of each task's best dev evaluation (or, for a diverged run, one
``status: failed`` row per task). The job-level fields are built once, so a finished and a
failed row of the same job can never disagree on them.
"""

from __future__ import annotations

from omegaconf import DictConfig

from promptscale.data.tasks import get_task
from promptscale.grouping import setting
from promptscale.store.provenance import git_sha, now_iso

PER_ROW = ("task", "task_version", "metric", "value", "step")


def method_name(cfg: DictConfig) -> str:
    """Snake-case method name: the module of the method's class (``methods/<name>.py``)."""
    return cfg.method._target_.rsplit(".", 2)[-2]


def job_fields(
    cfg: DictConfig, counts: dict[str, int], chash: str, run_name: str, wandb_id: str | None, status: str
) -> dict:
    """Fields every row of the job shares; ``total_params`` is the backbone (the figure's x)."""
    return {
        "run_id": run_name,
        "experiment": cfg.experiment_name,
        "method": method_name(cfg),
        "model": cfg.model.name,
        "size": cfg.model.size,
        "total_params": counts["model_params"],
        "method_params": counts["total_params"] - counts["model_params"],
        "trainable_params": counts["trainable_params"],
        "split": cfg.data.eval_split,
        "seed": cfg.seed,
        "config_hash": chash,
        "git_sha": git_sha(),
        "timestamp": now_iso(),
        "wandb_run_id": wandb_id,
        "status": status,
        "setting": setting(cfg),  # the figure.group_by values, e.g. "prompt_length=20"
    }


def result_rows(
    cfg: DictConfig, method, counts: dict[str, int], chash: str, run_name: str, wandb_id: str | None
) -> list[dict]:
    """One row per task x metric of the best dev evaluation of each task."""
    common = job_fields(cfg, counts, chash, run_name, wandb_id, "ok")
    extra = method.result_fields()  # e.g. prompt design's template and shots
    clash = set(extra) & {*common, *PER_ROW}
    if clash:
        raise ValueError(f"{type(method).__name__}.result_fields() would overwrite row fields {sorted(clash)}")
    common.update(extra)
    return [
        {
            **common,
            "task": task,
            "task_version": get_task(task).version,
            "metric": metric,
            "value": value,
            "step": best.step,
            "examples": best.examples,
        }  # examples: dev examples scored, each once
        for task, best in sorted(method.best.items())
        for metric, value in best.metrics.items()
    ]


def failure_rows(
    cfg: DictConfig, counts: dict[str, int], chash: str, run_name: str, wandb_id: str | None, error
) -> list[dict]:
    """One ``status: failed`` row per task, with the error; figures and the skip read only "ok"."""
    common = job_fields(cfg, counts, chash, run_name, wandb_id, "failed")
    return [
        {
            **common,
            "task": task,
            "task_version": get_task(task).version,
            "metric": "error",
            "value": None,
            "step": error.step,
            "error": str(error),
        }
        for task in cfg.data.tasks
    ]
