"""Config hashing: which runs compute the same thing.

A run's identity is the SHA-256 of its resolved config without the keys that only say where or
how it is executed (output paths, loggers, callbacks, progress bars). Re-launching a sweep skips
every config whose hash has finished rows in the store.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

HASH_EXCLUDE: tuple[str, ...] = ("paths", "logger", "callbacks", "hydra", "results", "wandb", "figure", "speed")
"""Top-level config keys that say where/how a run is executed, not what it computes."""

TRAINER_HASH_EXCLUDE: tuple[str, ...] = (
    "enable_progress_bar",
    "enable_model_summary",
    "log_every_n_steps",
    "default_root_dir",
)
"""``trainer`` keys that do not change results."""


def _plain(config: Any) -> Any:
    """Converts an OmegaConf container to plain Python; leaves anything else alone."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        return config
    if isinstance(config, (DictConfig, ListConfig)):
        return OmegaConf.to_container(config, resolve=True)
    return config


def config_hash(config: dict) -> str:
    """Stable hash of a plain nested config.

    The SHA-256 of the canonical JSON (sorted keys, no whitespace), first 16 hex digits. Key
    order does not matter; any value change does. Strip run machinery first with
    :func:`hashable_config`.

    Args:
        config: Nested dict/list of JSON scalars (an OmegaConf container is converted).

    Raises:
        TypeError: The config holds a value JSON cannot represent.
    """
    canonical = json.dumps(_plain(config), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def hashable_config(config: dict) -> dict:
    """Copy of ``config`` without keys that do not change results.

    Drops the top-level keys in :data:`HASH_EXCLUDE` and the ``trainer`` keys in
    :data:`TRAINER_HASH_EXCLUDE`. The input is not modified.
    """
    config = copy.deepcopy(_plain(config))
    out = {k: v for k, v in config.items() if k not in HASH_EXCLUDE}
    trainer = out.get("trainer")
    if isinstance(trainer, Mapping):
        out["trainer"] = {k: v for k, v in trainer.items() if k not in TRAINER_HASH_EXCLUDE}
    return out
