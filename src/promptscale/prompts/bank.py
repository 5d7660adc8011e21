"""One frozen T5 serving many tasks at once, each through its own soft prompt.

Prompt tuning's selling point (Lester et al. 2021, section 1) is that one frozen backbone can
serve a mixed batch of tasks: each example sees exactly ``[its task's prompt ; its tokens]``
(``modules.soft_prompt.prepend`` with a different prompt, and prompt length, per row). Scores
and generations come from the prompt-tuning method's own scoring path (``encode``,
``choice_log_likelihoods``, ``generate``), so a bank answers exactly what per-task evaluation
would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from promptscale.data.datamodule import IGNORE, pad
from promptscale.evaluation import decode_generated
from promptscale.prompts.files import as_prompt_tensor, check_width, read_prompt

if TYPE_CHECKING:
    from promptscale.methods.prompt_tuning import PromptTuning


class Query(NamedTuple):
    """One request to a ``PromptBank``: which task's prompt, the input text, optional choices."""

    task: str
    inputs: str
    choices: Sequence[str] = ()


def as_query(item: Any) -> Query:
    """Accepts ``Query``, a plain ``(task, inputs[, choices])`` tuple, or an ``Example``."""
    if hasattr(item, "task") and hasattr(item, "inputs"):
        return Query(item.task, item.inputs, tuple(getattr(item, "choices", ())))
    return Query(*item)


class PromptBank:
    """A frozen prompt-tuning method and a dict ``task -> prompt``.

    Build the method through the job (``job.build_job`` / ``job.rebuild_job``, or construct a
    ``PromptTuning`` around a backbone spec); its own prompt is never used here.

    Args:
        method: A ``PromptTuning`` module (kept frozen and in eval mode).
        prompts: ``{task: [P_t, d_model]}`` (tensor, ``SoftPrompt``, module, file or PEFT folder);
            lengths may differ between tasks.
        max_input_length: Input tokens kept per example (the prompt comes on top), as in training.
        max_target_length: Tokens kept per choice.
    """

    def __init__(
        self,
        method,
        prompts: Mapping[str, Any] | None = None,
        *,
        max_input_length: int = 512,
        max_target_length: int = 62,
    ) -> None:
        self.method = method.eval().requires_grad_(False)
        self.tokenizer = method.tokenizer
        self.max_input_length, self.max_target_length = max_input_length, max_target_length
        self.prompts: dict[str, torch.Tensor] = {}
        for task, prompt in (prompts or {}).items():
            self.add(task, prompt)

    @classmethod
    def from_files(cls, method: PromptTuning, sources: Mapping[str, str | Path], **kwargs) -> PromptBank:
        """A bank whose prompts come from raw prompt files or PEFT adapter folders."""
        return cls(
            method, {task: read_prompt(src, method.model.config.d_model) for task, src in sources.items()}, **kwargs
        )

    @property
    def d_model(self) -> int:
        return self.method.model.config.d_model

    def add(self, task: str, prompt: Any) -> None:
        """Registers (or replaces) a task's prompt: tensor, ``SoftPrompt``, module, file or folder."""
        tensor = read_prompt(prompt) if isinstance(prompt, (str, Path)) else as_prompt_tensor(prompt)
        self.prompts[task] = check_width(tensor, self.d_model, f"prompt of task {task!r}")

    # -- batches ---------------------------------------------------------------------------------
    def batch(self, queries: Sequence[Query]) -> tuple[dict, list[torch.Tensor]]:
        """The evaluation batch of ``queries`` and each row's prompt [P_t, H]."""
        unknown = sorted({q.task for q in queries} - self.prompts.keys())
        if unknown:
            raise KeyError(f"no prompt for task(s) {unknown}; the bank has {sorted(self.prompts)}")
        device = self.method.model.device
        ids = self.tokenizer([q.inputs for q in queries], truncation=True, max_length=self.max_input_length)
        input_ids, mask = pad(ids["input_ids"], self.tokenizer.pad_token_id)  # [B, T]
        batch = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
        texts = [c for q in queries for c in q.choices]
        if texts:
            labels = self.tokenizer(texts, truncation=True, max_length=self.max_target_length)["input_ids"]
            owner = [b for b, q in enumerate(queries) for _ in q.choices]
            batch["choice_labels"] = pad(labels, IGNORE)[0].to(device)  # [C, L]
            batch["choice_owner"] = torch.tensor(owner, dtype=torch.long, device=device)  # [C]
        return batch, [self.prompts[q.task].to(device) for q in queries]

    # -- inference -------------------------------------------------------------------------------
    @torch.inference_mode()
    def log_likelihoods(self, items: Iterable[Any]) -> list[list[float]]:
        """Summed token log-probability of each choice of each example (rank classification)."""
        queries = [as_query(item) for item in items]
        if not any(q.choices for q in queries):
            return [[] for _ in queries]
        batch, prompts = self.batch(queries)
        scores = self.method.choice_log_likelihoods(batch, prompts=prompts).tolist()  # [C]
        out: list[list[float]] = [[] for _ in queries]
        for b, score in zip(batch["choice_owner"].tolist(), scores):
            out[b].append(score)
        return out

    def predict(self, items: Iterable[Any]) -> list[int]:
        """Index of the most likely choice per example (-1 for an example without choices)."""
        return [max(range(len(s)), key=s.__getitem__) if s else -1 for s in self.log_likelihoods(items)]

    @torch.inference_mode()
    def generate(self, items: Iterable[Any], max_new_tokens: int = 62) -> list[str]:
        """Greedy decoding of each example under its own task's prompt (texts as T5X decodes them)."""
        queries = [as_query(item) for item in items]
        if not queries:
            return []
        batch, prompts = self.batch(queries)
        encoded = self.method.encode(batch["input_ids"], batch["attention_mask"], prompts=prompts)
        return decode_generated(self.tokenizer, self.method.generate(encoded, max_new_tokens))
