"""Speed switches (the ``speed`` config block): how a job's steps run, never what they estimate.

Each switch was measured by ``promptscale-bench`` and is tested to keep results within a stated
tolerance (``tests/test_speed.py``); the block is therefore left out of the config hash
(``store.hashing.HASH_EXCLUDE``), like the logger or the progress bar; the run's saved config
keeps it:

* ``attention: direct`` (default): on CPU, training steps compute attention with dropout
  directly (fp32 scores and softmax, probabilities x values under the run's autocast) instead of
  SDPA's composite fallback, which upcasts everything to fp32 (``modules/attention.py``): 1.23-1.27x
  faster prompt-tuning steps at Small, batch 32. Same computation in ``32-true`` (within 1e-5);
  under ``bf16-mixed`` no further from fp32 than SDPA under bf16. No effect on GPUs or in
  evaluation.
* ``fused: true`` (default): T5's RMS norm and tanh-GELU as torch's fused kernels (``F.rms_norm``,
  ``F.gelu(approximate="tanh")``) instead of chains of elementwise ops (``modules/fused.py``):
  1.14x faster steps and 12% less activation memory at Small, batch 32. The same formulas:
  fp32 results within 1e-5; under bf16 no further from fp32 than the unfused ops. CPU and GPU.
* ``dropout: torch`` (default) or ``bits``: on CPU, masks from 31 random bits per element
  (``modules/dropout.py``): the same Bernoulli(1 - p) noise (to 2**-31), other draws of it, as
  another dropout stream would give. No clear win at the recipe batch (memory traffic, not random
  numbers, bounds it there): 1.09x on the benchmark's levers run, but 1.03x at 160 tokens and
  0.91x at 400 in a same-batch A/B (README, Performance), so off. No effect on GPUs.
* ``threads: auto`` (default): one torch intra-op thread for a backbone under 10M parameters
  (the tiny test and demo models), torch's own choice (every core) otherwise; ``OMP_NUM_THREADS``,
  when set, is obeyed; an integer sets the count. Ops on tiny models are too small to share
  between threads, and on a busy machine OpenMP threads wait at every parallel region for a
  descheduled sibling: on this project's shared 2-core machine a tiny-model demo job took 2.4x
  longer with 2 threads than with 1. The rule depends only on the config, so a resumed job runs
  with the thread count of its first attempt (float results depend on the count through the order
  of additions).
* ``checkpoint: false`` (default): activation checkpointing of every T5 block (its activations
  recomputed in the backward pass, with the same dropout draws: torch's checkpoint restores the
  generator), trading one more forward pass per step for most of the activation memory. At the
  recipe batch activations dominate (a prompt's 100 extra positions too), so prompt tuning needs as
  much memory as model tuning without it, 0.27x with it (Base, RTE lengths, ``promptscale-bench``
  memory section). Same numbers (1e-6).
* ``compile: false`` (default): ``torch.compile`` of the training forward pass (evaluation and
  generation stay eager). Measured at Small on this project's CPU: 69 s of compiling, then 1.33x
  faster steps, so it pays back after a few dozen steps of a long job. Off by default: the tests'
  and the demo's jobs are 40 steps, and it is unmeasured on GPUs here (README, Performance).
  Inductor draws dropout masks with aten's generator here (``fallback_random``), so a compiled
  step matches the eager one within float tolerance.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
from torch import nn

from promptscale.modules.attention import use_shared_bias_attention
from promptscale.modules.dropout import use_bits_dropout
from promptscale.modules.fused import use_fused_t5_ops

log = logging.getLogger(__name__)
ATTENTION = ("direct", "sdpa")
DROPOUT = ("bits", "torch")
TINY = 10_000_000  # parameters: below, one intra-op thread (``threads: auto``)
TORCH_THREADS = torch.get_num_threads()  # torch's own choice, before anyone changed it
_ATTRIBUTE = "speed_spec"  # where configure() leaves a job's switches on its method


@dataclass(frozen=True)
class SpeedSpec:
    """The ``speed`` config block (see the module docstring).

    Attributes:
        compile: ``torch.compile`` the training forward pass.
        attention: ``direct`` (CPU training attention computed directly) or ``sdpa`` (torch's).
        fused: T5's RMS norm and tanh-GELU as fused kernels.
        checkpoint: Recompute each block's activations in the backward pass (less memory, more compute).
        dropout: ``bits`` (CPU masks from random bits) or ``torch`` (``bernoulli_``).
        threads: torch intra-op threads: ``auto`` (see ``auto_threads``) or a count.
    """

    compile: bool = False
    attention: str = "direct"
    fused: bool = True
    checkpoint: bool = False
    dropout: str = "torch"
    threads: str | int = "auto"

    def __post_init__(self) -> None:
        for key in ("compile", "fused", "checkpoint"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"speed.{key} must be true or false, got {getattr(self, key)!r}")
        if self.attention not in ATTENTION:
            raise ValueError(f"speed.attention={self.attention!r} is not one of {ATTENTION}")
        if self.dropout not in DROPOUT:
            raise ValueError(f"speed.dropout={self.dropout!r} is not one of {DROPOUT}")
        count = isinstance(self.threads, int) and not isinstance(self.threads, bool)
        if not (self.threads == "auto" or (count and self.threads > 0)):
            raise ValueError(f"speed.threads must be auto or a positive integer, got {self.threads!r}")


def configure(method: nn.Module, spec: SpeedSpec) -> None:
    """Sets the process's torch threads and hands the other switches to the job's method, whose
    ``setup()`` applies them (``apply``)."""
    threads = spec.threads if isinstance(spec.threads, int) else auto_threads(method.model_params)  # the backbone
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        log.info("speed.threads=%s -> %d torch threads", spec.threads, threads)
    setattr(method, _ATTRIBUTE, spec)


def auto_threads(parameters: int) -> int | None:
    """One thread for a model of under ``TINY`` parameters, otherwise the count torch chose at start-up
    (whatever an earlier job of the process set); ``None`` (leave it) when ``OMP_NUM_THREADS`` says."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return 1 if parameters < TINY else TORCH_THREADS


def switches(method: nn.Module) -> SpeedSpec:
    """The switches ``configure`` gave ``method``; the defaults for a method built outside a job."""
    return getattr(method, _ATTRIBUTE, None) or SpeedSpec()


def apply(model: nn.Module, spec: SpeedSpec) -> None:
    """Applies ``spec`` to a backbone in place (idempotent: ``setup()`` runs once per stage)."""
    use_shared_bias_attention(model, direct=spec.attention == "direct", bits=spec.dropout == "bits")
    if spec.fused:
        use_fused_t5_ops(model)
    if spec.checkpoint:  # idempotent; non-reentrant: works when only a prompt (an input) trains
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if spec.dropout == "bits":
        use_bits_dropout(model)
    if spec.compile:
        compile_training_forward(model)


def compile_training_forward(model: nn.Module) -> None:
    """``torch.compile`` of ``model.forward`` for training calls only (grad enabled, train mode).

    Evaluation and generation call the same ``forward`` with caches, one token at a time, in
    shapes that would each compile anew, so they keep the eager one. Parameters and state-dict
    keys are untouched (the module is not wrapped), so checkpoints are the same.
    """
    if getattr(model.forward, "_promptscale_compiled", False):
        return
    import torch._inductor.config as inductor

    inductor.fallback_random = True  # dropout masks from aten's generator: compiled == eager within tolerance
    eager = model.forward
    compiled = torch.compile(eager)

    def forward(*args, **kwargs):
        if model.training and torch.is_grad_enabled():
            return compiled(*args, **kwargs)
        return eager(*args, **kwargs)

    forward._promptscale_compiled = True
    model.forward = forward
    log.info("speed.compile: training forward compiled with torch.compile (inductor)")
