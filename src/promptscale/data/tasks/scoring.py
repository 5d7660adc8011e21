"""How a task is scored: T5's metric arithmetic and the metric families a task definition picks.

All values are in percent (0-100), like the SuperGLUE leaderboard and Lester et al. 2021.
Invalid outputs are handled as T5's metrics handle them (Raffel et al. 2020,
``t5/evaluation/metrics.py``): a prediction of -1 is no label. Accuracy counts it wrong; CB's
macro-F1 counts it only as a miss of the true class; MultiRC's F1a replaces it by the opposite
of its gold label (a false positive on gold False, a false negative on gold True) and its EM
counts the option wrong; AX-b's Matthews correlation treats it as a class of its own.

This module lives beside the task definitions (not in ``promptscale.metrics``) because every
task module names its metric family here, and ``promptscale.metrics`` imports the registry:
the arithmetic must sit below both so the imports only point one way.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from promptscale.data.example import Example

# --------------------------------------------------------------------------- arithmetic


def check_lengths(predictions: Sequence, references: Sequence) -> None:
    """Raises on mismatched or empty inputs: a metric of nothing is a bug, not 0 or NaN."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to score")


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Share of predictions equal to the reference, in percent (-1, no label, is wrong)."""
    check_lengths(predictions, references)
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
    check_lengths(predictions, references)
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
    check_lengths(predictions, references)
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
    """MultiRC F1a and EM, in percent, with T5's invalid handling.

    F1a: binary F1 of the positive class ("True" = 1) over all answer options pooled, after
    T5's ``f1_score_with_invalid`` step: a prediction that is neither 0 nor 1 becomes the
    opposite of its gold label, so it is a false positive on gold False and a false negative
    on gold True. EM: share of questions (``groups``) whose options are all predicted right
    (an invalid option is wrong).

    Args:
        groups: Question id of each answer option.
        predictions: Predicted 0/1 per option (-1 for output that is no label).
        references: Gold 0/1 per option.
    """
    check_lengths(predictions, references)
    if len(groups) != len(references):
        raise ValueError(f"{len(groups)} groups for {len(references)} references")
    preds = [int(p) if int(p) in (0, 1) else 1 - int(r) for p, r in zip(predictions, references)]
    tp = sum(p == 1 and r == 1 for p, r in zip(preds, references))
    fp = sum(p == 1 and r != 1 for p, r in zip(preds, references))
    fn = sum(p != 1 and r == 1 for p, r in zip(preds, references))
    f1a = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    all_right: dict[str, bool] = {}
    for g, p, r in zip(groups, predictions, references):
        all_right[g] = all_right.get(g, True) and int(p) == int(r)
    em = sum(all_right.values()) / len(all_right)
    return {"f1a": 100.0 * f1a, "em": 100.0 * em}


_PUNCTUATION = frozenset(string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD answer normalisation: lower-case, drop punctuation and a/an/the, collapse spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
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
    "a an few her his each every many much my our some that the their these this those which whose your".split()
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


# --------------------------------------------------------------------------- metric families

Prediction = int | str
"""A choice index (rank classification, or postprocessed generation; -1 = no label) or text."""


@dataclass(frozen=True)
class LabelMetric:
    """Class-index predictions against gold labels: accuracy, macro-F1 and/or Matthews.

    Attributes:
        names: Metric names, in report order (a subset of accuracy, f1_macro, matthews_corr).
        num_labels: Classes macro-F1 averages over (T5: ``labels=range(num_classes)``).
        inputs: The ``evaluate`` input shape (``promptscale.metrics.SuperGlueMetric``): ints.
    """

    names: tuple[str, ...] = ("accuracy",)
    num_labels: int = 2
    inputs: ClassVar[str] = "label"

    def __post_init__(self) -> None:
        unknown = set(self.names) - {"accuracy", "f1_macro", "matthews_corr"}
        if unknown:
            raise ValueError(f"LabelMetric cannot compute {sorted(unknown)}")

    def labelled(self, example: Example) -> bool:
        """Whether the example can be scored (test records have no label)."""
        return example.label >= 0

    def decide(self, example: Example, prediction: Prediction) -> int:
        """The class a prediction stands for; a label task's predictions are indices already."""
        return int(prediction)

    def prepare(self, examples: Sequence[Example], predictions: Sequence[Prediction]) -> tuple[list, list]:
        """Examples + predictions -> (predictions, references) in this family's ``evaluate`` shape."""
        return [self.decide(ex, p) for ex, p in zip(examples, predictions)], [ex.label for ex in examples]

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        """Metric values from ``evaluate``-shaped inputs, in percent."""
        preds, refs = [int(p) for p in predictions], [int(r) for r in references]
        functions = {
            "accuracy": lambda: accuracy(preds, refs),
            "f1_macro": lambda: f1_macro(preds, refs, labels=range(self.num_labels)),
            "matthews_corr": lambda: matthews_corr(preds, refs),
        }
        return {name: functions[name]() for name in self.names}


