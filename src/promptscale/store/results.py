"""Append-only JSON-lines results store.

Every finished run appends one row per (task, metric) to a single ``results.jsonl``. Figures,
tables and notebooks read only this store. The store is safe for many parallel jobs on one
file system: a run's rows are written with a single ``os.write`` on a file opened with
``O_APPEND``, under an exclusive ``fcntl.flock`` on a sidecar ``<file>.lock``, then fsynced,
so rows of different runs never interleave and a run's rows land all-or-nothing.

A row is a flat dict with at least :data:`ROW_FIELDS`; extra keys are kept.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported lazily: the training path does not need it.
    import pandas

ROW_FIELDS: tuple[str, ...] = (
    "run_id",
    "experiment",
    "method",
    "model",
    "total_params",
    "trainable_params",
    "task",
    "task_version",
    "split",
    "metric",
    "value",
    "seed",
    "config_hash",
    "git_sha",
    "timestamp",
    "wandb_run_id",
    "status",
)
"""Keys every row must have. ``status`` is ``"ok"`` for metric rows of a finished run."""


def _validate(row: Mapping[str, Any]) -> None:
    for key in ROW_FIELDS:
        if key not in row:
            raise ValueError(f"result row is missing required field {key!r}: {dict(row)!r}")


class ResultsStore:
    """Append-only JSON-lines file of result rows.

    Args:
        path: The ``.jsonl`` file. It and its parent folders are created on first append;
            a missing file reads as an empty store.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    # ------------------------------------------------------------------ writing

    def append(self, rows: list[dict], *, once: bool = False) -> bool:
        """Appends all rows of one run atomically.

        Args:
            rows: Rows of one run; each must hold every key of :data:`ROW_FIELDS` and be
                JSON-serialisable.
            once: Write nothing if a finished run of the same ``config_hash`` is already in
                the store. Checked under the lock, so two jobs of one config that ran in
                parallel (a sweep launched twice, or a multi-task job named once per task)
                are counted once.

        Returns:
            Whether the rows were written.

        Raises:
            ValueError: A row lacks a required field (nothing is written).
            TypeError: A row is not JSON-serialisable (nothing is written).
        """
        rows = list(rows)
        if not rows:
            return False
        for row in rows:
            _validate(row)
        # Serialise everything before taking the lock so a bad row writes nothing.
        data = "".join(json.dumps(r, sort_keys=True, allow_nan=True) + "\n" for r in rows)
        payload = data.encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            if once and any(self.has_config(h) for h in {r["config_hash"] for r in rows}):
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                self._repair_tail(fd)
                start = os.fstat(fd).st_size
                try:
                    written = os.write(fd, payload)
                    if written != len(payload):  # e.g. disk full: undo the partial batch
                        raise OSError(f"short write to {self.path}: {written} of {len(payload)} bytes")
                    os.fsync(fd)
                except BaseException:
                    os.ftruncate(fd, start)  # keep the batch all-or-nothing
                    raise
            finally:
                os.close(fd)
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)
        return True

    def _repair_tail(self, fd: int) -> None:
        """Under the lock: make the file end in a newline before appending.

        A crash (power loss) can leave a torn last line. Appending after it would glue the
        next run's first row onto the fragment and turn it into a malformed middle line. A
        fragment that is still a complete row only lacks its newline, which is added; any
        other fragment is moved to ``<file>.torn`` and cut off, with a warning.
        """
        size = os.fstat(fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(max(0, size - 1))
            if f.read(1) == b"\n":
                return
            # Scan backwards in blocks for the start of the last line.
            pos, tail, cut = size, b"", 0
            while pos > 0:
                step = min(1 << 16, pos)
                pos -= step
                f.seek(pos)
                tail = f.read(step) + tail
                nl = tail.rfind(b"\n")
                if nl != -1:
                    cut = pos + nl + 1
                    break
            fragment = tail[cut - pos :]
        try:
            row = json.loads(fragment.decode("utf-8"))
            _validate(row)
        except (ValueError, UnicodeDecodeError):
            torn = self.path.with_name(self.path.name + ".torn")
            with open(torn, "ab") as t:
                t.write(fragment + b"\n")
            os.ftruncate(fd, cut)
            warnings.warn(
                f"{self.path}: removed a torn last line ({len(fragment)} bytes, from an "
                f"interrupted write) before appending; saved it to {torn}",
                stacklevel=3,
            )
        else:
            os.write(fd, b"\n")

    # ------------------------------------------------------------------ reading

    def rows(self) -> list[dict]:
        """Reads all complete rows in file order.

        A torn or garbled *last* line (a crash mid-write) is reported with a warning naming
        the file and line number, and skipped. A malformed line anywhere else raises, so a
        complete row is never dropped silently. Blank lines are ignored.

        Returns:
            The rows, as dicts.

        Raises:
            ValueError: A line other than the last is not a valid row.
        """
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            raw = f.read()
        lines = raw.split(b"\n")
        # Index of the last non-blank line: only it may be torn.
        last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
        out: list[dict] = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
                if not isinstance(row, dict):
                    raise ValueError(f"expected a JSON object, got {type(row).__name__}")
                _validate(row)
            except (ValueError, UnicodeDecodeError) as e:
                where = f"{self.path}, line {i + 1}"
                if i == last:
                    warnings.warn(
                        f"{where}: ignoring a torn/garbled last line (interrupted write?): {e}",
                        stacklevel=2,
                    )
                    continue
                raise ValueError(f"{where}: malformed result row: {e}") from e
            out.append(row)
        return out

    def has_config(self, config_hash: str) -> bool:
        """Whether a finished run (a row with status ``"ok"``) has this config hash."""
        return any(r.get("config_hash") == config_hash and r.get("status") == "ok" for r in self.rows())

    def frame(self) -> pandas.DataFrame:
        """All rows as a DataFrame (columns :data:`ROW_FIELDS` first, then any extras)."""
        import pandas as pd

        rows = self.rows()
        extras = sorted({k for r in rows for k in r} - set(ROW_FIELDS))
        return pd.DataFrame(rows, columns=[*ROW_FIELDS, *extras])
