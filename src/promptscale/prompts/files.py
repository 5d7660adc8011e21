"""Soft prompts as artifacts: raw files, PEFT adapters, and one frozen T5 serving many tasks.

Prompt tuning's selling point (Lester et al. 2021, section 1) is that a task is a few kilobytes
of prompt, not a copy of the model: one frozen backbone can serve a mixed batch of tasks. This
module makes that concrete:

* ``save_prompt`` / ``load_prompt``: a raw ``[P, d_model]`` tensor as ``.safetensors`` with
  metadata (model, task, length), the smallest thing that reproduces a trained prompt.
* ``export_peft`` / ``import_peft``: the same tensor in PEFT's ``PromptTuningConfig`` adapter
  layout, so ``PeftModel.from_pretrained(base, dir)`` reproduces our logits.
* ``PromptBank``: one frozen T5 and a dict ``task -> prompt``; a batch may mix tasks with
  prompts of different lengths and every example still sees exactly ``[its prompt ; its tokens]``.

How PEFT 0.21 compares (checked in ``tests/test_prompts.py``): for ``SEQ_2_SEQ_LM`` and
``PROMPT_TUNING`` it prepends the first ``num_virtual_tokens`` rows of its prompt table to the
encoder's ``inputs_embeds`` and ones to the encoder mask; the decoder (inputs and
``decoder_attention_mask``) is untouched. That is Lester's method and ours. The one design
difference: PEFT defaults ``num_transformer_submodules`` to 2 for seq2seq and then allocates
``2 P`` rows, of which prompt tuning never reads the second half (no gradient reaches it). We
export with ``num_transformer_submodules=1``; on import a ``2 P``-row table keeps its first
``P`` rows, which is exactly what PEFT itself uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers.modeling_outputs import BaseModelOutput

PROMPT_KEY = "prompt_embeddings"  # PEFT's key; raw prompt files use it too, so either loads
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
FORMAT = "promptscale.prompt/1"
IGNORE = -100


class PromptFileError(ValueError):
    """A prompt file or adapter folder that cannot be used; the message names file and problem."""


# -- raw tensors ----------------------------------------------------------------------------
def as_prompt_tensor(prompt: Any) -> torch.Tensor:
    """A detached CPU ``[P, H]`` copy of a tensor, ``SoftPrompt`` or ``PromptTuning`` module."""
    if hasattr(prompt, "prompt") and hasattr(prompt.prompt, "embedding"):  # PromptTuning
        prompt = prompt.prompt.embedding
    elif hasattr(prompt, "embedding") and isinstance(prompt.embedding, torch.Tensor):  # SoftPrompt
        prompt = prompt.embedding
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2 or prompt.shape[0] == 0:
        shape = tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt).__name__
        raise ValueError(f"a prompt must be a non-empty [P, d_model] tensor, got {shape}")
    return prompt.detach().cpu().contiguous().clone()  # [P, H]


def save_prompt(prompt: Any, path: str | Path, *, model: str = "", task: str = "") -> Path:
    """Writes a prompt ``[P, H]`` as ``.safetensors`` with its model, task and length.

    Args:
        prompt: Tensor ``[P, d_model]``, ``SoftPrompt`` or ``PromptTuning`` module.
        path: Output file (parents are created).
        model: Backbone it was trained on (e.g. ``google/t5-large-lm-adapt``); a prompt only
            means something on that model, so record it.
        task: Task it was trained for.

    Returns:
        The written path.
    """
    tensor = as_prompt_tensor(prompt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT,
        "model": model,
        "task": task,
        "length": str(tensor.shape[0]),
        "d_model": str(tensor.shape[1]),
    }
    save_file({PROMPT_KEY: tensor}, str(path), metadata=metadata)
    return path


def prompt_metadata(path: str | Path) -> dict[str, str]:
    """The metadata ``save_prompt`` stored (empty for files written by other tools)."""
    return _read_safetensors(Path(path))[1]


def load_prompt(path: str | Path, d_model: int | None = None) -> torch.Tensor:
    """Reads a prompt ``[P, H]`` saved by ``save_prompt`` (or a PEFT ``adapter_model.safetensors``).

    Args:
        path: The ``.safetensors`` file.
        d_model: When given, the width the prompt must have (the target model's ``d_model``).

    Raises:
        PromptFileError: Missing or unreadable file, no ``prompt_embeddings`` tensor, not 2-D,
            a length that contradicts the metadata, or the wrong width.
    """
    path = Path(path)
    tensor, metadata = _read_safetensors(path)
    if "length" in metadata and metadata["length"] != str(tensor.shape[0]):
        raise PromptFileError(
            f"{path}: metadata says length {metadata['length']} but the tensor has "
            f"{tensor.shape[0]} rows; the file is inconsistent"
        )
    return check_width(tensor, d_model, path)


def check_width(tensor: torch.Tensor, d_model: int | None, source: str | Path) -> torch.Tensor:
    """Refuses a prompt whose width differs from the model's ``d_model`` (a prompt for another size)."""
    if d_model is not None and tensor.shape[1] != d_model:
        raise PromptFileError(
            f"{source}: prompt has shape {tuple(tensor.shape)} (d_model {tensor.shape[1]}) but "
            f"the model has d_model {d_model}: a prompt trained for a different model size?"
        )
    return tensor


def _read_safetensors(path: Path) -> tuple[torch.Tensor, dict[str, str]]:
    """The ``prompt_embeddings`` tensor ``[P, H]`` and metadata of one file, with named errors."""
    if not path.is_file():
        raise PromptFileError(f"{path}: no such prompt file")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            if PROMPT_KEY not in keys:
                raise PromptFileError(f"{path}: no {PROMPT_KEY!r} tensor (found {keys}); not a prompt file")
            tensor, metadata = f.get_tensor(PROMPT_KEY), f.metadata() or {}
    except SafetensorError as err:
        raise PromptFileError(f"{path}: not a readable .safetensors file ({err})") from err
    if tensor.dim() != 2 or tensor.shape[0] == 0:
        raise PromptFileError(f"{path}: {PROMPT_KEY!r} has shape {tuple(tensor.shape)}, expected [P, d_model]")
    return tensor, metadata


# -- PEFT adapters ---------------------------------------------------------------------------
def export_peft(prompt: Any, base_model_name_or_path: str, out_dir: str | Path) -> Path:
    """Writes a prompt as a PEFT prompt-tuning adapter (``adapter_config.json`` + weights).

    The config is ``PromptTuningConfig(task_type=SEQ_2_SEQ_LM, num_transformer_submodules=1)``:
    one table of ``P`` rows prepended to the encoder, nothing for the decoder, as in the paper.
    ``PeftModel.from_pretrained(base, out_dir)`` then reproduces ``PromptTuning``'s logits.

    Args:
        prompt: Tensor ``[P, d_model]``, ``SoftPrompt`` or ``PromptTuning`` module.
        base_model_name_or_path: The frozen backbone the prompt belongs to (recorded in the
            config; PEFT loads onto whatever base model it is handed).
        out_dir: Output folder (created).

    Returns:
        ``out_dir``.
    """
    from peft import PromptTuningConfig, TaskType

    tensor = as_prompt_tensor(prompt)
    config = getattr(getattr(prompt, "model", None), "config", None)  # a PromptTuning's T5Config
    peft_config = PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM,
        num_virtual_tokens=tensor.shape[0],
        token_dim=tensor.shape[1],
        num_transformer_submodules=1,
        base_model_name_or_path=base_model_name_or_path,
        inference_mode=True,
        num_attention_heads=getattr(config, "num_heads", None),
        num_layers=getattr(config, "num_layers", None),
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_config.save_pretrained(str(out_dir))
    save_file({PROMPT_KEY: tensor}, str(out_dir / PEFT_WEIGHTS), metadata={"format": "pt"})
    return out_dir


def import_peft(adapter_dir: str | Path, d_model: int | None = None) -> torch.Tensor:
    """Reads a PEFT seq2seq prompt-tuning adapter folder as our prompt ``[P, H]``.

    A table of ``P x num_transformer_submodules`` rows keeps its first ``P`` rows: for
    ``PROMPT_TUNING`` on ``SEQ_2_SEQ_LM``, PEFT itself only ever prepends those to the encoder.

    Raises:
        PromptFileError: Missing files, an adapter that is not seq2seq prompt tuning, a table
            whose row count contradicts the config, or the wrong width.
    """
    adapter_dir = Path(adapter_dir)
    config = _read_peft_config(adapter_dir / PEFT_CONFIG)
    weights = adapter_dir / PEFT_WEIGHTS
    if not weights.is_file() and (adapter_dir / "adapter_model.bin").is_file():
        raise PromptFileError(
            f"{adapter_dir / 'adapter_model.bin'}: pickled adapters are not read "
            f"(unsafe); re-save it with safe_serialization=True"
        )
    tensor, _ = _read_safetensors(weights)  # [P * S, H]
    length, submodules = config["num_virtual_tokens"], config.get("num_transformer_submodules") or 1
    if tensor.shape[0] != length * submodules:
        raise PromptFileError(
            f"{weights}: {PROMPT_KEY!r} has {tensor.shape[0]} rows but {PEFT_CONFIG} says "
            f"num_virtual_tokens={length} x num_transformer_submodules={submodules}"
        )
    return check_width(tensor[:length].contiguous(), d_model, weights)  # [P, H]


def _read_peft_config(path: Path) -> dict:
    """The adapter config, refused unless it is prompt tuning for a seq2seq model."""
    if not path.is_file():
        raise PromptFileError(f"{path}: no such file; not a PEFT adapter folder")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PromptFileError(f"{path}: not valid JSON ({err})") from err
    if config.get("peft_type") != "PROMPT_TUNING":
        raise PromptFileError(f"{path}: peft_type is {config.get('peft_type')!r}, expected 'PROMPT_TUNING'")
    if config.get("task_type") != "SEQ_2_SEQ_LM":
        raise PromptFileError(
            f"{path}: task_type is {config.get('task_type')!r}, expected 'SEQ_2_SEQ_LM' (a prompt for the T5 encoder)"
        )
    if not isinstance(config.get("num_virtual_tokens"), int) or config["num_virtual_tokens"] <= 0:
        raise PromptFileError(f"{path}: num_virtual_tokens must be a positive integer")
    return config


def read_prompt(source: str | Path, d_model: int | None = None) -> torch.Tensor:
    """A prompt ``[P, H]`` from either a PEFT adapter folder or a raw prompt file."""
    source = Path(source)
    return import_peft(source, d_model) if source.is_dir() else load_prompt(source, d_model)


def load_into(module: Any, prompt: torch.Tensor | str | Path) -> Any:
    """Copies a prompt (tensor, raw file or PEFT folder) into a ``PromptTuning`` module's ``SoftPrompt``.

    The module must already have the prompt's length: build it with
    ``prompt_length=read_prompt(path).shape[0]``, so its hyperparameters tell the truth.

    Returns:
        The module, for chaining.
    """
    target = module.prompt.embedding  # [P, H]
    tensor = read_prompt(prompt, target.shape[1]) if isinstance(prompt, (str, Path)) else as_prompt_tensor(prompt)
    if tensor.shape != target.shape:
        raise ValueError(
            f"prompt has shape {tuple(tensor.shape)} but the module's prompt is "
            f"{tuple(target.shape)}; build PromptTuning with prompt_length={tensor.shape[0]}"
        )
    with torch.no_grad():
        target.copy_(tensor.to(target))
    return module


# -- mixed-task inference --------------------------------------------------------------------
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
    """One frozen T5 serving many tasks at once, each through its own soft prompt.

    Each example is embedded as ``[prompt_task ; tokens]`` and the batch is right-padded with
    mask 0. Right padding matters: T5's relative position bias depends on positions, so every
    example's real tokens must sit at positions ``0 .. P_t + T - 1`` exactly as they would in a
    batch of its own task; padded keys are masked out of every attention.

    Args:
        model: A ``T5ForConditionalGeneration`` (kept frozen and in eval mode).
        tokenizer: Its tokenizer.
        prompts: ``{task: [P_t, d_model]}``; lengths may differ between tasks.
        max_input_length: Input tokens kept per example (the prompt comes on top), as in training.
        max_target_length: Tokens kept per choice.
    """

    def __init__(
        self,
        model,
        tokenizer,
        prompts: Mapping[str, Any] | None = None,
        *,
        max_input_length: int = 512,
        max_target_length: int = 62,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_input_length, self.max_target_length = max_input_length, max_target_length
        self.prompts: dict[str, torch.Tensor] = {}
        for task, prompt in (prompts or {}).items():
            self.add(task, prompt)

    @classmethod
    def from_files(cls, model, tokenizer, sources: Mapping[str, str | Path], **kwargs) -> PromptBank:
        """A bank whose prompts come from raw prompt files or PEFT adapter folders."""
        d_model = model.config.d_model
        return cls(model, tokenizer, {task: read_prompt(src, d_model) for task, src in sources.items()}, **kwargs)

    @property
    def d_model(self) -> int:
        return self.model.config.d_model

    def add(self, task: str, prompt: Any) -> None:
        """Registers (or replaces) a task's prompt: tensor, ``SoftPrompt``, module, file or folder."""
        tensor = read_prompt(prompt) if isinstance(prompt, (str, Path)) else as_prompt_tensor(prompt)
        self.prompts[task] = check_width(tensor, self.d_model, f"prompt of task {task!r}")

    # -- encoding ----------------------------------------------------------------------------
    def embed(self, queries: Sequence[Query]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example ``[prompt_t ; tokens]``, right-padded: embeds ``[B, S, H]``, mask ``[B, S]``."""
        unknown = sorted({q.task for q in queries} - self.prompts.keys())
        if unknown:
            raise KeyError(f"no prompt for task(s) {unknown}; the bank has {sorted(self.prompts)}")
        ids = self.tokenizer([q.inputs for q in queries], truncation=True, max_length=self.max_input_length)[
            "input_ids"
        ]
        table = self.model.get_input_embeddings()
        weight = table.weight
        rows = [
            torch.cat([self.prompts[q.task].to(weight), table(torch.tensor(i, device=weight.device))])
            for q, i in zip(queries, ids)
        ]  # each [P_t + T_i, H]
        width = max(r.shape[0] for r in rows)
        embeds = weight.new_zeros(len(rows), width, weight.shape[1])  # [B, S, H]
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=weight.device)  # [B, S]
        for b, row in enumerate(rows):
            embeds[b, : row.shape[0]], mask[b, : row.shape[0]] = row, 1
        return embeds, mask

    def encode(self, queries: Sequence[Query]) -> tuple[BaseModelOutput, torch.Tensor]:
        """Runs the encoder once over a mixed batch: output ``[B, S, H]`` and mask ``[B, S]``."""
        embeds, mask = self.embed(queries)
        return self.model.encoder(inputs_embeds=embeds, attention_mask=mask, return_dict=True), mask

    # -- inference ---------------------------------------------------------------------------
    @torch.inference_mode()
    def log_likelihoods(self, batch: Iterable[Any]) -> list[list[float]]:
        """Summed token log-probability of each choice of each example (rank classification)."""
        queries = [as_query(item) for item in batch]
        if not queries:
            return []
        owner = [b for b, q in enumerate(queries) for _ in q.choices]
        texts = [c for q in queries for c in q.choices]
        if not texts:
            return [[] for _ in queries]
        encoded, mask = self.encode(queries)
        scores = choice_scores(self.model, encoded.last_hidden_state, mask, owner, self._label_ids(texts))
        out: list[list[float]] = [[] for _ in queries]
        for b, score in zip(owner, scores.tolist()):
            out[b].append(score)
        return out

    def predict(self, batch: Iterable[Any]) -> list[int]:
        """Index of the most likely choice per example (-1 for an example without choices)."""
        return [max(range(len(s)), key=s.__getitem__) if s else -1 for s in self.log_likelihoods(batch)]

    @torch.inference_mode()
    def generate(self, batch: Iterable[Any], max_new_tokens: int = 62) -> list[str]:
        """Greedy decoding of each example under its own task's prompt."""
        queries = [as_query(item) for item in batch]
        if not queries:
            return []
        encoded, mask = self.encode(queries)
        out = self.model.generate(
            encoder_outputs=encoded, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1
        )  # [B, L']
        return self.tokenizer.batch_decode(out, skip_special_tokens=True)

    def _label_ids(self, texts: list[str]) -> torch.Tensor:
        """Choice texts tokenised as training targets (with ``</s>``), IGNORE-padded: ``[C, L]``."""
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_target_length)["input_ids"]
        labels = torch.full((len(ids), max(map(len, ids))), IGNORE, dtype=torch.long)
        for row, seq in enumerate(ids):
            labels[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return labels.to(self.model.device)


def choice_scores(
    model, hidden: torch.Tensor, mask: torch.Tensor, owner: list[int], labels: torch.Tensor
) -> torch.Tensor:
    """Sum of token log-probabilities ``[C]`` of candidate ``labels`` ``[C, L]``.

    ``hidden`` ``[B, S, H]`` is each example's encoder output, computed once and repeated for
    each of its candidates (``owner`` ``[C]``), as the training module's evaluation does.
    """
    index = torch.tensor(owner, dtype=torch.long, device=hidden.device)  # [C]
    logits = model(
        encoder_outputs=BaseModelOutput(last_hidden_state=hidden[index]), attention_mask=mask[index], labels=labels
    ).logits  # [C, L, V]
    logp = F.log_softmax(logits.float(), dim=-1)
    token_logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [C, L]
    return (token_logp * (labels >= 0)).sum(dim=-1)  # [C]
