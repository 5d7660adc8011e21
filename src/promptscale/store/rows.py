"""Result rows of one job: what the results store, the figures and W&B read.

One row per task x protocol x metric of each task's best dev evaluation (or, for a diverged
run, one ``status: failed`` row per task). Every evaluation computes both protocols
(``evaluation.py``): ``protocol`` says which one a row's value is under, ``selected_by`` which
one chose the best step; the ``generate`` rows include ``metric: invalid``, the share of
generated outputs that were no valid answer. The job-level fields are built once, so a finished
and a failed row of the same job can never disagree on them. Rows written before protocols
existed have neither field: they read as ``rank`` (``row_protocol``).
"""

from __future__ import annotations

from typing import Any

from promptscale.data.tasks import get_task
from promptscale.families import model_family
from promptscale.grouping import setting
from promptscale.store.provenance import git_sha, now_iso

PER_ROW = ("task", "task_version", "protocol", "metric", "value", "step")
PROTOCOLS = ("generate", "rank")  # greedy decoding + T5's postprocessing (the paper's); rank classification
LEGACY_PROTOCOL = "rank"  # what every evaluation was before rows carried a protocol
INVALID = "invalid"  # metric of the invalid-output percentage (generate rows); never part of a task score


def row_protocol(row: dict[str, Any]) -> str:
    """The protocol of a row's value; rows from before protocols existed were ranked."""
    return str(row.get("protocol") or LEGACY_PROTOCOL)


def job_fields(
    spec, counts: dict[str, int], run_name: str, wandb_id: str | None, status: str, machine: dict | None = None
) -> dict:
    """Fields every row of the job shares; ``total_params`` is the backbone (the figure's x).

    Args:
        spec: The ``job.JobSpec``.
        counts: ``TextToTextModule.parameter_counts()``.
        run_name: The job's run id.
        wandb_id: Its W&B run id, if any.
        status: ``ok`` or ``failed``.
        machine: ``provenance.provenance(...)``: library versions, accelerator, precision.
    """
    cfg = spec.cfg
    return {
        "run_id": run_name,
        "experiment": cfg.experiment_name,
        "method": spec.method_name,
        "model": cfg.model.name,
        "size": cfg.model.size,
        "family": model_family(cfg.model),  # t5_1_1_lm_adapt, flan_t5, t5, mt5, ...: one curve per family
        "total_params": counts["model_params"],
        "method_params": counts["total_params"] - counts["model_params"],
        "trainable_params": counts["trainable_params"],
        "split": cfg.data.eval_split,
        "seed": cfg.seed,
        "config_hash": spec.config_hash,
        "git_sha": git_sha(),
        "timestamp": now_iso(),
        "wandb_run_id": wandb_id,
        "status": status,
        "setting": setting(cfg),  # the figure.group_by values, e.g. "prompt_length=20"
        "selected_by": spec.primary_protocol,
        "run_dir": str(cfg.paths.output_dir),
        **(machine or {}),
    }


def result_rows(
    spec, method, counts: dict[str, int], run_name: str, wandb_id: str | None, machine: dict | None = None
) -> list[dict]:
    """One row per task x protocol x metric of the best dev evaluation of each task."""
    common = job_fields(spec, counts, run_name, wandb_id, "ok", machine)
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
            "protocol": protocol,
            "metric": metric,
            "value": value,
            "step": best.step,
            "examples": best.examples,  # dev examples scored, each once
        }
        for task, best in sorted(method.best.items())
        for protocol, metrics in sorted(best.metrics.items())
        for metric, value in metrics.items()
    ]


def failure_rows(
    spec, counts: dict[str, int], run_name: str, wandb_id: str | None, error, machine: dict | None = None
) -> list[dict]:
    """One ``status: failed`` row per task, with the error; figures and the skip read only "ok"."""
    common = job_fields(spec, counts, run_name, wandb_id, "failed", machine)
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
        for task in spec.cfg.data.tasks
    ]
