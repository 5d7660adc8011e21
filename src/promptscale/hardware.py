"""What the hardware runs natively, detected, never assumed: the ``trainer.precision=auto`` choice.

T5 was pre-trained in bfloat16 and fp16 overflows on T5 1.1, so the only question is bf16 mixed
precision or fp32. bf16 pays off only where matrix multiplies run natively in bf16: CUDA GPUs
that support it (A100, H100, ...) and CPUs with AVX512-BF16 or AMX-BF16 (about 2x and 8x fp32's
rate); elsewhere bf16 is emulated and slower than fp32. ``auto`` is resolved before the config is
hashed, so runs on different hardware never share a result by accident.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)
AUTO = "auto"
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bf16 matmuls


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags (Linux ``/proc/cpuinfo``); empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(accelerator: str) -> tuple[bool, str]:
    """Whether ``accelerator`` (``cpu``, ``gpu``/``cuda``, ``auto``) multiplies bf16 natively, and why."""
    if accelerator in ("gpu", "cuda", AUTO) and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{name} has bf16 tensor cores"
        return False, f"{name} has no native bf16"
    if accelerator in ("gpu", "cuda"):
        return False, "no CUDA device is visible"
    found = [flag for flag in BF16_CPU_FLAGS if flag in cpu_flags()]
    if found:
        return True, f"the CPU has {found[0]}"
    return False, f"the CPU has none of {', '.join(BF16_CPU_FLAGS)}"


def resolve_precision(precision: str, accelerator: str) -> str:
    """``trainer.precision`` as Lightning takes it: ``auto`` becomes ``bf16-mixed`` or ``32-true``."""
    if str(precision) != AUTO:
        return str(precision)
    native, why = native_bf16(str(accelerator))
    resolved = "bf16-mixed" if native else "32-true"
    log.info("trainer.precision=auto -> %s (%s)", resolved, why)
    return resolved
