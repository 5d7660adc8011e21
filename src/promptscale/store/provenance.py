"""Provenance of a result row: the code that computed it and when."""

from __future__ import annotations

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
