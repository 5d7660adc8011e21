"""Jobs that survive: a resumable "last" checkpoint per config, save-and-exit on preemption, and
a stop on a non-finite loss that keeps the last good checkpoint.

Where: ``<paths.root>/checkpoints/<config_hash>/last.ckpt``. Keyed by what the job computes,
not by its Hydra output folder, so a re-launched sweep (new timestamped folders) or a requeued
job finds it. The best-dev checkpoint stays in the job's own folder (``callbacks.checkpoint``).
The folder is deleted once the job's rows are in the results store; one left behind by a job
killed in between is removed at the next launch (:func:`remove_orphans`).

Damage: each save writes a uniquely named temporary file and renames it over ``last.ckpt``,
keeping the one before as ``last.prev.ckpt``. Before resuming, a checkpoint is checked (a
truncated or corrupted zip archive fails): a damaged one is moved aside as
``last.ckpt.corrupt-<time>`` with a warning, and the job resumes from the previous one, or
starts fresh, instead of failing on every relaunch.

What a resume restores, so that it ends with the same numbers as an unbroken run:
trainer progress, optimizer state, the method's per-task best (``promptscale_best``), the data
position (``distributed.ResumableDataLoader``: the epoch's order is a pure function of (seed,
epoch) and the consumed batches are skipped) and randomness: dropout's RNG is re-seeded before
every training batch from (seed, batch index, rank), like T5X's per-step RNG folding. A
resumed run thus draws the same masks as an unbroken one with nothing to save, on any
number of ranks, whatever else (evaluation, loader restarts) drew numbers in between.

Requeueing has exactly ONE owner: submitit (``hydra/launcher=submitit_slurm``,
``max_num_timeout`` requeues). Lightning's own SLURM auto-requeue (a SIGUSR1 handler that saves
an ``hpc_ckpt`` in the job folder and calls ``scontrol requeue``) is disabled
(:func:`cluster_plugins`): two owners would requeue twice, and its checkpoint lands in the
per-job folder that a re-launched sweep never looks in. Our part is only to save and exit at a
clean step boundary; on submitit's own signal (USR2) we then hand over to submitit's handler,
which requeues the job and exits. Elsewhere we exit with code 128 + signal, and re-running
the same command (or the scheduler's requeue) resumes.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import time
import uuid
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

log = logging.getLogger(__name__)
LAST = "last.ckpt"
PREV = "last.prev.ckpt"  # the save before last.ckpt: the fallback if last.ckpt is damaged
TMP = LAST + ".tmp-"  # + a name unique to one job attempt (shared by its ranks)
CRC_LIMIT = 2 << 30  # checkpoints up to this size get a full CRC check before resuming


class Preempted(SystemExit):
    """The job saved its checkpoint on a preemption signal and exits (code 128 + signal)."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(128 + signum)
        self.signum, self.step = signum, step

    def __str__(self) -> str:
        return f"preempted by {signal.Signals(self.signum).name} at step {self.step}; resume by re-running"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the last finite checkpoint is kept."""

    def __init__(self, step: int, loss: float, checkpoint: Path | None) -> None:
        kept = f"last good checkpoint: {checkpoint}" if checkpoint else "no checkpoint was saved before it"
        super().__init__(
            f"non-finite training loss ({loss}) at step {step}; stopped before the update "
            f"({kept}). Lower method.lr, or use trainer.precision=32-true / bf16-mixed."
        )
        self.step, self.loss = step, loss


def cluster_plugins() -> list:
    """Trainer plugins: on SLURM, Lightning's environment without its auto-requeue (see above)."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def step_seed(seed: int, batch: int, rank: int) -> int:
    """A well-mixed 32-bit seed for one training batch on one rank."""
    return int(np.random.SeedSequence([seed, batch, rank]).generate_state(1)[0])


