"""The results store: one immutable file per finished run, written without any lock.

Every finished run's rows (one per task x metric) are written as ONE file, atomically: to a
unique temporary name in the store folder, fsynced, then published under its final name with
``os.link`` (a finished config: fails if the name exists, so the first run of a config wins)
or ``os.rename`` (anything else; names are unique). The store is the union of those files::

    results.jsonl                 the configured path: a JSON-lines *export* of the store
    results.d/_legacy.jsonl       rows of a store written before this layout, imported once
    results.d/<hash>.ok.jsonl     the finished run of a config (``append(once=True)``)
    results.d/<hash>.<status>.<time>-<rand>.jsonl   other runs, e.g. diverged ones
    results.d/_batch.<time>-<rand>.jsonl            rows of several configs appended together
    results.d/quarantine/         damaged files and lines, moved aside with a warning

Why no lock: ``flock`` is unreliable or off on many NFS/Lustre mounts, and SLURM arrays write
from many nodes at once. A reader never sees half a file (it is published by a rename or a
link of a complete, fsynced file), writers never touch each other's files, and "is this config
finished?" is a ``stat`` of ``<hash>.ok.jsonl``: cheap for sweeps of thousands of runs.

``results.jsonl`` stays what figures, notebooks and ``pandas.read_json(..., lines=True)``
read: each append also appends its rows there (a convenience export that a crash or a race on
NFS can leave short). :meth:`ResultsStore.compact` rewrites it atomically from the store.
A store written by older code (only ``results.jsonl``) reads as before and is left unchanged
until the first append imports its rows into ``_legacy.jsonl``; from then on ``results.jsonl``
is only the export. Do not run older promptscale versions against a store after that.

Damage never blocks readers or later runs: a line that is not a JSON object with every field
of :data:`ROW_FIELDS` (garbage, a torn write, non-UTF-8 bytes) is copied to ``quarantine/``
with a warning naming the file and line and skipped; a damaged per-run file is moved there
whole (its run is incomplete, so its config counts as unfinished and trains again).

Filesystem assumptions: ``rename`` and ``link`` within one directory are atomic and ``link``
fails on an existing name (POSIX local filesystems, NFSv3/v4, Lustre, GPFS, BeeGFS); NFS gives
close-to-open consistency (a file opened after its writer closed it shows all its bytes). A
directory listing or failed lookup may be cached for a few seconds on NFS (``acdirmax``), so
another node's finished run can stay unseen that long by :meth:`ResultsStore.has_config`; the
link still keeps its rows once. Where hard links are unsupported (some FUSE/SMB mounts),
publishing falls back to rename: a config's file then holds the rows of the *last* of two
racing runs, still exactly once, while the export may list both until compacted.

A row is a flat dict with at least :data:`ROW_FIELDS`; extra keys are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptscale.store.atomic import TMP_PREFIX, fsync_dir, publish, safe_name, stamp, write_temp

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

LEGACY = "_legacy.jsonl"
QUARANTINE = "quarantine"


def _validate(row: Mapping[str, Any]) -> None:
    for key in ROW_FIELDS:
        if key not in row:
            raise ValueError(f"result row is missing required field {key!r}: {dict(row)!r}")


def _parse(data: bytes) -> tuple[list[tuple[bytes, dict]], list[tuple[int, bytes, str]]]:
    """Splits JSON lines into valid rows ``(line, row)`` and bad lines ``(number, line, why)``."""
    good, bad = [], []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))  # UnicodeDecodeError is a ValueError
            if not isinstance(row, dict):
                raise ValueError(f"expected a JSON object, got {type(row).__name__}")
            _validate(row)
        except (ValueError, RecursionError) as e:
            bad.append((number, line, str(e)[:300]))
        else:
            good.append((line, row))
    return good, bad


def _dump(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True, allow_nan=True) + "\n" for r in rows).encode("utf-8")


class ResultsStore:
    """Result rows of many runs: append without locks, read as one list.

    Args:
        path: The ``.jsonl`` export; the store's files live in the folder beside it with the
            suffix ``.d`` (``results.jsonl`` -> ``results.d/``). Both are created on first
            append; a missing store reads as empty.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.dir = self.path.with_name(self.path.stem + ".d" if self.path.suffix != ".d" else self.path.name + ".d")
        self._cache: dict[str, tuple[tuple[int, int, int], list[dict] | None]] = {}

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    # ------------------------------------------------------------------ writing

    def append(self, rows: list[dict], *, once: bool = False) -> bool:
        """Adds the rows of one run, all or nothing, with no lock.

        Args:
            rows: Rows of one run; each must hold every key of :data:`ROW_FIELDS` and be
                JSON-serialisable.
            once: The rows are one config's finished run: write nothing if the store already
                has one. Decided by an exclusive ``link``, so of two jobs of one config finishing
                at once (a sweep launched twice, a multi-task job named once per task) exactly
                one lands.

        Returns:
            Whether the rows were written.

        Raises:
            ValueError: A row lacks a required field, or ``once`` rows name several configs
                (nothing is written).
            TypeError: A row is not JSON-serialisable (nothing is written).
        """
        rows = list(rows)
        if not rows:
            return False
        for row in rows:
            _validate(row)
        payload = _dump(rows)  # before any file is touched, so a bad row writes nothing
        hashes = {str(r["config_hash"]) for r in rows}
        statuses = {str(r["status"]) for r in rows}
        if once and len(hashes) > 1:
            raise ValueError(f"append(once=True) takes the rows of one config, got {sorted(hashes)}")
        self._import_legacy()
        if once and self.has_config(next(iter(hashes))):
            return False
        exclusive = once and statuses == {"ok"}
        key, status = safe_name(next(iter(hashes))), next(iter(statuses))
        if exclusive:  # the config's one slot: a second finished run cannot take it
            name = f"{key}.ok.jsonl"
        elif len(hashes) == 1 and len(statuses) == 1 and safe_name(status) == status:
            name = f"{key}.{status}.{stamp()}.jsonl"
        else:  # several configs in one call: one file keeps them all-or-nothing
            name = f"_batch.{stamp()}.jsonl"
        if not publish(write_temp(self.dir, payload), self.dir / name, exclusive=exclusive):
            return False  # another job of this config published first
        self._export(payload)
        return True

    def _export(self, payload: bytes) -> None:
        """Appends a published run's rows to ``results.jsonl``; the store itself is already safe.

        If the export's last line is not a valid row (a torn write, a hand edit), appending after
        it would bury it mid-file where it breaks plain JSON-lines readers: rewrite it instead.
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
                last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
                intact = not tail or (tail.endswith(b"\n") and not _parse(last)[1])
                written = intact and os.write(fd, payload) == len(payload)
            finally:
                os.close(fd)
            if not written:
                warnings.warn(
                    f"{self.path}: torn or malformed last line; export rewritten from {self.dir}", stacklevel=3
                )
                self.compact()
        except OSError as e:
            warnings.warn(f"{self.path}: export not updated ({e}); the rows are in {self.dir}", stacklevel=3)

    def compact(self) -> int:
        """Rewrites ``results.jsonl`` atomically as every row of the store, in order.

        Safe to run at any time, from any number of processes: it only replaces the export
        (a concurrent append that misses it is still in the store), drops quarantined lines,
        and removes temporary files of writers killed over a day ago.

        Returns:
            The number of rows exported.
        """
        self._import_legacy()
        rows = self.rows()
        os.replace(write_temp(self.dir, _dump(rows)), self.path)  # same filesystem: results.d is beside it
        fsync_dir(self.path.parent)
        for tmp in self.dir.glob(TMP_PREFIX + "*"):
            try:
                if time.time() - tmp.stat().st_mtime > 86400:
                    tmp.unlink()
            except OSError:
                pass
        return len(rows)

    def _import_legacy(self) -> None:
        """Once per store: copies the rows of an older-layout ``results.jsonl`` into the store.

        Racing importers each publish a full copy exclusively; one wins, the others discard
        theirs. Only new-layout appends write the export, and only after this file exists, so
        every importer copies the same legacy rows.
        """
        legacy = self.dir / LEGACY
        if legacy.exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        data = self.path.read_bytes() if self.path.exists() else b""
        good, bad = _parse(data)
        self._quarantine_lines(self.path, bad)
        if publish(write_temp(self.dir, b"".join(line + b"\n" for line, _ in good)), legacy, exclusive=True) and bad:
            self.compact()  # so plain readers of results.jsonl are not broken by the bad lines

    # ------------------------------------------------------------------ damage

    def _quarantine_lines(self, source: Path, bad: list[tuple[int, bytes, str]], hint: str = "") -> None:
        """Copies bad lines aside (once per content) and warns with file and line number."""
        for number, line, why in bad:
            dest = self.dir / QUARANTINE / f"{source.name}.line{number}.corrupt-{hashlib.sha256(line).hexdigest()[:12]}"
            try:
                if not dest.exists():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(write_temp(self.dir, line + b"\n"), dest)
            except OSError as e:  # a read-only store: still readable, just not quarantined
                dest = Path(f"(not saved: {e})")
            warnings.warn(
                f"{source}, line {number}: skipped a malformed result row ({why}); saved to {dest}{hint}", stacklevel=4
            )

    def _read(self, path: Path) -> list[dict] | None:
        """Rows of one per-run file, or ``None`` if it is gone or damaged (then moved aside).

        Per-run files are immutable once published, so a parse is cached by inode, size and
        modification time.
        """
        try:
            st = path.stat()
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if path.name in self._cache and self._cache[path.name][0] == key:
                return self._cache[path.name][1]
            data = path.read_bytes()
        except FileNotFoundError:  # quarantined by another reader meanwhile
            return None
        good, bad = _parse(data)
        if path.name == LEGACY:  # never moved: that would re-import the export
            self._quarantine_lines(path, bad)
            rows: list[dict] | None = [r for _, r in good]
        elif bad or not good or not data.endswith(b"\n"):
            number, why = (bad[0][0], bad[0][2]) if bad else (data.count(b"\n") + 1, "incomplete file")
            dest = self.dir / QUARANTINE / f"{path.name}.corrupt-{stamp()}"
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
            except FileNotFoundError:
                return None
            except OSError as e:
                dest = Path(f"(not moved: {e})")
            warnings.warn(
                f"{path}, line {number}: damaged result file ({why}); its run counts as unfinished, moved to {dest}",
                stacklevel=3,
            )
            rows = None
        else:
            rows = [r for _, r in good]
        self._cache[path.name] = (key, rows)
        return rows

    # ------------------------------------------------------------------ reading

    def _files(self) -> list[os.DirEntry]:
        try:
            with os.scandir(self.dir) as it:
                return [e for e in it if e.name.endswith(".jsonl") and e.name != LEGACY and e.name[0] != "."]
        except FileNotFoundError:
            return []

    def rows(self) -> list[dict]:
        """Every complete row: imported legacy rows first, then runs in the order they finished.

        Damaged lines and files are quarantined with a warning (see the module docstring) and
        skipped; nothing here raises on bad content.
        """
        if not (self.dir / LEGACY).exists():  # an older-layout store, read in place
            if not self.path.exists():
                return []
            good, bad = _parse(self.path.read_bytes())
            self._quarantine_lines(self.path, bad, " (ResultsStore.compact() drops it from the file)")
            return [r for _, r in good]
        runs = []
        for entry in self._files():
            if rows := self._read(Path(entry.path)):  # first row's time, then mtime: the finishing order
                runs.append((str(rows[0]["timestamp"]), self._cache[entry.name][0][2], entry.name, rows))
        runs.sort(key=lambda run: run[:3])
        return [*(self._read(self.dir / LEGACY) or []), *(row for *_, rows in runs for row in rows)]

    def has_config(self, config_hash: str) -> bool:
        """Whether a finished run (a row with status ``"ok"``) has this config hash.

        A ``stat`` of the config's file plus a directory listing; only legacy rows and rows
        appended for several configs at once are read (each file once per store object).
        """
        if not (self.dir / LEGACY).exists():
            return any(r["config_hash"] == config_hash and r["status"] == "ok" for r in self.rows())
        key = safe_name(config_hash)
        if self._read(self.dir / f"{key}.ok.jsonl"):
            return True
        needle = json.dumps(config_hash).encode()
        for entry in self._files():
            name = entry.name
            if name.startswith(f"{key}.ok.") or name.startswith("_batch."):
                if any(
                    r["config_hash"] == config_hash and r["status"] == "ok" for r in self._read(Path(entry.path)) or []
                ):
                    return True
        legacy = self.dir / LEGACY
        if needle not in legacy.read_bytes():  # cheap: most configs never were in the old store
            return False
        return any(r["config_hash"] == config_hash and r["status"] == "ok" for r in self._read(legacy) or [])

    def config_rows(self, config_hash: str) -> list[dict]:
        """The finished rows of one config: a read of its own file where it has one, else a scan."""
        if (self.dir / LEGACY).exists():
            own = self._read(self.dir / f"{safe_name(config_hash)}.ok.jsonl")
            if own:
                return own
        return [r for r in self.rows() if r["config_hash"] == config_hash and r["status"] == "ok"]

    def finished_hashes(self) -> set[str]:
        """Config hashes with a finished run (for sweeping up checkpoints of finished configs)."""
        return {str(r["config_hash"]) for r in self.rows() if r["status"] == "ok"}

    def frame(self) -> pandas.DataFrame:
        """All rows as a DataFrame (columns :data:`ROW_FIELDS` first, then any extras)."""
        import pandas as pd

        rows = self.rows()
        extras = sorted({k for r in rows for k in r} - set(ROW_FIELDS))
        return pd.DataFrame(rows, columns=[*ROW_FIELDS, *extras])


if __name__ == "__main__":  # python -m promptscale.store.results compact outputs/results.jsonl
    if len(sys.argv) != 3 or sys.argv[1] != "compact":
        sys.exit("usage: python -m promptscale.store.results compact RESULTS_JSONL")
    print(f"{ResultsStore(sys.argv[2]).compact()} rows exported to {sys.argv[2]}")
