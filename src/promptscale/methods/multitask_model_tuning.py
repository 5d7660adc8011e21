"""Multi-task model tuning: one T5, all weights, trained on every selected task at once.

Lester et al. 2021's multi-task baseline, following T5 (Raffel et al. 2020): the training sets of
``data.tasks`` (``task=superglue`` for all eight) are mixed examples-proportionally with a cap,
``r_m = min(e_m, K) / sum_n min(e_n, K)`` (``data.mixing_cap``, K = 2^19), by the datamodule's
``MixtureSampler``; ReCoRD counts one example per gold answer because its training format
yields one example per answer. The task-name prefix is kept: it is the only thing that tells
one shared model which task an input belongs to. One run evaluates every task; the base keeps
each task's best dev evaluation (``self.best``) and, here, each task's best checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

from promptscale.methods.model_tuning import ModelTuning


class PerTaskBestCheckpoint(L.Callback):
    """Saves ``best-<task>.ckpt`` whenever that task's dev score improves.

    The checkpoint chosen on the mean dev score (``ModelCheckpoint`` on ``val/score``) is not
    each task's best: tasks peak at different steps in a mixture, and the paper selects the
    best checkpoint per task. This reads the improvements the module already recorded in
    ``best`` (after its ``on_validation_epoch_end``), so score and file never disagree.

    Files go next to the ``ModelCheckpoint``'s; a trainer without one (checkpointing off) gets
    none.
    """

    def __init__(self) -> None:
        self.saved: dict[str, int] = {}  # task -> step of the checkpoint on disk

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        checkpoint = trainer.checkpoint_callback
        if trainer.sanity_checking or trainer.state.fn != "fit" or checkpoint is None or not checkpoint.dirpath:
            return
        for task, best in sorted(pl_module.best.items()):
            if self.saved.get(task) != best.step:  # improved in this evaluation
                # every rank calls save_checkpoint, as Lightning requires; rank 0 writes
                trainer.save_checkpoint(Path(checkpoint.dirpath) / f"best-{task}.ckpt")
                self.saved[task] = best.step

    def state_dict(self) -> dict:
        return {"saved": dict(self.saved)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.saved = dict(state_dict.get("saved", {}))


class MultitaskModelTuning(ModelTuning):
    """Model tuning on a mixture of tasks, best checkpoint kept per task.

    Args:
        per_task_checkpoints: Keep ``best-<task>.ckpt`` for every task when training on more
            than one (each is a full model; with one task the usual best checkpoint is it).
        **kwargs: ``TextToTextModule`` arguments.
    """

    name = "multitask_model_tuning"
    task_prefix = True  # the shared model must be told the task
    multi_task = True  # a sweep's `joint_tasks` become this job's tasks

    def __init__(self, *, per_task_checkpoints: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.per_task_checkpoints = per_task_checkpoints

    def configure_callbacks(self) -> list[L.Callback]:
        """Adds the per-task checkpointing only where it differs from the usual best checkpoint."""
        if self.per_task_checkpoints and len(self.tasks) > 1:
            return [PerTaskBestCheckpoint()]
        return []
