"""The objective of a hyperparameter search: a job's primary dev score, from its result rows.

``promptscale-train`` returns this number from its Hydra task function, so Hydra's Optuna
sweeper (``hparams_search=prompt_tuning``, ``conf/hparams_search/``) can maximise it. Each trial
is an ordinary job: it is hashed, skipped when the results store already has its config (a
trial that repeats an earlier config, a relaunched search), and a skipped trial reports the
score of the stored rows, so the sampler sees the same value it would have seen had it trained.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict

from omegaconf import DictConfig

from promptscale.data.tasks import get_task
from promptscale.report.selection import row_selected_by, task_score
from promptscale.store.results import ResultsStore
from promptscale.store.rows import row_protocol

log = logging.getLogger(__name__)


def dev_score(rows: list[dict]) -> float:
    """Mean task score of the job's scored tasks under the protocol that selected its best step.

    A task's score is the mean of its metrics (CB, MultiRC and ReCoRD average two; ``invalid`` is
    a rate, never a score). SuperGLUE tasks count; a job of diagnostics only (AX-b, AX-g) scores
    those instead. ``nan`` for rows without a finished evaluation (Optuna marks the trial failed).
    """
    values: dict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        if row.get("status") == "ok" and row_protocol(row) == row_selected_by(row):
            values[row["task"]][row["metric"]] = float(row["value"])
    scores = {}
    for task, metrics in values.items():
        score, missing = task_score(task, metrics)
        if score is not None and not missing:
            scores[task] = score
    scored = [score for task, score in scores.items() if get_task(task).in_score] or list(scores.values())
    return sum(scored) / len(scored) if scored else math.nan


def stored_rows(results: str, config_hash: str) -> list[dict]:
    """The finished rows the results store holds for one config (of its latest run, should it have two)."""
    rows = ResultsStore(results).config_rows(config_hash)
    latest = rows[-1]["run_id"] if rows else None
    return [r for r in rows if r["run_id"] == latest]


def objective(cfg: DictConfig, rows: list[dict] | None) -> float:
    """The score a search trial reports: of the rows the job just wrote, or of the stored ones.

    Args:
        cfg: The job's config (what ``train.run`` got).
        rows: ``train.run``'s return value; ``None`` when the job was skipped.
    """
    if rows is None:
        from promptscale.job import JobSpec  # the training stack, only for a skipped trial

        spec = JobSpec.from_config(cfg)
        rows = stored_rows(spec.cfg.results, spec.config_hash)
        if not rows:  # a twin launch holds the config's claim and is still training it
            log.warning("config %s has no finished rows yet (a twin launch runs it): trial fails", spec.config_hash)
    score = dev_score(rows)
    log.info("primary dev score: %s", score)
    return score
