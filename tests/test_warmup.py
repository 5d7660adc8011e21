"""Linear learning-rate warm-up (``recipe.optimizer.warmup_steps``) for every training method.

Measured inside a real Lightning fit of a tiny model, not on the schedule function alone: the
rate each optimizer step runs at, and the size of the first update (which must shrink by the
warm-up factor, so the optimizer really reads the scheduled rate).
"""

import lightning as L
import pytest
import torch
from hydra.utils import get_class

from promptscale.job import JobSpec, build_job
from promptscale.train import make_trainer

from conftest import METHODS, compose_config

STEPS = 5
TRAINING_METHODS = [m for m in METHODS if get_class(compose_config("/tmp", [f"method={m}"]).method._target_).trains]


class Recorder(L.Callback):
    """The rate of every optimizer step and the trainable tensors after the first one."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.after_first: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 1:  # not batch_idx: a tiny epoch is one batch
            self.after_first = [p.detach().clone() for p in pl_module.trainable_parameters()]


def fit(make_config, method: str, *overrides: str) -> tuple[Recorder, list[torch.Tensor], float]:
    """Trains ``STEPS`` steps with no evaluation; returns the recording, the initial tensors and the peak rate."""
    cfg = make_config(
        f"method={method}",
        f"recipe.max_steps={STEPS}",
        f"recipe.val_check_interval={STEPS}",
        "recipe.optimizer.weight_decay=0",  # the first update is then exactly proportional to the rate
        "+trainer.limit_val_batches=0",
        *overrides,
    )
    spec = JobSpec.from_config(cfg)
    job = build_job(spec)
    before = [p.detach().clone() for p in job.method.trainable_parameters()]
    recorder = Recorder()
    trainer = make_trainer(spec, job.method)
    trainer.callbacks.append(recorder)
    trainer.fit(job.method, datamodule=job.data)
    return recorder, before, spec.recipe.optimizer.lr


def first_update(recorder: Recorder, before: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(a - b).flatten() for a, b in zip(recorder.after_first, before)])


@pytest.mark.parametrize("method", TRAINING_METHODS)
def test_warmup_ramps_the_rate_linearly_then_holds_it(make_config, one_thread, method):
    warm, before, lr = fit(make_config, method, "recipe.optimizer.warmup_steps=3", "recipe.optimizer.schedule=constant")
    assert warm.rates == pytest.approx([lr / 3, 2 * lr / 3, lr, lr, lr], rel=1e-6)
    flat, flat_before, _ = fit(
        make_config, method, "recipe.optimizer.warmup_steps=0", "recipe.optimizer.schedule=constant"
    )
    assert flat.rates == pytest.approx([lr] * STEPS, rel=1e-6)  # 0: the paper's constant rate from step one
    # Same seed, same batch, same gradient: the first update is a third of the unwarmed one.
    assert all(torch.equal(a, b) for a, b in zip(before, flat_before))
    warm_update, flat_update = first_update(warm, before), first_update(flat, flat_before)
    assert flat_update.abs().max() > 0
    # (updates are differences of float32 weights of size ~1: exact to ~1e-7 each)
    assert (warm_update.norm() * 3 / flat_update.norm()).item() == pytest.approx(1.0, rel=1e-3)
    torch.testing.assert_close(warm_update * 3, flat_update, rtol=1e-3, atol=2e-6)


def test_warmup_then_linear_decay(make_config, one_thread):
    """Prefix tuning's linear schedule after a warm-up: up over 2 steps, then down to 0 at max_steps."""
    rec, _, lr = fit(
        make_config, "prefix_tuning", "recipe.optimizer.warmup_steps=2", "recipe.optimizer.schedule=linear"
    )
    # step 0, 1 warm up; step s >= 2 runs at (5 - s) / (5 - 2) of the peak
    assert rec.rates == pytest.approx([lr / 2, lr, lr, 2 * lr / 3, lr / 3], rel=1e-6)


def test_warmup_must_end_before_training_does(make_config):
    with pytest.raises(ValueError, match=r"recipe.optimizer.warmup_steps=5 must be >= 0 and below the training steps"):
        JobSpec.from_config(make_config(f"recipe.max_steps={STEPS}", "recipe.optimizer.warmup_steps=5"))
