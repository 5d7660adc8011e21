"""SuperGLUE metrics, as an offline ``evaluate.Metric`` and as pure functions, plus the score.

All values are in percent (0-100), like the SuperGLUE leaderboard and Lester et al. 2021.
The pure helpers hold the arithmetic (and are tested directly); ``SuperGlueMetric`` wraps
them for ``evaluate`` users; ``score_examples`` is the bridge from formatted ``Example``
objects and model outputs (choice indices or generated text) to the metric values.

Metrics follow T5 (Raffel et al. 2020): CB macro-F1 over all three classes, MultiRC F1a
over all answer options pooled and EM per question, ReCoRD SQuAD-normalised EM/F1 with a max
over gold answers, WSC by T5's referent-matching rule, AX-b Matthews correlation.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate

from promptscale.data.example import Example
from promptscale.data.formats import t5_postprocess
from promptscale.data.tasks import SCORED_TASKS, TASKS, get_task

# --------------------------------------------------------------------------- pure helpers


def _check_lengths(predictions: Sequence, references: Sequence) -> None:
    """Raises on mismatched or empty inputs: a metric of nothing is a bug, not 0 or NaN."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to score")


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Share of predictions equal to the reference, in percent."""
    _check_lengths(predictions, references)
    return 100.0 * sum(int(p) == int(r) for p, r in zip(predictions, references)) / len(references)


def f1_macro(predictions: Sequence[int], references: Sequence[int], labels: Sequence[int] | None = None) -> float:
    """Unweighted mean of per-class F1, in percent (sklearn ``f1_score(average="macro")``).

    A class with no true and no predicted instance scores 0, as sklearn does with
    ``labels`` given (T5 passes ``labels=range(3)`` for CB). Predictions outside ``labels``
    (e.g. -1 for unparseable output) count only as misses of the true class.

    Args:
        predictions: Predicted class indices.
        references: Gold class indices.
        labels: Classes to average over; defaults to those in the references or predictions
            (except -1).
    """
    _check_lengths(predictions, references)
    if labels is None:
        labels = sorted({int(x) for x in (*references, *predictions)} - {-1})
    scores = []
    for c in labels:
        tp = sum(p == c and r == c for p, r in zip(predictions, references))
        fp = sum(p == c and r != c for p, r in zip(predictions, references))
        fn = sum(p != c and r == c for p, r in zip(predictions, references))
        # F1 = 2PR/(P+R) = 2tp / (2tp + fp + fn); 0 when the class is absent everywhere.
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return 100.0 * sum(scores) / len(scores)


def matthews_corr(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Matthews correlation coefficient times 100 (sklearn ``matthews_corrcoef``).

    The multi-class form (Gorodkin 2004), which equals the binary formula for two classes
    and treats an unparseable prediction (-1) as its own wrong class. 0 when undefined
    (a constant prediction or reference), as sklearn returns.
    """
    _check_lengths(predictions, references)
    n = len(references)
    true_counts = Counter(int(r) for r in references)
    pred_counts = Counter(int(p) for p in predictions)
    correct = sum(int(p) == int(r) for p, r in zip(predictions, references))
    classes = set(true_counts) | set(pred_counts)
    cov_tp = correct * n - sum(pred_counts[k] * true_counts[k] for k in classes)
    cov_pp = n * n - sum(v * v for v in pred_counts.values())
    cov_tt = n * n - sum(v * v for v in true_counts.values())
    if cov_pp == 0 or cov_tt == 0:
        return 0.0
    return 100.0 * cov_tp / math.sqrt(cov_pp * cov_tt)