class ResumeCheckpoint(L.Callback):
    """Saves ``last.ckpt`` every ``every_n_steps`` and on a preemption signal, guards the loss.

    Args:
        dirpath: Folder of all jobs' resume checkpoints; each job uses ``dirpath/<config hash>``
            (set by :meth:`bind`).
        seed: The run's seed, from which dropout's per-batch seeds are derived.
        every_n_steps: Optimizer steps between saves of ``last.ckpt``.
        signals: Signal names that mean "save and exit": the scheduler's warning (SIGTERM on
            preemption, SIGUSR1 from ``sbatch --signal``, SIGUSR2 from submitit).
    """

    def __init__(
        self,
        dirpath: str,
        seed: int = 0,
        every_n_steps: int = 500,
        signals: Sequence[str] = ("SIGTERM", "SIGUSR1", "SIGUSR2"),
    ) -> None:
        if every_n_steps <= 0:
            raise ValueError(f"callbacks.resume.every_n_steps must be positive, got {every_n_steps}")
        valid = {s.name for s in signal.Signals}
        unknown = [s for s in signals if s not in valid]
        if unknown:
            raise ValueError(f"callbacks.resume.signals: unknown signal(s) {unknown}")
        self.root, self.seed, self.every_n_steps = Path(dirpath), seed, every_n_steps
        self.signals = [signal.Signals[s] for s in signals]
        self.dir: Path | None = None
        self._received: int | None = None
        self._previous: dict[int, Any] = {}
        self._pending = False
        self._saved_step: int | None = None
        self._tmp: str | None = None  # this attempt's temporary name, agreed across ranks

    # -- where -------------------------------------------------------------------------------
    def bind(self, config_hash: str) -> None:
        """Points this callback at the job's own folder, ``dirpath/<config_hash>``."""
        self.dir = self.root / config_hash

    @property
    def last_path(self) -> Path:
        if self.dir is None:
            raise RuntimeError("ResumeCheckpoint.bind(config_hash) was not called")
        return self.dir / LAST

    def resume_path(self) -> str | None:
        """The checkpoint to resume from, if an earlier attempt of this job left a sound one.

        ``last.ckpt``, else ``last.prev.ckpt`` (also after a kill between the two renames of a
        save), else ``last.ckpt.old`` (a sharded save killed mid-swap by older code). A damaged
        one is moved aside as ``<name>.corrupt-<time>`` with a warning naming it, so that a
        relaunch resumes from the one before or starts fresh instead of failing every time.
        """
        for path in (self.last_path, self.last_path.with_name(PREV), self.last_path.with_name(LAST + ".old")):
            if not path.exists():
                continue
            damage = checkpoint_damage(path)
            if damage is None:
                return str(path)
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            try:
                os.replace(path, aside)
            except OSError as e:
                aside = Path(f"(not moved: {e})")
            warnings.warn(f"{path}: damaged checkpoint ({damage}); moved to {aside}", stacklevel=2)
        return None

    def cleanup(self) -> None:
        """Deletes the job's resume folder: its rows are in the store; nothing will resume it.

        Only ``dirpath/<config hash>``, and in it nothing another process is writing (its
        temporary file, if a twin job still runs): that one and the folder then stay for
        :func:`remove_orphans`. Tolerates files or the folder vanishing meanwhile.
        """
        if self.dir is None:
            return
        try:
            entries = list(self.dir.iterdir())
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith(TMP) and entry.name != self._tmp:
                continue  # another process's save in progress
            _remove(entry)
        try:
            self.dir.rmdir()
        except OSError:
            pass

    # -- signals -----------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._received, self._pending = None, False
        if trainer.global_step:
            log.info("resumed from %s at step %d", trainer.ckpt_path, trainer.global_step)
        # After Lightning registered its own handlers (fit setup), so these win; restored at
        # the end of fit (by us and by Lightning's signal connector).
        for signum in self.signals:
            try:
                self._previous[signum] = signal.signal(signum, self._on_signal)
            except ValueError:  # not the main thread: the scheduler's SIGKILL is all we get
                break

    def _on_signal(self, signum: int, frame) -> None:
        # Only a flag: a handler runs between any two bytecodes (mid optimizer step, inside a
        # logging call holding its lock), so saving here would be unsafe.
        self._received = signum

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    # -- the step boundary -------------------------------------------------------------------
    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        index = trainer.fit_loop.total_batch_idx  # restored on resume, unlike a local counter
        s = step_seed(self.seed, index, trainer.global_rank)
        torch.manual_seed(s)  # CPU and every CUDA device
        np.random.seed(s)
        random.seed(s)

    def on_before_backward(self, trainer: L.Trainer, pl_module, loss: torch.Tensor) -> None:
        # Before backward and the update, so the weights (and last.ckpt) stay finite. Agreed
        # across ranks: one rank stopping alone would leave the others in an all-reduce.
        bad = not bool(torch.isfinite(loss.detach()).all())
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise NonFiniteLossError(
                trainer.global_step + 1,
                float(loss.detach().float().mean()),
                self.last_path if self.last_path.exists() else None,
            )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.fit_loop.epoch_loop._should_accumulate():
            return  # mid gradient accumulation: the summed gradients are not in a checkpoint
        preempt = self._agreed_signal(trainer)
        if not (preempt or trainer.global_step % self.every_n_steps == 0):
            return
        if _validation_follows(trainer):
            # Saved after this step's evaluation instead: a checkpoint from before it would
            # resume past the evaluation (Lightning skips it) and lose its dev score.
            self._pending = True
            return
        self._save(trainer)
        if preempt:
            self._exit(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        preempt = self._agreed_signal(trainer)
        if self._pending or preempt:
            self._pending = False
            self._save(trainer)
        if preempt:
            self._exit(trainer)

    def _agreed_signal(self, trainer: L.Trainer) -> bool:
        return trainer.strategy.reduce_boolean_decision(self._received is not None, all=False)

    def _save(self, trainer: L.Trainer) -> None:
        if self._saved_step == trainer.global_step and self.last_path.exists():
            return
        path = self.last_path
        if self._tmp is None:  # one name per attempt: two jobs never write the same file
            self._tmp = TMP + trainer.strategy.broadcast(uuid.uuid4().hex[:12])
        tmp = path.with_name(self._tmp)
        module = trainer.lightning_module
        module.saving_for_resume = True  # full training state, not a slimmed artifact
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(tmp)  # every rank: sharded strategies write their own shard
        finally:
            module.saving_for_resume = False
        trainer.strategy.barrier("resume-save")
        if trainer.is_global_zero:
            try:
                _rotate(tmp, path)  # a SIGKILL mid-write leaves the previous last.ckpt intact
                log.info("saved %s at step %d", path, trainer.global_step)
            except FileNotFoundError:  # the folder was removed: another job finished this config
                log.warning("%s vanished while saving (another job finished this config?); not saved", path.parent)
        trainer.strategy.barrier("resume-saved")
        self._saved_step = trainer.global_step

    def _exit(self, trainer: L.Trainer) -> None:
        signum = self._received or signal.SIGTERM  # a rank that only heard of it from another
        previous = self._previous.get(signum)
        self._restore_handlers()
        log.warning(
            "%s: saved %s at step %d, exiting so the job can be requeued",
            signal.Signals(signum).name,
            self.last_path,
            trainer.global_step,
        )
        if trainer.is_global_zero and _is_submitit_handler(previous):
            previous(signum, None)  # submitit requeues this job, then exits the process
        raise Preempted(signum, trainer.global_step)


def _validation_follows(trainer: L.Trainer) -> bool:
    """Whether Lightning evaluates right after the current training batch."""
    loop = trainer.fit_loop.epoch_loop
    return bool(loop._should_check_val_fx(trainer.fit_loop._data_fetcher)) and not loop._skip_next_val


def _is_submitit_handler(handler: Any) -> bool:
    owner = getattr(handler, "__self__", None)
    return callable(handler) and type(owner).__module__.startswith("submitit")


def _remove(path: Path) -> None:
    """Deletes a file or folder that may vanish meanwhile."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _rotate(tmp: Path, last: Path) -> None:
    """``last`` -> ``last.prev.ckpt``, then ``tmp`` -> ``last``: each step atomic (files or folders)."""
    prev = last.with_name(PREV)
    if last.exists():
        if prev.is_dir():
            shutil.rmtree(prev)  # os.replace cannot replace a non-empty folder
        os.replace(last, prev)
    os.replace(tmp, last)


def checkpoint_damage(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be loaded, or ``None`` if it looks sound.

    ``torch.save`` writes a zip archive: a truncated one has no central directory, and each
    member must lie within the file; up to :data:`CRC_LIMIT` bytes, every member's CRC is
    checked too. Anything else is loaded with ``torch.load`` on the CPU. A folder (a sharded
    checkpoint) only has to hold files.
    """
    try:
        if path.is_dir():
            return None if any(p.is_file() for p in path.rglob("*")) else "empty folder"
        size = path.stat().st_size
        if not zipfile.is_zipfile(path):
            torch.load(path, map_location="cpu", weights_only=False)
            return None
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if not members or any(m.header_offset + m.compress_size > size for m in members):
                return "zip archive truncated"
            bad = archive.testzip() if size <= CRC_LIMIT else None
            return f"CRC mismatch in {bad}" if bad else None
    except Exception as e:  # noqa: BLE001 - any failure to read it means: do not resume from it
        return f"{type(e).__name__}: {e}"


def remove_orphans(checkpoint_root: str | Path, store) -> list[Path]:
    """Deletes resume folders of configs the store already has: a job killed between its append
    and its cleanup leaves one behind. Call once per launch, before any job starts.

    Args:
        checkpoint_root: The folder of all jobs' resume folders (``callbacks.resume.dirpath``).
        store: The results store (anything with ``has_config(hash)``).

    Returns:
        The folders removed.
    """
    root, removed = Path(checkpoint_root), []
    try:
        folders = [p for p in root.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return removed
    for folder in folders:
        if store.has_config(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            log.info("removed %s: its config is finished", folder)
    return removed
