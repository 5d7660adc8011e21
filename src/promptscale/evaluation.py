"""Evaluation: both protocols from one encoder pass, metrics per protocol, the best step per task.

Lester et al. (2021) score SuperGLUE as T5 does (the ``generate`` protocol): the model greedily
decodes its target text, T5's postprocessing maps the text to a label, and text that is no
label counts as wrong. Harnesses often rank the verbalised choices by log-likelihood instead
(the ``rank`` protocol), which can never be invalid and so flatters small and span-corruption
models (the paper's Figure 3c collapse is invalid outputs). Every evaluation here computes both
from one encoder pass per example: the encoder output feeds the teacher-forced choice scoring
and the greedy decoder alike. One protocol is *primary*: it picks the best dev step (early
stopping) and is logged as ``val/<task>/<metric>``; the other is logged as
``val_<protocol>/<task>/<metric>``; ``val/<task>/invalid`` is the share of generated outputs
that are no valid answer. Open-ended outputs: T5-format WSC has no choices, so its rank protocol
is its generation; ReCoRD's rank protocol ranks the passage's entities.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from promptscale.data.example import Example
from promptscale.data.formats import postprocess
from promptscale.data.tasks import get_task
from promptscale.metrics import score_examples, task_score
from promptscale.store.rows import INVALID, PROTOCOLS

SENTINEL = "<extra_id_0>"


@dataclass(frozen=True)
class EvaluationSpec:
    """How a run is evaluated (the ``evaluation`` config block, shared by every method).

    Attributes:
        protocol: The primary protocol, ``generate`` (the paper's) or ``rank``: it selects the
            best dev checkpoint and owns the ``val/`` metric names.
        max_new_tokens: Generation limit. Outputs that are labels stop earlier, as soon as their
            text can no longer become any of the example's choices (the result is then decided).
        strip_sentinel: Targets were trained with T5's first sentinel in front
            (``data.target_sentinel``); generated text loses one leading sentinel before T5's
            postprocessing. Set by the job, not a config key.
    """

    protocol: str = "generate"
    max_new_tokens: int = 62
    strip_sentinel: bool = False

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"evaluation.protocol={self.protocol!r} is not one of {PROTOCOLS}")
        if self.max_new_tokens <= 0:
            raise ValueError(f"evaluation.max_new_tokens must be positive, got {self.max_new_tokens}")

    @property
    def protocols(self) -> tuple[str, str]:
        """The primary protocol first, then the other."""
        return (self.protocol, *(p for p in PROTOCOLS if p != self.protocol))


@dataclass(frozen=True)
class ExampleResult:
    """One evaluated example under both protocols.

    Attributes:
        example: The formatted example.
        scores: Summed log-likelihood of each of ``example.choices``; empty without choices.
        text: The generated text as decoded (sentinels kept, see ``decode_generated``).
        generated: ``text`` after T5's postprocessing: a choice index (-1: no valid label) or,
            for open-ended tasks, the text itself.
        valid: Whether ``text`` is a valid answer (``data.formats.postprocess``).
    """

    example: Example
    scores: tuple[float, ...]
    text: str
    generated: int | str
    valid: bool

    @property
    def ranked(self) -> int | str:
        """The rank-protocol prediction: the most likely choice, or the generation without choices."""
        if not self.scores:
            return self.generated
        return max(range(len(self.scores)), key=self.scores.__getitem__)

    def prediction(self, protocol: str) -> int | str:
        return self.ranked if protocol == "rank" else self.generated

    def record(self) -> dict[str, Any]:
        """A flat per-example record (the predictions file of a run)."""
        ex = self.example
        return {
            "task": ex.task, "id": ex.id, "group": ex.group, "label": ex.label, "answers": list(ex.answers),
            "choices": list(ex.choices), "choice_scores": list(self.scores), "rank": self.ranked,
            "text": self.text, "generate": self.generated, "valid": self.valid,
        }  # fmt: skip


# -- one batch -------------------------------------------------------------------------------
def evaluate_batch(method, batch: dict, spec: EvaluationSpec, prompts: Any = None) -> list[ExampleResult]:
    """Both protocols for every example of ``batch`` from one encoder pass.

    Args:
        method: A ``TextToTextModule`` (its ``encode``, ``choice_log_likelihoods`` and
            ``generate`` are the only scoring path).
        batch: An evaluation batch (``SuperGlueDataModule.collate_eval``).
        spec: The evaluation settings.
        prompts: Per-row soft prompts for prompt-tuning methods (ensembles, prompt banks).
    """
    examples: list[Example] = batch["examples"]
    encoded = method.encode(batch["input_ids"], batch["attention_mask"], prompts=prompts)
    scores: list[tuple[float, ...]] = [()] * len(examples)
    if "choice_labels" in batch:
        flat = method.choice_log_likelihoods(batch, encoded=encoded).tolist()  # [C]
        scores = split_by_owner(flat, batch["choice_owner"].tolist(), len(examples))
    labels_only = all(is_label_task(ex) for ex in examples)
    stopping = StoppingCriteriaList([LabelStopping(method.tokenizer, examples, spec)]) if labels_only else None
    ids = method.generate(encoded, max_new_tokens=spec.max_new_tokens, stopping=stopping)  # [B, L]
    texts = decode_generated(method.tokenizer, ids, spec.strip_sentinel)
    results = []
    for ex, score, text in zip(examples, scores, texts):
        prediction, valid = postprocess(ex.task, text, ex)
        results.append(ExampleResult(ex, tuple(score), text, prediction, valid))
    return results


def split_by_owner(values: Sequence[float], owner: Sequence[int], n: int) -> list[tuple[float, ...]]:
    """Flat per-choice values [C] -> one tuple per example, in choice order."""
    out: list[list[float]] = [[] for _ in range(n)]
    for value, b in zip(values, owner):
        out[b].append(value)
    return [tuple(v) for v in out]


def is_label_task(example: Example) -> bool:
    """Whether the example's generated text must be one of its choices (else it is open-ended)."""
    return bool(example.choices) and not get_task(example.task).open_ended


def decode_generated(tokenizer, ids: torch.Tensor, strip_sentinel: bool = False) -> list[str]:
    """Generated ids [B, L] (decoder start first) -> texts, as T5X would see them.

    Each row is cut at its first end-of-sequence token and loses padding; sentinel tokens stay
    in the text (T5X decodes them to unknown pieces), so a span-corruption model that answers
    ``<extra_id_0> ...`` is invalid. With ``strip_sentinel`` (targets trained with the sentinel in
    front) one leading sentinel and the space after it are removed first.
    """
    return [decode_one(tokenizer, row, strip_sentinel) for row in ids[:, 1:].tolist()]


def decode_one(tokenizer, ids: list[int], strip_sentinel: bool = False) -> str:
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    ids = [i for i in ids if i != tokenizer.pad_token_id]
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if strip_sentinel and text.startswith(SENTINEL):
        text = text[len(SENTINEL) :].removeprefix(" ")
    return text


class LabelStopping(StoppingCriteria):
    """Stops a row once its text can no longer become one of its example's choices.

    Decoding only appends text, so a row whose text is no prefix of any choice is invalid
    whatever follows: stopping it changes no prediction and no metric, and a model that rambles
    (random or span-corruption weights) costs a few decoder steps, not ``max_new_tokens``.
    """

    def __init__(self, tokenizer, examples: Sequence[Example], spec: EvaluationSpec) -> None:
        self.tokenizer, self.spec = tokenizer, spec
        self.choices = [ex.choices for ex in examples]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        done = []
        for row, choices in zip(input_ids[:, 1:].tolist(), self.choices):  # [B, steps]
            text = decode_one(self.tokenizer, row, self.spec.strip_sentinel)
            done.append(not any(choice.startswith(text) for choice in choices))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


# -- metrics ---------------------------------------------------------------------------------
def task_metrics(results: Iterable[ExampleResult]) -> dict[str, dict[str, dict[str, float]]]:
    """``{task: {protocol: {metric: value}}}`` in percent; ``generate`` also has ``invalid``."""
    by_task: dict[str, list[ExampleResult]] = defaultdict(list)
    for result in results:
        by_task[result.example.task].append(result)
    out = {}
    for task, group in by_task.items():
        examples = [r.example for r in group]
        out[task] = {p: score_examples(task, examples, [r.prediction(p) for r in group]) for p in PROTOCOLS}
        out[task]["generate"][INVALID] = 100.0 * sum(not r.valid for r in group) / len(group)
    return out


def log_items(metrics: dict[str, dict[str, dict[str, float]]], primary: str) -> dict[str, float]:
    """Metric names and values to log for one evaluation (see the module docstring)."""
    items: dict[str, float] = {}
    scores: dict[str, list[float]] = defaultdict(list)
    for task, per_protocol in metrics.items():
        for protocol, values in per_protocol.items():
            prefix = "val" if protocol == primary else f"val_{protocol}"
            for name, value in values.items():
                items[f"val/{task}/{INVALID}" if name == INVALID else f"{prefix}/{task}/{name}"] = value
            score = task_score(task, values)  # the task's metrics only, never `invalid`
            items[f"{prefix}/{task}/score"] = score
            if get_task(task).in_score:
                scores[prefix].append(score)
    for prefix, values in scores.items():
        items[f"{prefix}/score"] = sum(values) / len(values)
    return items


# -- the best evaluation per task ------------------------------------------------------------
@dataclass
class TaskResult:
    """The best evaluation of one task so far, chosen by the primary protocol's task score.

    Attributes:
        score: Primary-protocol task score of that evaluation.
        step: Optimizer step of that evaluation.
        metrics: ``{protocol: {metric: value}}`` of that evaluation.
        examples: Evaluation examples scored (each once, also across ranks).
        predictions: Per-example records of that evaluation (``ExampleResult.record``).
    """

    score: float = -math.inf
    step: int = -1
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    examples: int = 0
    predictions: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TaskResult:
        """Reads a saved result; checkpoints written before protocols existed held rank metrics."""
        metrics = state.get("metrics", {})
        if metrics and not all(isinstance(v, dict) for v in metrics.values()):
            metrics = {"rank": dict(metrics)}
        return cls(float(state.get("score", -math.inf)), int(state.get("step", -1)), metrics,
                   int(state.get("examples", 0)), list(state.get("predictions", [])))  # fmt: skip


def update_best(
    best: dict[str, TaskResult], results: Sequence[ExampleResult], step: int, primary: str
) -> dict[str, dict[str, dict[str, float]]]:
    """Scores one evaluation, keeps each task's best under the primary protocol; returns its metrics."""
    metrics = task_metrics(results)
    for task, per_protocol in metrics.items():
        score = task_score(task, per_protocol[primary])
        if score > best.setdefault(task, TaskResult()).score:
            records = [r.record() for r in results if r.example.task == task]
            best[task] = TaskResult(score, step, per_protocol, len(records), records)
    return metrics
