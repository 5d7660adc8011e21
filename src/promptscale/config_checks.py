"""Checks of a composed job config that run before any data is read or any model is built.

Hydra rejects a command-line override of a key that does not exist, but not a key that a YAML
file (an experiment, a group option) adds: ``data: {batch_sise: 8}`` would reach
``instantiate`` and fail, or worse, be silently read by nothing. Every ``_target_`` node is
checked here against the signature of its target, including keyword arguments that our own
classes forward to their base class (a method's ``**kwargs`` go to ``TextToTextModule``).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterator
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig

GROUPS = ("model", "method", "data", "trainer", "logger", "callbacks")
# Keys that run() passes itself, next to the configured ones.
SUPPLIED = {"data": {"seed"}, "method": {"model", "tasks"}}
FP16 = {"16", "16-mixed", "16-true", "fp16", "half"}


def check_config(cfg: DictConfig) -> None:
    """Raises ``ValueError`` naming the first bad key or value (see the module docstring)."""
    for group in GROUPS:
        if group in cfg and cfg[group] is not None:
            for path, node in _target_nodes(cfg[group], group):
                _check_keys(path, node, SUPPLIED.get(path, set()))
    _check_trainer_values(cfg.trainer)


def _target_nodes(node: Any, path: str) -> Iterator[tuple[str, DictConfig]]:
    """Every dict node with a ``_target_`` at or below ``node`` (callbacks, trainer.strategy)."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
        for key in node.keys():
            if not str(key).startswith("_"):
                yield from _target_nodes(node._get_node(key), f"{path}.{key}")
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            yield from _target_nodes(item, f"{path}[{i}]")


def accepted_keys(target: str) -> set[str] | None:
    """Keyword arguments ``target`` accepts; ``None`` when it takes arbitrary ``**kwargs``.

    ``**kwargs`` of a class of this package are followed into its base classes' ``__init__``
    (that is where they go); elsewhere they end the check (e.g. DDP options passed through).
    """
    obj = get_object(target)
    if not isinstance(obj, type):
        params, var_kw = _params(obj)
        return None if var_kw else params
    names: set[str] = set()
    for klass in obj.__mro__:
        if klass is object:
            break
        if "__init__" not in vars(klass):
            continue
        try:
            params, var_kw = _params(klass.__init__)
        except (TypeError, ValueError):  # a builtin without a signature (e.g. set)
            return None
        names |= params - {"self"}
        if not var_kw:
            return names
        if not klass.__module__.startswith("promptscale"):
            return None
    return None


def _params(fn) -> tuple[set[str], bool]:
    sig = inspect.signature(fn)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {p.name for p in sig.parameters.values() if p.kind in kinds}
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def _check_keys(path: str, node: DictConfig, supplied: set[str]) -> None:
    target = node["_target_"]
    try:
        valid = accepted_keys(target)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"{path}._target_={target!r} cannot be imported: {err}") from err
    if valid is None:
        return
    valid -= supplied
    for key in node.keys():
        key = str(key)
        if key.startswith("_") or key in valid:
            continue
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown config key {path}.{key}{hint}: {target} accepts {sorted(valid)}")


def _check_trainer_values(trainer: DictConfig) -> None:
    precision = str(trainer.get("precision", "32-true"))
    if precision in FP16:
        raise ValueError(
            f"trainer.precision={precision} is refused: T5 overflows in float16 (activations beyond "
            f"65504 turn the loss into NaN). Use trainer.precision=bf16-mixed (GPUs with bfloat16: "
            f"A100, H100; CPUs with AMX) or 32-true."
        )
    for key in ("max_steps", "val_check_interval", "accumulate_grad_batches", "log_every_n_steps"):
        value = trainer.get(key)
        if value is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            raise ValueError(f"trainer.{key} must be positive, got {value}")
