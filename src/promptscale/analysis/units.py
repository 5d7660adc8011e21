"""Per-example predictions -> resampling units whose additive statistics give every task metric.

A paired bootstrap recomputes each task's metric thousands of times on resampled dev sets. Doing
that through :func:`promptscale.metrics.score_examples` would re-run T5's postprocessing and
SQuAD normalisation per replicate; instead each *unit* (what the bootstrap resamples) gets a row
of additive statistics once, and a replicate's metric is a function of their weighted sums. The
statistics follow the metric families of :mod:`promptscale.data.tasks.scoring` exactly, after
the same decision step (``postprocess`` then ``TaskSpec.metric.prepare``), so the metric of any
multiset of units equals ``score_examples`` on the examples of those units (tested):

- label tasks (accuracy, CB's macro-F1, AX-b's Matthews correlation): a unit's confusion-matrix
  counts, over the gold labels, the predicted classes and -1 (no label);
- MultiRC: a unit is a question (``Example.group``): its answer options' F1a counts (an invalid
  option counts against its gold label, as T5 does) and whether all of them are right (EM);
- ReCoRD: a unit is a query: its EM and F1 (first prediction, max over gold answers).

A unit is an example's ``group`` for every task (the record idx where the metric is not grouped),
so MultiRC questions and ReCoRD queries are resampled whole, as their metrics require.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import singledispatch
from typing import TYPE_CHECKING, Any

import numpy as np

from promptscale.data.example import Example
from promptscale.data.tasks import get_task
from promptscale.data.tasks.scoring import GroupedF1Metric, LabelMetric, SquadMetric, squad_em, squad_f1

if TYPE_CHECKING:
    import pandas

Reduce = Callable[[np.ndarray], dict[str, np.ndarray]]
"""Summed statistics ``[..., K]`` -> ``{metric: values [...]}`` in percent."""


@dataclass(frozen=True)
class TaskUnits:
    """One run's dev results on one task, as resampling units.

    Attributes:
        task: Task name.
        units: Unit ids (the examples' ``group``), sorted, so runs on one dev set align.
        stats: Additive statistics per unit, ``[U, K]``.
        reduce: Summed statistics -> metric values (see :data:`Reduce`).
    """

    task: str
    units: tuple[str, ...]
    stats: np.ndarray
    reduce: Reduce

    def metrics(self, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Metric values with each unit counted ``weights`` times (``[U]`` or ``[B, U]``; ``None``: once)."""
        sums = self.stats.sum(axis=0) if weights is None else weights @ self.stats  # [K] or [B, K]
        return self.reduce(sums)

    def score(self, weights: np.ndarray | None = None) -> np.ndarray:
        """The task score (mean of the task's metrics) under ``weights``: ``[]`` or ``[B]``."""
        values = self.metrics(weights)
        names = get_task(self.task).metrics
        return sum(values[name] for name in names) / len(names)

    def restrict(self, units: Sequence[str]) -> TaskUnits:
        """The same run on ``units`` only (a subset of its own), in that order."""
        index = {u: i for i, u in enumerate(self.units)}
        return replace(self, units=tuple(units), stats=self.stats[[index[u] for u in units]])


def units_from_predictions(task: str, examples: Sequence[Example], predictions: Sequence[int | str]) -> TaskUnits:
    """Units of one task from examples and model outputs, decided exactly as ``score_examples`` does.

    Args:
        task: Task name.
        examples: The evaluated examples (only ``choices``, ``label``, ``group`` and ``answers`` matter).
        predictions: Per example a choice index (-1: no label) or generated text (postprocessed here).

    Raises:
        ValueError: A length mismatch, no examples, or an unlabelled example.
    """
    from promptscale.metrics import decide  # evaluate/datasets: only when predictions are scored

    preds, refs = decide(task, examples, predictions)
    units, stats, reduce = unit_statistics(get_task(task).metric, examples, preds, refs)
    return TaskUnits(task, units, stats, reduce)


def task_units(frame: pandas.DataFrame, task: str, protocol: str) -> TaskUnits:
    """Units of ``task`` from a run's predictions file (``store.predictions.read_predictions``).

    The ``rank`` prediction is the stored index where the example had choices (else the
    generation, as in ``evaluation.ExampleResult.ranked``); the ``generate`` prediction is the
    stored generated ``text``, put through T5's postprocessing again.

    Raises:
        ValueError: The file holds no example of ``task``, or ``protocol`` is unknown.
    """
    part = frame[frame["task"] == task]
    if part.empty:
        raise ValueError(f"the predictions hold no {task} example (tasks: {', '.join(sorted(set(frame['task'])))})")
    if protocol not in ("generate", "rank"):
        raise ValueError(f"unknown protocol {protocol!r}")
    examples, predictions = [], []
    for r in part.itertuples(index=False):
        examples.append(
            Example(task, "", "", tuple(r.choices), int(r.label), str(r.group), tuple(r.answers), str(r.id))
        )
        if protocol == "generate" or not len(r.choice_scores):
            predictions.append(str(r.text))
        else:
            predictions.append(int(r.rank))
    return units_from_predictions(task, examples, predictions)


def _index(groups: Sequence[Any]) -> tuple[tuple[str, ...], list[int]]:
    """Sorted unique unit ids, and each example's position among them."""
    units = tuple(sorted({str(g) for g in groups}))
    position = {u: i for i, u in enumerate(units)}
    return units, [position[str(g)] for g in groups]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, 0 where ``den`` is 0 (an F1 with no positives, a Matthews that is undefined)."""
    num, den = np.broadcast_arrays(np.asarray(num, float), np.asarray(den, float))
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


@singledispatch
def unit_statistics(metric: Any, examples, preds, refs) -> tuple[tuple[str, ...], np.ndarray, Reduce]:
    """``(units, stats [U, K], reduce)`` for a metric family; one implementation per family."""
    raise TypeError(f"no resampling statistics for metric family {type(metric).__name__}")


@unit_statistics.register
def _label(metric: LabelMetric, examples, preds, refs):
    """Confusion counts ``[true, predicted]`` over gold labels, predictions and -1, flattened."""
    classes = sorted({*(int(r) for r in refs), *(int(p) for p in preds), *range(metric.num_labels)})
    at = {c: i for i, c in enumerate(classes)}
    n = len(classes)
    units, index = _index([ex.group for ex in examples])
    stats = np.zeros((len(units), n * n))
    for u, p, r in zip(index, preds, refs):
        stats[u, at[int(r)] * n + at[int(p)]] += 1
    labels = [at[c] for c in range(metric.num_labels)]

    def reduce(sums: np.ndarray) -> dict[str, np.ndarray]:
        m = sums.reshape(*sums.shape[:-1], n, n)  # [..., true, predicted]
        total, correct = m.sum(axis=(-2, -1)), np.trace(m, axis1=-2, axis2=-1)
        predicted, true = m.sum(axis=-2), m.sum(axis=-1)  # [..., n]
        tp = np.diagonal(m, axis1=-2, axis2=-1)[..., labels]
        f1 = _ratio(2 * tp, predicted[..., labels] + true[..., labels])  # 2tp / (2tp + fp + fn)
        cov_tp = correct * total - (predicted * true).sum(axis=-1)
        cov_pp = total**2 - (predicted**2).sum(axis=-1)
        cov_tt = total**2 - (true**2).sum(axis=-1)
        values = {
            "accuracy": 100.0 * _ratio(correct, total),
            "f1_macro": 100.0 * f1.mean(axis=-1),
            "matthews_corr": 100.0 * _ratio(cov_tp, np.sqrt(cov_pp * cov_tt)),
        }
        return {name: values[name] for name in metric.names}

    return units, stats, reduce


@unit_statistics.register
def _grouped(metric: GroupedF1Metric, examples, preds, refs):
    """Per question: F1a's tp, fp, fn over its options, whether all are right, and 1 (a question)."""
    units, index = _index([p["group"] for p in preds])
    stats = np.zeros((len(units), 5))
    stats[:, 4] = 1.0
    for u, p, r in zip(index, preds, refs):
        p, r = int(p["prediction"]), int(r)
        decided = p if p in (0, 1) else 1 - r  # T5's f1_score_with_invalid
        stats[u, :4] += (decided == 1 and r == 1, decided == 1 and r != 1, decided != 1 and r == 1, p != r)
    stats[:, 3] = stats[:, 3] == 0  # EM: all options right; additive once per question

    def reduce(sums: np.ndarray) -> dict[str, np.ndarray]:
        tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
        values = {"f1a": 100.0 * _ratio(2 * tp, 2 * tp + fp + fn), "em": 100.0 * _ratio(sums[..., 3], sums[..., 4])}
        return {name: values[name] for name in metric.names}

    return units, stats, reduce


@unit_statistics.register
def _squad(metric: SquadMetric, examples, preds, refs):
    """Per query: its EM and F1 (its first prediction, max over its merged gold answers), and 1."""
    first: dict[str, str] = {}
    for p in preds:
        first.setdefault(str(p["group"]), p["prediction_text"])
    answers: dict[str, list[str]] = {}
    for r in refs:
        merged = answers.setdefault(str(r["group"]), [])
        merged += [a for a in r["answers"] if a not in merged]
    units = tuple(sorted(answers))
    stats = np.zeros((len(units), 3))
    for i, unit in enumerate(units):
        if unit in first:  # a query without a prediction scores 0
            stats[i, 0] = max(squad_em(first[unit], a) for a in answers[unit])
            stats[i, 1] = max(squad_f1(first[unit], a) for a in answers[unit])
        stats[i, 2] = 1.0

    def reduce(sums: np.ndarray) -> dict[str, np.ndarray]:
        values = {"em": 100.0 * _ratio(sums[..., 0], sums[..., 2]), "f1": 100.0 * _ratio(sums[..., 1], sums[..., 2])}
        return {name: values[name] for name in metric.names}

    return units, stats, reduce
