"""SuperGLUE metrics: the bridge from examples to values, an offline ``evaluate.Metric``, the score.

All values are in percent (0-100), like the SuperGLUE leaderboard and Lester et al. 2021.
What a task is scored with is part of its definition (``TaskSpec.metric``, a family from
``promptscale.data.tasks.scoring``, where the arithmetic lives and is re-exported from here);
this module holds what is the same for every task: ``score_examples`` (formatted examples and
model outputs -> metric values), ``SuperGlueMetric`` for ``evaluate`` users, and the task and
SuperGLUE scores.

Metrics follow T5 (Raffel et al. 2020), invalid outputs included: CB macro-F1 over all three
classes, MultiRC F1a over all answer options pooled (an invalid option counts against its gold
label) and EM per question, ReCoRD SQuAD-normalised EM/F1 with a max over gold answers, WSC by
T5's referent-matching rule, AX-b Matthews correlation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate

from promptscale.data.example import Example
from promptscale.data.formats import postprocess
from promptscale.data.tasks import SCORED_TASKS, TASKS, get_task
from promptscale.data.tasks.scoring import (  # re-exported: the arithmetic's public names
    accuracy,
    f1_macro,
    matthews_corr,
    multirc_f1a_em,
    record_em_f1,
    squad_em,
    squad_f1,
    squad_normalize,
    wsc_referent_match,
)

__all__ = [
    "SuperGlueMetric",
    "accuracy",
    "compute_task_metrics",
    "f1_macro",
    "matthews_corr",
    "multirc_f1a_em",
    "record_em_f1",
    "score_examples",
    "squad_em",
    "squad_f1",
    "squad_normalize",
    "superglue_score",
    "task_score",
    "wsc_referent_match",
]


def compute_task_metrics(task: str, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
    """Computes ``TaskSpec.metrics`` of ``task`` from ``evaluate``-shaped inputs, in percent.

    Args:
        task: Task name.
        predictions: Label tasks (WSC included: 0/1 "names the referent"): ints, -1 for an
            output that is no label. MultiRC: ``{"group", "prediction"}`` dicts. ReCoRD:
            ``{"group", "prediction_text"}`` dicts.
        references: Label tasks and MultiRC: ints. ReCoRD: ``{"group", "answers"}`` dicts.

    Returns:
        One value per name in ``TASKS[task].metrics``, in that order.
    """
    spec = get_task(task)
    out = spec.metric.compute(list(predictions), list(references))
    if tuple(out) != spec.metrics:  # a metric family that disagrees with its own names
        raise KeyError(f"{task}: computed metrics {sorted(out)}, the task reports {list(spec.metrics)}")
    return out


def score_examples(task: str, examples: Sequence[Example], predictions: Sequence[int | str]) -> dict[str, float]:
    """Scores model outputs on formatted examples: the bridge the training code uses.

    Args:
        task: Task name whose metrics are computed (e.g. "axb" for AX-b examples).
        examples: Evaluation examples (``formats.format_examples(..., train=False)`` or a
            prompt-design template).
        predictions: Per example either an int (rank classification, or already
            postprocessed generation: an index into ``choices``, -1 for no valid label; for
            T5-format WSC the 0/1 "names the referent" decision) or a str (generated text:
            passed through ``formats.postprocess`` here, so label text becomes an index,
            exactly or -1, and open-ended text is scored as text).

    Returns:
        ``TASKS[task].metrics`` values, in percent.

    Raises:
        ValueError: On a length mismatch, no examples, or unlabelled examples.
    """
    return compute_task_metrics(task, *decide(task, examples, predictions))


def decide(task: str, examples: Sequence[Example], predictions: Sequence[int | str]) -> tuple[list, list]:
    """The (predictions, references) a task's metric consumes, from raw model outputs (see
    ``score_examples``); also what the analysis' paired bootstrap resamples (``analysis.units``)."""
    spec = get_task(task)
    if len(predictions) != len(examples):
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
    if not examples:
        raise ValueError("no predictions to score")
    for ex in examples:
        if not spec.metric.labelled(ex):  # test data: its metrics would be silently meaningless
            raise ValueError(f"cannot score unlabelled {task} example (group {ex.group!r}): test data has no labels")
    decided = [postprocess(task, p, ex)[0] if isinstance(p, str) else int(p) for ex, p in zip(examples, predictions)]
    return spec.metric.prepare(examples, decided)


