"""Soft prompts as files: raw safetensors, PEFT adapters and the official ``.npy`` prompts.

A trained prompt is a ``[P, d_model]`` tensor (Lester et al. 2021: a task is a few kilobytes of
prompt, not a copy of the model):

* ``save_prompt`` / ``load_prompt``: a raw ``[P, d_model]`` tensor as ``.safetensors`` with
  metadata (model, task, length), the smallest thing that reproduces a trained prompt.
* ``export_peft`` / ``import_peft``: the same tensor in PEFT's ``PromptTuningConfig`` adapter
  layout, so ``PeftModel.from_pretrained(base, dir)`` reproduces our logits.
* ``load_npy``: a float array ``[P, d_model]`` saved by ``numpy.save``, the format of the prompts
  google-research/prompt-tuning releases and its T5X training writes.

``read_prompt`` reads any of the three (``method.init=file`` goes through it).

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
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

log = logging.getLogger(__name__)
TENSOR_KEY = "prompt_embeddings"  # PEFT's key; raw prompt files use it too, so either loads
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
FORMAT = "promptscale.prompt/1"


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
    save_file({TENSOR_KEY: tensor}, str(path), metadata=metadata)
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
            if TENSOR_KEY not in keys:
                raise PromptFileError(f"{path}: no {TENSOR_KEY!r} tensor (found {keys}); not a prompt file")
            tensor, metadata = f.get_tensor(TENSOR_KEY), f.metadata() or {}
    except SafetensorError as err:
        raise PromptFileError(f"{path}: not a readable .safetensors file ({err})") from err
    if tensor.dim() != 2 or tensor.shape[0] == 0:
        raise PromptFileError(f"{path}: {TENSOR_KEY!r} has shape {tuple(tensor.shape)}, expected [P, d_model]")
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
    save_file({TENSOR_KEY: tensor}, str(out_dir / PEFT_WEIGHTS), metadata={"format": "pt"})
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
            f"{weights}: {TENSOR_KEY!r} has {tensor.shape[0]} rows but {PEFT_CONFIG} says "
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


# -- the official repository's prompts -------------------------------------------------------
def load_npy(path: str | Path, d_model: int | None = None) -> torch.Tensor:
    """Reads a ``.npy`` prompt ``[P, H]`` (google-research/prompt-tuning's released prompts).

    The array is read without pickle (a ``.npy`` holding objects is refused, not executed) and
    cast to float32, the dtype the official prompts are saved in.

    Raises:
        PromptFileError: Missing or unreadable file, not a 2-D float array, or the wrong width.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"{path}: no such prompt file")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise PromptFileError(f"{path}: not a readable .npy array ({err})") from err
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.shape[0] == 0:
        shape = getattr(array, "shape", None)
        raise PromptFileError(f"{path}: array has shape {shape}, expected a prompt [P, d_model]")
    if not np.issubdtype(array.dtype, np.floating):
        raise PromptFileError(f"{path}: array has dtype {array.dtype}, expected floats")
    return check_width(torch.from_numpy(array.astype(np.float32)), d_model, path)  # [P, H]


def read_prompt(source: str | Path, d_model: int | None = None) -> torch.Tensor:
    """A prompt ``[P, H]`` from a PEFT adapter folder, a ``.npy`` array or a raw prompt file."""
    source = Path(source)
    if source.is_dir():
        return import_peft(source, d_model)
    return load_npy(source, d_model) if source.suffix == ".npy" else load_prompt(source, d_model)


def read_init_prompt(
    source: str | Path, length: int, d_model: int, known_as: Sequence[str | None] = ()
) -> torch.Tensor:
    """The prompt ``[P, H]`` that ``method.init_file`` names, refused (naming the file) unless it fits.

    Width must be the model's ``d_model`` and length ``method.prompt_length`` (the official
    ``from_array`` init refuses a shape mismatch too). A prompt whose metadata names another
    model (``save_prompt(model=...)``) of the same width loads (prompt transfer), with a warning.

    Args:
        source: A raw ``.safetensors`` prompt, a PEFT adapter folder or a ``.npy`` array.
        length: ``method.prompt_length``.
        d_model: The model's width.
        known_as: Names of the model (Hub id, config name, folder) the metadata may carry.
    """
    tensor = read_prompt(source, d_model)
    if tensor.shape[0] != length:
        raise PromptFileError(
            f"{source}: prompt has {tensor.shape[0]} vectors but method.prompt_length={length}: "
            f"set method.prompt_length={tensor.shape[0]}"
        )
    saved_for = prompt_metadata(source).get("model") if Path(source).suffix == ".safetensors" else None
    if saved_for and saved_for not in known_as:
        log.warning(
            "%s was saved for model %s; loading it into %s", source, saved_for, next(filter(None, known_as), "?")
        )
    return tensor


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
