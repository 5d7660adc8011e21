"""Provenance of a result row: the code, libraries, hardware and precision that computed it, and when."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path


def git_sha() -> str:
    """``git rev-parse HEAD`` of the repo holding this package, ``-dirty`` if it has changes.

    Returns ``"unknown"`` when git or the repository is unavailable; never raises.
    """
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0 or not sha.stdout.strip():
            return "unknown"
        out = sha.stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=30)
        if status.returncode == 0 and status.stdout.strip():
            out += "-dirty"
        return out
    except Exception:  # noqa: BLE001 - provenance must never fail a run
        return "unknown"


def now_iso() -> str:
    """Current UTC time as ISO-8601, e.g. ``2025-01-31T12:00:00.123456+00:00``."""
    return datetime.now(timezone.utc).isoformat()


def provenance(precision: str, device: str | None = None) -> dict:
    """What computed a row beyond the code: library versions, the accelerator and the precision.

    Two points of one curve are comparable only if these match (a kernel or a default changed
    between versions, bf16 vs fp32). Cheap (package metadata and a file read, no imports of
    the libraries) and never raises: an unknown piece reads ``"unknown"``.

    Args:
        precision: The trainer's precision, e.g. ``"32-true"`` or ``"bf16-mixed"``.
        device: Where the run computed: ``"cuda"``/``"gpu"``/``"cuda:1"`` names the GPU (via
            ``torch.cuda``), ``"cpu"`` the CPU model; ``None`` or ``"auto"``: the GPU if torch
            sees one, else the CPU.

    Returns:
        ``torch_version``, ``transformers_version``, ``peft_version``, ``lightning_version``,
        ``accelerator`` and ``precision``: flat, so they are columns of the store's frame.
    """
    out = {f"{name}_version": _version(name) for name in ("torch", "transformers", "peft", "lightning")}
    out["accelerator"] = _accelerator(str(device or "auto"))
    out["precision"] = str(precision)
    return out


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except Exception:  # noqa: BLE001 - provenance must never fail a run
        return "unknown"


def _accelerator(device: str) -> str:
    """The GPU's name for a CUDA run, else the CPU's model name."""
    try:
        if device.startswith(("cuda", "gpu", "auto")):
            import torch

            if torch.cuda.is_available():
                index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
                return torch.cuda.get_device_name(index)
        return cpu_name()
    except Exception:  # noqa: BLE001 - provenance must never fail a run
        return "unknown"


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux, else :mod:`platform`), e.g. ``"AMD EPYC 7763 64-Core Processor"``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
