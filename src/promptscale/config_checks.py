"""Checks of a composed job config that run before any data is read or any model is built.

Hydra rejects a command-line override of a key that does not exist, but not a key that a YAML
file (an experiment, a group option) adds: ``data: {batch_sise: 8}`` would reach
``instantiate`` and fail, or worse, be silently read by nothing. Every ``_target_`` node is
checked here against the signature of its target, including keyword arguments that our own
classes forward to their base class (a method's ``**kwargs`` go to ``TextToTextModule``).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Iterator
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

GROUPS = ("model", "method", "data", "trainer", "logger", "callbacks")
# Keys that the job (job.build_job, train.make_trainer) passes itself, next to the configured ones.
SUPPLIED = {
    "data": {"seed", "batch_size"},
    "model": {"seed"},
    "method": {"model", "tasks", "optimizer", "evaluation"},
    "trainer": {"max_steps", "val_check_interval", "logger", "callbacks", "plugins"},
}
# Keys that moved when the recipe and evaluation became blocks of their own.
MOVED = {
    "data.batch_size": "recipe.batch_size",
    "trainer.max_steps": "recipe.max_steps",
    "trainer.val_check_interval": "recipe.val_check_interval",
    "method.batch_size": "recipe.batch_size",
    "method.max_steps": "recipe.max_steps",
    "method.val_check_interval": "recipe.val_check_interval",
    "method.lr": "recipe.optimizer.lr",
    "method.weight_decay": "recipe.optimizer.weight_decay",
    "method.decay_rate": "recipe.optimizer.decay_rate",
    "method.clip_threshold": "recipe.optimizer.clip_threshold",
    "method.optimizer": "recipe.optimizer.name",
    "method.eval_mode": "evaluation.protocol",
    "method.max_new_tokens": "evaluation.max_new_tokens",
}
# Typed blocks without a _target_: block -> (class, keys the job sets itself).
BLOCKS = {
    "recipe": ("promptscale.job.Recipe", set()),
    "recipe.optimizer": ("promptscale.optim.OptimizerSpec", {"total_steps"}),
    "evaluation": ("promptscale.evaluation.EvaluationSpec", {"strip_sentinel"}),
    "speed": ("promptscale.speed.SpeedSpec", set()),
}
FP16 = {"16", "16-mixed", "16-true", "fp16", "half"}


def check_config(cfg: DictConfig) -> None:
    """Raises ``ValueError`` naming the first bad key or value (see the module docstring)."""
    for group in GROUPS:
        if group in cfg and cfg[group] is not None:
            for path, node in _target_nodes(cfg[group], group):
                _check_keys(path, node, SUPPLIED.get(path, set()))
    for path, (target, supplied) in BLOCKS.items():
        node = OmegaConf.select(cfg, path)
        if node is not None:
            _check_keys(path, node, supplied, target)
    _check_trainer_values(cfg.trainer)
    _check_seed(cfg.get("seed"))
    _check_figure(cfg)


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
    if dataclasses.is_dataclass(obj):
        return {f.name for f in dataclasses.fields(obj)}
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


def _check_keys(path: str, node: DictConfig, supplied: set[str], target: str | None = None) -> None:
    if not isinstance(node, DictConfig):
        raise ValueError(f"{path} must be a mapping of keys, got {node!r}")
    target = target or node["_target_"]
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
        if f"{path}.{key}" in MOVED or key in supplied:
            where = MOVED.get(f"{path}.{key}", "the job")
            raise ValueError(f"config key {path}.{key} is not read from here any more: set {where} instead")
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


def _check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")


def _check_figure(cfg: DictConfig) -> None:
    """``figure.group_by`` keys must exist and ``figure.draw`` name registered figures, before training."""
    figure = cfg.get("figure") or {}
    for key in figure.get("group_by") or []:
        if OmegaConf.select(cfg, str(key), default=_MISSING) is _MISSING:
            raise ValueError(f"figure.group_by names {key!r}, which is not a key of this config")
    from promptscale.report import check_figure_names, check_protocol

    check_figure_names(figure.get("draw") or [])
    for protocol in figure.get("protocols") or []:
        try:
            check_protocol(protocol)
        except ValueError as err:
            raise ValueError(f"figure.protocols: {err}") from None


_MISSING = object()