def multirc_f1a_em(groups: Sequence[str], predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    """MultiRC F1a and EM, in percent.

    F1a: binary F1 of the positive class ("True" = 1) over all answer options pooled.
    EM: share of questions (``groups``) whose options are all predicted right.

    Args:
        groups: Question id of each answer option.
        predictions: Predicted 0/1 per option (-1 for unparseable output: wrong).
        references: Gold 0/1 per option.
    """
    _check_lengths(predictions, references)
    if len(groups) != len(references):
        raise ValueError(f"{len(groups)} groups for {len(references)} references")
    tp = sum(p == 1 and r == 1 for p, r in zip(predictions, references))
    fp = sum(p == 1 and r != 1 for p, r in zip(predictions, references))
    fn = sum(p != 1 and r == 1 for p, r in zip(predictions, references))
    f1a = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    all_right: dict[str, bool] = {}
    for g, p, r in zip(groups, predictions, references):
        all_right[g] = all_right.get(g, True) and int(p) == int(r)
    em = sum(all_right.values()) / len(all_right)
    return {"f1a": 100.0 * f1a, "em": 100.0 * em}


def squad_normalize(text: str) -> str:
    """SQuAD answer normalisation: lower-case, drop punctuation and a/an/the, collapse spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_em(prediction: str, answer: str) -> float:
    """1.0 when the normalised texts are equal, else 0.0."""
    return float(squad_normalize(prediction) == squad_normalize(answer))


def squad_f1(prediction: str, answer: str) -> float:
    """Token-overlap F1 of the normalised texts (official SQuAD v1.1 script), in [0, 1]."""
    pred_tokens = squad_normalize(prediction).split()
    gold_tokens = squad_normalize(answer).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def record_em_f1(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """ReCoRD EM and F1, in percent: one score per query, max over its gold answers.

    Args:
        predictions: Predicted text per query id; a query missing here scores 0.
        references: Gold answer texts per query id (the queries scored).
    """
    if not references:
        raise ValueError("no references to score")
    em = f1 = 0.0
    for group, answers in references.items():
        if not answers:
            raise ValueError(f"ReCoRD query {group!r} has no gold answers: cannot score it")
        if group not in predictions:
            continue  # a missing prediction scores 0
        pred = predictions[group]
        em += max(squad_em(pred, a) for a in answers)
        f1 += max(squad_f1(pred, a) for a in answers)
    n = len(references)
    return {"em": 100.0 * em / n, "f1": 100.0 * f1 / n}


# T5's WSC postprocessor ignores these words when matching a prediction to the referent.
_WSC_DETERMINERS = frozenset(
    {
        "a",
        "an",
        "few",
        "her",
        "his",
        "each",
        "every",
        "many",
        "much",
        "my",
        "our",
        "some",
        "that",
        "the",
        "their",
        "these",
        "this",
        "those",
        "which",
        "whose",
        "your",
    }
)


def wsc_referent_match(prediction: str, referent: str) -> bool:
    """T5's ``wsc_simple`` rule: does the generated text name the referent?

    Lower-case, drop determiners, then True when one word set contains the other ("fuzzy
    bunny" vs "bunny"), except that a possessive on one side only ("Bob" vs "Bob's hat") is
    False. Punctuation is not stripped (T5 does not). Words are split on single spaces as
    in T5, so an empty prediction never matches.
    """

    def clean(s: str) -> str:
        return " ".join(w for w in s.strip().lower().split(" ") if w not in _WSC_DETERMINERS)

    pred, ref = clean(prediction), clean(referent)
    if ("'" in pred) != ("'" in ref):
        return False
    pred_words, ref_words = set(pred.split(" ")), set(ref.split(" "))
    return pred_words <= ref_words or ref_words <= pred_words


# --------------------------------------------------------------------------- per-task dispatch

_CLASSIFICATION = ("boolq", "cb", "copa", "rte", "wic", "wsc", "axb", "axg")


def compute_task_metrics(task: str, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
    """Computes ``TaskSpec.metrics`` of ``task`` from ``evaluate``-shaped inputs, in percent.

    Args:
        task: Task name.
        predictions: Classification tasks (WSC included: 0/1 "names the referent"): ints.
            MultiRC: ``{"group", "prediction"}`` dicts. ReCoRD: ``{"group",
            "prediction_text"}`` dicts.
        references: Classification and MultiRC: ints. ReCoRD: ``{"group", "answers"}`` dicts.

    Returns:
        One value per name in ``TASKS[task].metrics``.
    """
    spec = get_task(task)
    predictions, references = list(predictions), list(references)
    if task == "multirc":
        _check_lengths(predictions, references)
        out = multirc_f1a_em(
            [p["group"] for p in predictions], [int(p["prediction"]) for p in predictions], [int(r) for r in references]
        )
    elif task == "record":
        pred_map: dict[str, str] = {}
        for p in predictions:  # the first prediction of a query counts
            pred_map.setdefault(str(p["group"]), p["prediction_text"])
        ref_map: dict[str, list[str]] = {}
        for r in references:  # several rows of one query (one per answer) merge
            answers = ref_map.setdefault(str(r["group"]), [])
            answers += [a for a in r["answers"] if a not in answers]
        out = record_em_f1(pred_map, ref_map)
    else:
        preds, refs = [int(p) for p in predictions], [int(r) for r in references]
        out = {}
        for name in spec.metrics:
            if name == "accuracy":
                out[name] = accuracy(preds, refs)
            elif name == "f1_macro":
                out[name] = f1_macro(preds, refs, labels=range(len(spec.label_words)))
            elif name == "matthews_corr":
                out[name] = matthews_corr(preds, refs)
    missing = set(spec.metrics) - set(out)
    if missing:  # a TaskSpec names a metric this module cannot compute
        raise KeyError(f"no implementation of metrics {sorted(missing)} for task {task!r}")
    return {name: out[name] for name in spec.metrics}


# --------------------------------------------------------------------------- evaluate.Metric


def _features(task: str) -> datasets.Features:
    """The input schema of ``task`` (see ``compute_task_metrics``)."""
    if task == "multirc":
        return datasets.Features(
            {
                "predictions": {"group": datasets.Value("string"), "prediction": datasets.Value("int64")},
                "references": datasets.Value("int64"),
            }
        )
    if task == "record":
        return datasets.Features(
            {
                "predictions": {"group": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                "references": {
                    "group": datasets.Value("string"),
                    "answers": datasets.Sequence(datasets.Value("string")),
                },
            }
        )
    return datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")})


_DESCRIPTION = "SuperGLUE metrics (Wang et al. 2019) as computed by T5, in percent."
_CITATION = """@inproceedings{wang2019superglue,
  title={SuperGLUE: A Stickier Benchmark for General-Purpose Language Understanding Systems},
  author={Wang, Alex and others}, booktitle={NeurIPS}, year={2019}}"""
_INPUTS = """Per task (config_name): classification tasks take int predictions and references;
multirc predictions {"group", "prediction"} with int references; record predictions
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
            features=_features(self.config_name),
            homepage="https://super.gluebenchmark.com/",
        )

    def _compute(self, predictions: Sequence[Any] = None, references: Sequence[Any] = None) -> dict[str, float]:
        return compute_task_metrics(self.config_name, predictions, references)


# --------------------------------------------------------------------------- bridge and score


def _require_labels(task: str, examples: Sequence[Example]) -> None:
    """Refuses unlabelled (test) examples: their metrics would be silently meaningless."""
    for ex in examples:
        unlabelled = not ex.answers if task == "record" else ex.label < 0
        if unlabelled:
            raise ValueError(f"cannot score unlabelled {task} example (group {ex.group!r}): test data has no labels")


def score_examples(task: str, examples: Sequence[Example], predictions: Sequence[int | str]) -> dict[str, float]:
    """Scores model outputs on formatted examples: the bridge the training code uses.

    Args:
        task: Task name whose metrics are computed (e.g. "axb" for AX-b examples).
        examples: Evaluation examples (``formats.format_examples(..., train=False)``).
        predictions: Per example either an int (rank classification: index into
            ``choices``; for WSC the 0/1 "names the referent" decision) or a str (generated
            text: mapped to a choice with ``formats.t5_postprocess``, -1 = wrong; for WSC
            matched to the referent with ``wsc_referent_match``; for ReCoRD compared with
            the gold answers).

    Returns:
        ``TASKS[task].metrics`` values, in percent.

    Raises:
        ValueError: On a length mismatch, no examples, or unlabelled examples.
    """
    get_task(task)
    _check_lengths(predictions, examples)
    _require_labels(task, examples)
    if task == "record":
        preds = []
        for ex, p in zip(examples, predictions):
            if not isinstance(p, str):
                p = ex.choices[p] if 0 <= p < len(ex.choices) else ""
            preds.append({"group": ex.group, "prediction_text": p})
        refs = [{"group": ex.group, "answers": list(ex.answers)} for ex in examples]
        return compute_task_metrics(task, preds, refs)
    if task == "wsc":
        truth = [
            int(wsc_referent_match(p, ex.answers[0])) if isinstance(p, str) else int(p)
            for ex, p in zip(examples, predictions)
        ]
        return compute_task_metrics(task, truth, [ex.label for ex in examples])
    indices = [t5_postprocess(task, p, ex) if isinstance(p, str) else int(p) for ex, p in zip(examples, predictions)]
    refs = [ex.label for ex in examples]
    if task == "multirc":
        preds = [{"group": ex.group, "prediction": i} for ex, i in zip(examples, indices)]
        return compute_task_metrics(task, preds, refs)
    return compute_task_metrics(task, indices, refs)


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
