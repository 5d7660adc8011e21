"""Weights & Biases, set up so that it can never be the reason a run fails.

Offline by default (no account, no network); ``mode=online`` needs credentials. If W&B cannot
start (unreachable server, missing key, broken install) the run continues without it and says
so. Secrets are never copied into the logged config.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
MODES = ("offline", "online", "disabled")
_SECRET = re.compile(r"(api[_-]?key|token|secret|password)", re.IGNORECASE)


@dataclass
class WandbSettings:
    """What ``conf/logger/*.yaml`` configures.

    Attributes:
        project: W&B project.
        entity: W&B team or user; ``None`` for the default.
        mode: ``offline`` (default, syncable later with ``wandb sync``), ``online`` or ``disabled``.
        tags: Extra tags; every run is also tagged with its method, model and tasks.
        api_key: W&B key for ``online``; ``None`` reads ``WANDB_API_KEY`` / ``wandb login``. Set
            it only as ``${oc.env:WANDB_API_KEY}``: Hydra saves configs unresolved, and the
            resolved value is redacted from everything logged.
    """

    project: str = "promptscale"
    entity: str | None = None
    mode: str = "offline"
    tags: list[str] = field(default_factory=list)
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"logger.mode={self.mode!r} is not one of {MODES}")

    def make_logger(self, *, name: str, group: str, save_dir: str, tags: list[str], config: dict[str, Any]):
        """A started ``WandbLogger``, or ``None`` when disabled or W&B cannot start."""
        if self.mode == "disabled":
            return None
        try:
            from lightning.pytorch.loggers import WandbLogger

            os.makedirs(save_dir, exist_ok=True)
            logger = WandbLogger(
                project=self.project,
                entity=self.entity,
                name=name,
                group=group,
                save_dir=save_dir,
                offline=self.mode == "offline",
                tags=sorted(set(self.tags) | set(tags)),
                settings=_settings(self.api_key),
            )
            logger.experiment.config.update(redact(config), allow_val_change=True)  # starts the run now
            return logger
        except Exception as err:  # noqa: BLE001 - W&B must never fail a run
            log.warning("W&B could not start (%s: %s); continuing without it", type(err).__name__, err)
            return None


def _settings(api_key: str | None = None):
    import wandb

    return wandb.Settings(init_timeout=60, silent=True, **({"api_key": api_key} if api_key else {}))


def finish(logger, exit_code: int) -> None:
    """Closes the job's W&B run, marking it failed when the job failed."""
    if logger is None:
        return
    try:
        logger.experiment.finish(exit_code=exit_code)
    except Exception as err:  # noqa: BLE001
        log.warning("W&B run did not finish cleanly: %s", err)


def run_id(logger) -> str | None:
    try:
        return logger.experiment.id if logger is not None else None
    except Exception:  # noqa: BLE001
        return None


def redact(value: Any, keys: bool = True) -> Any:
    """Copies ``value`` with credentials replaced by ``***``.

    Masks the value of every key that looks like a credential (``keys=True``) and, under any
    key, every string holding the value of a credential environment variable (``WANDB_API_KEY``,
    ``HF_TOKEN``, ...), e.g. one interpolated with ``${oc.env:...}`` into an innocent-looking key.
    """
    return _redact(value, keys, _secret_values())


def _secret_values() -> set[str]:
    return {v for k, v in os.environ.items() if _SECRET.search(k) and len(v) >= 8}


def _redact(value: Any, keys: bool, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: "***" if keys and _SECRET.search(str(k)) else _redact(v, keys, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v, keys, secrets) for v in value]
    if isinstance(value, str) and any(s in value for s in secrets):
        for s in secrets:
            value = value.replace(s, "***")
    return value
