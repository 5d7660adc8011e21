"""Optimizers and learning-rate schedules of the recipes, built from one typed spec.

``recipe.optimizer`` in the config becomes an :class:`OptimizerSpec` (validated before any data
is read) and every training method builds its optimizer with :func:`build_optimizer`, so an
optimizer or schedule is chosen in the config, never by which method file is used:

* ``adafactor``: T5X's settings (Raffel et al. 2020; Lester et al. 2021): factored second
  moments, decay rate 0.8, update clipping 1.0, no momentum, no parameter scaling, no relative
  step, a constant rate unless a schedule says otherwise.
* ``adamw``: torch's AdamW (Li & Liang 2021 tuned prefix tuning with it; Hu et al. 2021 LoRA).

Weight decay is always *per step*, as T5X applies it (``p -= weight_decay * p``): HF's
Adafactor and torch's AdamW multiply it by the learning rate, so it is divided by ``lr`` for
them (under a schedule their decay then follows the rate; ours stays at ``weight_decay``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

OPTIMIZERS = ("adafactor", "adamw")
SCHEDULES = ("constant", "linear")
IMPLEMENTATIONS = ("foreach", "hf")  # Adafactor: ours, vectorised (optim/adafactor.py), or transformers'

ADAFACTOR_DEFAULTS = {"decay_rate": 0.8, "clip_threshold": 1.0}  # T5X


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer and its schedule (``recipe.optimizer``).

    Attributes:
        name: ``adafactor`` or ``adamw``.
        lr: Peak learning rate.
        weight_decay: Decay per step, not multiplied by the learning rate (T5X convention).
        schedule: ``constant`` (the paper's recipes) or ``linear`` (decays to 0 at the last step,
            Li & Liang's prefix-tuning schedule).
        warmup_steps: Steps of linear warm-up from ``lr / warmup_steps`` to ``lr``; 0 (default)
            keeps the paper's constant rate from the first step.
        decay_rate: Adafactor's second-moment decay exponent (``None``: T5X's 0.8).
        clip_threshold: Adafactor's update clipping threshold (``None``: T5X's 1.0).
        implementation: Adafactor's code: ``foreach`` (ours, vectorised over parameters of one
            shape, 2-3x faster per step on CPU) or ``hf`` (transformers', a Python loop per
            parameter); the same updates within 1e-6 (``tests/test_adafactor.py``).
        total_steps: Training steps the schedule spans; set from ``recipe.max_steps`` by the job.
    """

    name: str = "adafactor"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    decay_rate: float | None = None
    clip_threshold: float | None = None
    implementation: str = "foreach"
    total_steps: int = 1

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"recipe.optimizer.name={self.name!r} is not one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"recipe.optimizer.schedule={self.schedule!r} is not one of {SCHEDULES}")
        if not self.lr > 0:
            raise ValueError(f"recipe.optimizer.lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"recipe.optimizer.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_steps < max(self.total_steps, 1):
            raise ValueError(
                f"recipe.optimizer.warmup_steps={self.warmup_steps} must be >= 0 and below the "
                f"training steps ({self.total_steps})"
            )
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"recipe.optimizer.implementation={self.implementation!r} is not one of {IMPLEMENTATIONS}")
        if self.name != "adafactor":
            given = [k for k in ADAFACTOR_DEFAULTS if getattr(self, k) is not None]
            if given:
                raise ValueError(f"recipe.optimizer.{given[0]} is an Adafactor setting; {self.name} has none")

    def setting(self, key: str) -> float:
        """An Adafactor setting, T5X's default when unset."""
        value = getattr(self, key)
        return ADAFACTOR_DEFAULTS[key] if value is None else value

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` for the update of (0-based) optimizer step ``step``."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "linear":
            return max(0.0, (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1))
        return 1.0


def build_optimizer(spec: OptimizerSpec, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer | dict:
    """The optimizer over ``params`` and, unless the rate is constant, its per-step scheduler.

    Returns what Lightning's ``configure_optimizers`` takes: the optimizer alone, or
    ``{"optimizer", "lr_scheduler"}`` with a step-wise ``LambdaLR``.
    """
    optimizer = _adafactor(spec, params) if spec.name == "adafactor" else _adamw(spec, params)
    if spec.schedule == "constant" and spec.warmup_steps == 0:
        return optimizer
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, spec.lr_factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _adafactor(spec: OptimizerSpec, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if spec.implementation == "foreach":
        from promptscale.optim.adafactor import Adafactor

        return Adafactor(
            params,
            lr=spec.lr,
            weight_decay=spec.weight_decay,
            decay_rate=spec.setting("decay_rate"),
            clip_threshold=spec.setting("clip_threshold"),
        )
    from transformers.optimization import Adafactor as HFAdafactor

    return HFAdafactor(
        params,
        lr=spec.lr,
        weight_decay=spec.weight_decay / spec.lr,
        decay_rate=-spec.setting("decay_rate"),
        clip_threshold=spec.setting("clip_threshold"),
        beta1=None,
        scale_parameter=False,
        relative_step=False,
        warmup_init=False,
    )


def _adamw(spec: OptimizerSpec, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay / spec.lr)
