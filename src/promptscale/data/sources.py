"""SuperGLUE loading and validation: every source yields records in the official schema.

Three sources feed the same code path: the small embedded sample shipped inside the package
(offline tests, demos), a local copy of the official release (``data.dir=/path/to/SuperGLUE``)
and the Hub dataset ``aps/super_glue``. The Hub stores a flattened schema; each task's
``from_hub`` converts its rows back to the official one, so formatters see one schema only.

Records are validated as they are read, so a damaged file fails at load time with the file,
line and field named (``RecordError``), instead of as a ``KeyError`` deep inside a formatter or
a metric: bytes that are not UTF-8, lines that are not JSON, fields that are missing, mistyped
or empty, an ``idx`` that repeats an earlier line's, and a split file with no records at all
(``EmptySplitError``: an empty dev split would train, score nothing and write no row).

This module is the one documented home of ``load_records``, ``DataSource``, ``validate_dir``,
``RecordError``, ``SAMPLE_DIR`` and ``count_units``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptscale.data.schema import FieldError
from promptscale.data.tasks import TASKS, TaskSpec, get_task

SAMPLE_DIR: Path = Path(__file__).resolve().parent / "sample"
"""The embedded sample, in the official release layout (hand-written, not SuperGLUE text)."""

_HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}
_NEEDED_SPLITS = ("train", "val")  # a task folder without these cannot train, or cannot be scored


# --------------------------------------------------------------------------- errors


class DataFileError(ValueError):
    """A data file that cannot be used as it is.

    Attributes:
        file: The file, relative to the data root (e.g. ``CB/val.jsonl``), or ``hub:...``.
    """

    def __init__(self, file: str, message: str):
        super().__init__(message)
        self.file = file


class RecordError(DataFileError):
    """A malformed record, located so that it can be fixed by hand.

    Attributes:
        file: The file, relative to the data root (e.g. ``CB/val.jsonl``), or ``hub:...``.
        line: 1-based line number (row number for Hub data).
        field: Offending field (dotted path), ``"<json>"`` when the line is not JSON,
            ``"<utf-8>"`` when its bytes are not UTF-8.
        reason: What is wrong.
    """

    def __init__(self, file: str, line: int, field: str, reason: str):
        super().__init__(file, f"{file} line {line}: field {field!r}: {reason}")
        self.line = line
        self.field = field
        self.reason = reason


class EmptySplitError(DataFileError):
    """A split file that holds no record (only blank lines, or nothing)."""

    def __init__(self, file: str):
        super().__init__(file, f"{file}: no records (an empty split can be neither trained on nor scored)")


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class DataSource:
    """Where SuperGLUE records come from.

    Attributes:
        kind: ``"embedded"`` (the packaged sample), ``"dir"`` (official layout on disk) or
            ``"hub"`` (``datasets.load_dataset``).
        dir: Root of the official layout, for ``kind="dir"``.
        hub_id: Hub dataset id, for ``kind="hub"``.
        hub_revision: Hub revision; the parquet conversion, because ``datasets`` >= 4 refuses
            the loading script that lives on the main branch.
    """

    kind: str = "embedded"
    dir: str | None = None
    hub_id: str = "aps/super_glue"
    hub_revision: str = "refs/convert/parquet"

    def __post_init__(self) -> None:
        if self.kind not in ("embedded", "dir", "hub"):
            raise ValueError(f"unknown data source kind {self.kind!r}; use embedded, dir or hub")
        if self.kind == "dir" and not self.dir:
            raise ValueError("a data source of kind 'dir' needs dir=/path/to/SuperGLUE")

    @classmethod
    def from_dir(cls, dir: str | None) -> DataSource:
        """Maps the ``data.dir`` config value to a source.

        Args:
            dir: ``None`` for the embedded sample, ``"hub"`` for the Hub, else a path to a
                copy of the official release.

        Raises:
            FileNotFoundError: ``dir`` is a path that does not exist (fail before training
                starts rather than at the first validation step).
        """
        if dir is None:
            return cls(kind="embedded")
        if str(dir) == "hub":
            return cls(kind="hub")
        path = Path(dir).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"data.dir={dir} does not exist (or is not a directory)")
        return cls(kind="dir", dir=str(path))


def split_relpath(task: str, split: str) -> str:
    """Path of a task's split file relative to the release root, e.g. ``CB/val.jsonl``.

    AX-b and AX-g hold a single labelled file, which plays the role of their ``test`` split.
    """
    spec = _spec_with_split(task, split)
    name = f"{spec.folder}.jsonl" if spec.splits == ("test",) else f"{split}.jsonl"
    return f"{spec.folder}/{name}"


def load_records(task: str, split: str, source: DataSource) -> list[dict]:
    """Loads and validates one split of one task, in the official schema.

    Args:
        task: Lower-case task name (a ``TASKS`` key).
        split: ``"train"``, ``"val"`` or ``"test"`` (AX-b / AX-g: ``"test"`` only).
        source: Where to read from.

    Returns:
        The records, one dict per line of the official ``.jsonl`` file (MultiRC: one per
        passage; ReCoRD: one per passage with its queries).

    Raises:
        KeyError: Unknown task (the message lists the valid names).
        ValueError: The task has no such split.
        FileNotFoundError: The split file is missing from a ``dir`` source.
        RecordError: A record is malformed (file, line and field named).
        EmptySplitError: The split holds no record.
        RuntimeError: The Hub is unreachable.
    """
    spec = _spec_with_split(task, split)
    if source.kind == "hub":
        return _load_hub(spec, split, source)
    root = SAMPLE_DIR if source.kind == "embedded" else Path(source.dir)  # type: ignore[arg-type]
    rel = split_relpath(task, split)
    path = root / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected the official SuperGLUE layout <dir>/{rel}")
    return _validated(spec, split, rel, _read_jsonl(path, rel))


def validate_dir(dir: str | Path) -> dict[str, dict[str, int]]:
    """Validates every task/split file present under ``dir`` and counts evaluation units.

    Args:
        dir: Root of a copy of the official release (any subset of its folders).

    Returns:
        ``{task: {split: units}}`` for the files present (absent tasks/splits are left out);
        units are records, except MultiRC (answer options) and ReCoRD (queries).

    Raises:
        FileNotFoundError: ``dir`` does not exist.
        RecordError: The first malformed record found.
        EmptySplitError: The first split file without records.
    """
    root = Path(dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist (or is not a directory)")
    report: dict[str, dict[str, int]] = {}
    for name, spec in TASKS.items():
        counts = {}
        for split in spec.splits:
            rel = split_relpath(name, split)
            if (root / rel).is_file():
                counts[split] = spec.count_units(_validated(spec, split, rel, _read_jsonl(root / rel, rel)))
        if counts:
            report[name] = counts
    return report


def missing_splits(dir: str | Path) -> list[str]:
    """Train/val files absent from the task folders present under ``dir``, e.g. ``ReCoRD/train.jsonl``.

    Not an error: zero-shot prompt design needs no train split, and a folder may hold only
    what one experiment uses; but a training run on such a folder would fail, so ``validate``
    reports them.
    """
    root = Path(dir)
    missing = []
    for name, spec in TASKS.items():
        if not (root / spec.folder).is_dir():
            continue
        for split in _NEEDED_SPLITS:
            if split in spec.splits and not (root / split_relpath(name, split)).is_file():
                missing.append(split_relpath(name, split))
    return missing


def count_units(task: str, records: list[dict]) -> int:
    """Counts what the task is scored over: answer options (MultiRC), queries (ReCoRD), records."""
    return get_task(task).count_units(records)


def validate_record(task: str, record: dict, split: str) -> None:
    """Checks one official-schema record: fields, types, empty texts, label values, offsets, ids.

    Labels may be absent only on ``test`` (the official test files are unlabelled; the AX
    files are labelled ``test`` and are checked like any other).

    Raises:
        KeyError: Unknown task.
        FieldError: (a ``ValueError``) naming the field and what is wrong with it.
    """
    spec = get_task(task)
    if not isinstance(record, dict):
        raise FieldError("<record>", f"expected a JSON object, got {type(record).__name__}")
    spec.check(record, split)


def _spec_with_split(task: str, split: str) -> TaskSpec:
    spec = get_task(task)
    if split not in spec.splits:
        raise ValueError(f"task {task!r} has no split {split!r}; its splits: {', '.join(spec.splits)}")
    return spec


# --------------------------------------------------------------------------- reading


def _read_jsonl(path: Path, rel: str) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` per non-blank line; bytes are decoded line by line.

    Decoding each line strictly names the line a stray Latin-1 or binary byte sits on, where
    reading the whole file as text would raise a ``UnicodeDecodeError`` naming no file.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                reason = f"not UTF-8: byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line"
                raise RecordError(rel, lineno, "<utf-8>", reason) from None
            if not line.strip():  # a trailing blank line is not a record
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(rel, lineno, "<json>", f"invalid JSON: {e.msg} (column {e.colno})") from None


def _validated(spec: TaskSpec, split: str, file: str, numbered: Iterable[tuple[int, Any]]) -> list[dict]:
    """Validates numbered records of one split file: each record, unique ``idx``, not empty."""
    records = []
    first_line: dict[Any, int] = {}
    for line, record in numbered:
        try:
            validate_record(spec.name, record, split)
        except FieldError as e:
            raise RecordError(file, line, e.field, e.reason) from None
        idx = record["idx"]
        if idx in first_line:
            raise RecordError(file, line, "idx", f"duplicate idx {idx!r} (first on line {first_line[idx]})")
        first_line[idx] = line
        records.append(record)
    if not records:
        raise EmptySplitError(file)
    return records


# --------------------------------------------------------------------------- Hub


def _load_hub(spec: TaskSpec, split: str, source: DataSource) -> list[dict]:
    import datasets  # heavy; only the Hub source needs it

    hub_split = _HUB_SPLITS[split]
    try:
        rows = datasets.load_dataset(source.hub_id, spec.hub_config, revision=source.hub_revision, split=hub_split)
    except OSError as e:  # ConnectionError (offline, no network) and missing cache files
        raise RuntimeError(
            f"The Hugging Face Hub is unreachable, so {source.hub_id} ({spec.hub_config}, {hub_split}) "
            f"cannot be loaded: {type(e).__name__}: {e}. Use a local copy of the official SuperGLUE "
            f"release instead: data.dir=/path/to/SuperGLUE (folders BoolQ/ CB/ ... with train/val/test.jsonl)."
        ) from e
    file = f"hub:{source.hub_id}/{spec.hub_config}/{hub_split}"
    return _validated(spec, split, file, enumerate(spec.from_hub(rows), 1))
