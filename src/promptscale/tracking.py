"""Experiment trackers (``conf/logger``), set up so that none can ever be the reason a run fails.

* ``WandbSettings`` (``logger=wandb``, the default): Weights & Biases, offline by default (no
  account, no network); ``mode=online`` needs credentials.
* ``CsvSettings`` (``logger=csv``): Lightning's ``CSVLogger``, ``<run folder>/csv/<run name>/``
  holding ``metrics.csv`` and ``hparams.yaml`` (the resolved config).
* ``TensorBoardSettings`` (``logger=tensorboard``): Lightning's ``TensorBoardLogger``, event files
  under ``<run folder>/tensorboard/<run name>/`` (needs ``tensorboard`` or ``tensorboardX``:
  ``pip install -e ".[loggers]"``).
* ``logger=none``: W&B disabled; the results store still gets every row.

Every one has the same interface: ``make_logger(name=, group=, save_dir=, tags=, config=)``
returns a started Lightning logger (or ``None``), and :func:`run_id` / :func:`finish` take any
of them. The metric names are the method's own (``val/<task>/<metric>``, ``val/score``,
``val_rank/...``, ``train/loss``), whichever logger writes them. If a tracker cannot start
(unreachable server, missing key, broken install) the run continues without it and says so.
Secrets are never copied into the logged config.
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
    """Weights & Biases (``conf/logger/wandb.yaml``, ``none.yaml``).

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


@dataclass
class CsvSettings:
    """Lightning's ``CSVLogger`` (``conf/logger/csv.yaml``): plain files, no extra dependency.

    Attributes:
        flush_logs_every_n_steps: Rows buffered before ``metrics.csv`` is rewritten (it is also
            written when the job ends, finished or failed).
    """

    flush_logs_every_n_steps: int = 100

    def make_logger(self, *, name: str, group: str, save_dir: str, tags: list[str], config: dict[str, Any]):
        """A ``CSVLogger`` writing ``<save_dir>/csv/<name>/``, or ``None`` if it cannot start."""

        def build():
            from lightning.pytorch.loggers import CSVLogger

            return CSVLogger(save_dir, name="csv", version=name, flush_logs_every_n_steps=self.flush_logs_every_n_steps)

        return _started(build, "CSV logger", group, tags, config)


@dataclass
class TensorBoardSettings:
    """Lightning's ``TensorBoardLogger`` (``conf/logger/tensorboard.yaml``).

    Attributes:
        log_graph: Also write the model graph (slow for T5; off by default).
    """

    log_graph: bool = False

    def make_logger(self, *, name: str, group: str, save_dir: str, tags: list[str], config: dict[str, Any]):
        """A ``TensorBoardLogger`` writing ``<save_dir>/tensorboard/<name>/``, or ``None`` if it cannot start."""

        def build():
            from lightning.pytorch.loggers import TensorBoardLogger

            return TensorBoardLogger(
                save_dir, name="tensorboard", version=name, log_graph=self.log_graph, default_hp_metric=False
            )

        return _started(build, "TensorBoard logger", group, tags, config)


def _started(build, what: str, group: str, tags: list[str], config: dict[str, Any]):
    """A file logger built by ``build`` with the redacted config logged as its hyperparameters."""
    try:
        logger = build()
        logger.log_hyperparams(redact({**config, "group": group, "tags": sorted(set(tags))}))
        return logger
    except Exception as err:  # noqa: BLE001 - a tracker must never fail a run
        log.warning("%s could not start (%s: %s); continuing without it", what, type(err).__name__, err)
        return None


def _settings(api_key: str | None = None):
    import wandb

    return wandb.Settings(init_timeout=60, silent=True, **({"api_key": api_key} if api_key else {}))


def finish(logger, exit_code: int) -> None:
    """Closes the job's tracker: a W&B run marked failed when the job failed; files flushed."""
    if logger is None:
        return
    try:
        if is_wandb(logger):
            logger.experiment.finish(exit_code=exit_code)
        else:  # CSV / TensorBoard: write what is buffered (Lightning does so only after a clean fit)
            logger.finalize("success" if exit_code == 0 else "failed")
    except Exception as err:  # noqa: BLE001
        log.warning("%s did not finish cleanly: %s", type(logger).__name__, err)


def run_id(logger) -> str | None:
    """The W&B run id (rows' ``wandb_run_id``); ``None`` for other trackers, whose folder is the run name."""
    try:
        return logger.experiment.id if is_wandb(logger) else None
    except Exception:  # noqa: BLE001
        return None


def is_wandb(logger) -> bool:
    """Whether ``logger`` is Lightning's W&B logger."""
    return type(logger).__name__ == "WandbLogger"  # by name: importing wandb costs seconds


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