@dataclass(frozen=True)
class ReferentMetric(LabelMetric):
    """WSC as T5 scores it: generated text is True when it names the referent, then accuracy.

    Integer predictions are the 0/1 decision itself (rank classification of the prompt-design
    template's no/yes, or a postprocessed label); text goes through ``wsc_referent_match``
    against the example's referent (``answers[0]``) and is then compared with the label.
    """

    def decide(self, example: Example, prediction: Prediction) -> int:
        if isinstance(prediction, str):
            return int(wsc_referent_match(prediction, example.answers[0]))
        return int(prediction)


@dataclass(frozen=True)
class GroupedF1Metric:
    """MultiRC: F1a over all answer options pooled and EM per question (``Example.group``)."""

    names: tuple[str, ...] = ("f1a", "em")
    inputs: ClassVar[str] = "grouped_label"

    def labelled(self, example: Example) -> bool:
        return example.label >= 0

    def prepare(self, examples: Sequence[Example], predictions: Sequence[Prediction]) -> tuple[list, list]:
        preds = [{"group": ex.group, "prediction": int(p)} for ex, p in zip(examples, predictions)]
        return preds, [ex.label for ex in examples]

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        check_lengths(predictions, references)
        groups = [p["group"] for p in predictions]
        out = multirc_f1a_em(groups, [int(p["prediction"]) for p in predictions], [int(r) for r in references])
        return {name: out[name] for name in self.names}


@dataclass(frozen=True)
class SquadMetric:
    """ReCoRD: SQuAD EM and token F1 per query, max over gold answers (T5's ``squad``).

    The first prediction of a query counts (T5's ``deduplicate_metric``); an integer
    prediction is an index into the candidate entities (-1: the empty text, which scores 0).
    """

    names: tuple[str, ...] = ("em", "f1")
    inputs: ClassVar[str] = "text"

    def labelled(self, example: Example) -> bool:
        return bool(example.answers)

    def prepare(self, examples: Sequence[Example], predictions: Sequence[Prediction]) -> tuple[list, list]:
        preds = []
        for ex, p in zip(examples, predictions):
            if not isinstance(p, str):
                p = ex.choices[p] if 0 <= p < len(ex.choices) else ""
            preds.append({"group": ex.group, "prediction_text": p})
        return preds, [{"group": ex.group, "answers": list(ex.answers)} for ex in examples]

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        pred_map: dict[str, str] = {}
        for p in predictions:  # the first prediction of a query counts
            pred_map.setdefault(str(p["group"]), p["prediction_text"])
        ref_map: dict[str, list[str]] = {}
        for r in references:  # several rows of one query (one per answer) merge
            answers = ref_map.setdefault(str(r["group"]), [])
            answers += [a for a in r["answers"] if a not in answers]
        out = record_em_f1(pred_map, ref_map)
        return {name: out[name] for name in self.names}


Metric = LabelMetric | GroupedF1Metric | SquadMetric
"""The metric family a task definition names (``TaskSpec.metric``)."""