def task_score(task: str, metrics: Mapping[str, float]) -> float:
    """The task's single number: the mean of its metrics (CB, MultiRC, ReCoRD average two).

    Raises:
        KeyError: If a metric of the task is missing from ``metrics``.
    """
    names = get_task(task).metrics
    missing = [m for m in names if m not in metrics]
    if missing:
        raise KeyError(f"{task}: missing metrics {missing}; have {sorted(metrics)}")
    return sum(metrics[m] for m in names) / len(names)


def superglue_score(per_task: Mapping[str, Mapping[str, float]]) -> float:
    """SuperGLUE score in percent: mean task score over the scored tasks given.

    AX-b and AX-g (and any other task outside ``SCORED_TASKS``) are ignored, as on the
    leaderboard. The official score needs all eight tasks; a subset gives the mean of those.

    Raises:
        ValueError: If no scored task is given.
    """
    scores = [task_score(t, m) for t, m in per_task.items() if t in SCORED_TASKS]
    if not scores:
        raise ValueError(f"no scored task in {sorted(per_task)}; scored: {SCORED_TASKS}")
    return sum(scores) / len(scores)


# --------------------------------------------------------------------------- evaluate.Metric

_GROUP = datasets.Value("string")
# The ``evaluate`` input schema of each metric family's ``inputs`` shape.
_FEATURES = {
    "label": {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")},
    "grouped_label": {
        "predictions": {"group": _GROUP, "prediction": datasets.Value("int64")},
        "references": datasets.Value("int64"),
    },
    "text": {
        "predictions": {"group": _GROUP, "prediction_text": datasets.Value("string")},
        "references": {"group": _GROUP, "answers": datasets.Sequence(datasets.Value("string"))},
    },
}

_DESCRIPTION = "SuperGLUE metrics (Wang et al. 2019) as computed by T5, in percent."
_CITATION = """@inproceedings{wang2019superglue,
  title={SuperGLUE: A Stickier Benchmark for General-Purpose Language Understanding Systems},
  author={Wang, Alex and others}, booktitle={NeurIPS}, year={2019}}"""
_INPUTS = """Per task (config_name): label tasks take int predictions and references (-1: no
label); multirc predictions {"group", "prediction"} with int references; record predictions
{"group", "prediction_text"} with references {"group", "answers"}."""


class SuperGlueMetric(evaluate.Metric):
    """SuperGLUE metrics of one task as a local ``evaluate.Metric`` (no Hub script needed).

    ``SuperGlueMetric(config_name="cb").compute(predictions=[0, 2], references=[0, 1])``.
    Values are in percent. Defaults to ``keep_in_memory=True`` so nothing is written to the
    ``evaluate`` cache folder (pass ``keep_in_memory=False`` for multi-process use).

    Args:
        config_name: Task name (a ``TASKS`` key).
        **kwargs: Passed to ``evaluate.Metric``.

    Raises:
        KeyError: If ``config_name`` is not a task; the message lists the valid names.
    """

    def __init__(self, config_name: str | None = None, **kwargs: Any) -> None:
        if config_name not in TASKS:
            raise KeyError(f"unknown SuperGLUE task {config_name!r}; valid tasks: {', '.join(TASKS)}")
        kwargs.setdefault("keep_in_memory", True)
        super().__init__(config_name=config_name, **kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(_FEATURES[get_task(self.config_name).metric.inputs]),
            homepage="https://super.gluebenchmark.com/",
        )

    def _compute(self, predictions: Sequence[Any] = None, references: Sequence[Any] = None) -> dict[str, float]:
        return compute_task_metrics(self.config_name, predictions, references)
