"""SuperGLUE loading and validation: every source yields records in the official schema.

Three sources feed the same code path: the small embedded sample shipped inside the package
(offline tests, demos), a local copy of the official release (``data.dir=/path/to/SuperGLUE``)
and the Hub dataset ``aps/super_glue``. The Hub stores a flattened schema, so its rows are
converted back to the official one here; formatters downstream then see one schema only.

Records are validated as they are read, so a malformed file fails at load time with the file,
line and field named, instead of as a ``KeyError`` deep inside a formatter or a metric.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptscale.data.tasks import TASKS, TaskSpec, get_task

SAMPLE_DIR: Path = Path(__file__).resolve().parent / "sample"
"""The embedded sample, in the official release layout (hand-written, not SuperGLUE text)."""

_HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}
_NLI2 = ("entailment", "not_entailment")
_CB_LABELS = ("entailment", "contradiction", "neutral")  # order of the Hub's ClassLabel
_BOOL = (False, True)
_BINARY = (0, 1)


# --------------------------------------------------------------------------- errors


class FieldError(ValueError):
    """One field of one record is missing or wrong (no file position: see ``RecordError``).

    Attributes:
        field: Dotted path of the field, e.g. ``passage.qas[0].answers[1].end``.
        reason: What is wrong with it.
    """

    def __init__(self, field: str, reason: str):
        super().__init__(f"field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class RecordError(ValueError):
    """A malformed record, located so that it can be fixed by hand.

    Attributes:
        file: The file, relative to the data root (e.g. ``CB/val.jsonl``), or ``hub:...``.
        line: 1-based line number (row number for Hub data).
        field: Offending field (dotted path), or ``"<json>"`` when the line is not JSON.
    """

    def __init__(self, file: str, line: int, field: str, reason: str):
        super().__init__(f"{file} line {line}: field {field!r}: {reason}")
        self.file = file
        self.line = line
        self.field = field
        self.reason = reason


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
        RecordError: A record is malformed.
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
    return _read_jsonl(path, rel, spec.name, split)


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
                counts[split] = count_units(name, _read_jsonl(root / rel, rel, name, split))
        if counts:
            report[name] = counts
    return report


def count_units(task: str, records: list[dict]) -> int:
    """Counts what the task is scored over: answer options (MultiRC), queries (ReCoRD), records."""
    get_task(task)
    if task == "multirc":
        return sum(len(q["answers"]) for r in records for q in r["passage"]["questions"])
    if task == "record":
        return sum(len(r["qas"]) for r in records)
    return len(records)


def validate_record(task: str, record: dict, split: str) -> None:
    """Checks one official-schema record: fields, types, label values and offsets.

    Labels may be absent only on ``test`` (the official test files are unlabelled; the AX
    files are labelled ``test`` and are checked like any other).

    Raises:
        KeyError: Unknown task.
        FieldError: (a ``ValueError``) naming the field and what is wrong with it.
    """
    spec = get_task(task)
    if not isinstance(record, dict):
        raise FieldError("<record>", f"expected a JSON object, got {type(record).__name__}")
    _VALIDATORS[spec.name](record, split)


def _spec_with_split(task: str, split: str) -> TaskSpec:
    spec = get_task(task)
    if split not in spec.splits:
        raise ValueError(f"task {task!r} has no split {split!r}; its splits: {', '.join(spec.splits)}")
    return spec


def _read_jsonl(path: Path, rel: str, task: str, split: str) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():  # a trailing blank line is not a record
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(rel, lineno, "<json>", f"invalid JSON: {e.msg} (column {e.colno})") from None
            _validate_at(task, record, split, rel, lineno)
            records.append(record)
    return records


def _validate_at(task: str, record: Any, split: str, file: str, line: int) -> None:
    try:
        validate_record(task, record, split)
    except FieldError as e:
        raise RecordError(file, line, e.field, e.reason) from None


# --------------------------------------------------------------------------- field checks


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON true/false must not pass as an int
        return bool in types
    return isinstance(value, types)


def _get(obj: dict, key: str, types: type | tuple[type, ...], path: str = "") -> Any:
    """Returns ``obj[key]`` after checking presence and JSON type."""
    types = types if isinstance(types, tuple) else (types,)
    field = f"{path}{key}"
    if key not in obj:
        raise FieldError(field, "missing")
    value = obj[key]
    if not _type_ok(value, types):
        expected = " or ".join(t.__name__ for t in types)
        raise FieldError(field, f"expected {expected}, got {type(value).__name__} {_short(value)}")
    return value


def _require(obj: dict, types: type | tuple[type, ...], *keys: str) -> None:
    for key in keys:
        _get(obj, key, types)


def _opt(obj: dict, key: str, types: type | tuple[type, ...], path: str = "") -> None:
    if key in obj:
        _get(obj, key, types, path)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _label(obj: dict, split: str, allowed: tuple, path: str = "") -> None:
    """Checks a label's value (and JSON type: ``1`` is not ``true``); absent is fine on test."""
    field = f"{path}label"
    if "label" not in obj:
        if split != "test":
            raise FieldError(field, f"missing (only test records may be unlabelled; split is {split!r})")
        return
    value = obj["label"]
    if not any(type(value) is type(a) and value == a for a in allowed):
        raise FieldError(field, f"expected one of {sorted(allowed)}, got {value!r}")


def _span(start: int, end: int, size: int, field: str, *, inclusive: bool) -> None:
    last = end if inclusive else end - 1
    if not 0 <= start <= last < size:
        kind = "inclusive" if inclusive else "exclusive"
        raise FieldError(field, f"span [{start}, {end}] ({kind} end) outside text of length {size}")


def _list(obj: dict, key: str, path: str = "", *, nonempty: bool = True) -> list:
    value = _get(obj, key, list, path)
    if nonempty and not value:
        raise FieldError(f"{path}{key}", "empty list")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise FieldError(f"{path}{key}[{i}]", f"expected an object, got {_short(item)}")
    return value


# --------------------------------------------------------------------------- per-task validators


def _check_boolq(r: dict, split: str) -> None:
    _require(r, str, "question", "passage")
    _get(r, "idx", int)
    _label(r, split, _BOOL)


def _check_pair(first: str, second: str, labels: tuple, idx_types: tuple[type, ...] = (int,)):
    def check(r: dict, split: str) -> None:
        _require(r, str, first, second)
        _get(r, "idx", idx_types)
        _label(r, split, labels)

    return check


def _check_axb(r: dict, split: str) -> None:
    # The official file has a string idx and diagnostic category fields; the Hub keeps neither.
    _check_pair("sentence1", "sentence2", _NLI2, (int, str))(r, split)
    _opt(r, "logic", str)


def _check_axg(r: dict, split: str) -> None:
    _check_pair("premise", "hypothesis", _NLI2)(r, split)
    _opt(r, "pair_id", int)  # absent on the Hub


def _check_copa(r: dict, split: str) -> None:
    _require(r, str, "premise", "choice1", "choice2")
    if _get(r, "question", str) not in ("cause", "effect"):
        raise FieldError("question", f"expected one of ['cause', 'effect'], got {r['question']!r}")
    _get(r, "idx", int)
    _label(r, split, _BINARY)


def _check_wic(r: dict, split: str) -> None:
    _get(r, "word", str)
    _get(r, "idx", int)
    _opt(r, "version", (str, int, float))
    for n in ("1", "2"):
        sentence = _get(r, f"sentence{n}", str)
        start, end = _get(r, f"start{n}", int), _get(r, f"end{n}", int)
        _span(start, end, len(sentence), f"start{n}/end{n}", inclusive=False)
    _label(r, split, _BOOL)


def _check_wsc(r: dict, split: str) -> None:
    words = _get(r, "text", str).split()
    target = _get(r, "target", dict)
    for n in ("1", "2"):
        index = _get(target, f"span{n}_index", int, "target.")
        _get(target, f"span{n}_text", str, "target.")
        if not 0 <= index < len(words):
            raise FieldError(f"target.span{n}_index", f"{index} outside text.split() of {len(words)} words")
    _get(r, "idx", int)
    _label(r, split, _BOOL)


def _check_multirc(r: dict, split: str) -> None:
    _get(r, "idx", int)
    _opt(r, "version", (str, int, float))
    passage = _get(r, "passage", dict)
    _get(passage, "text", str, "passage.")
    for qi, question in enumerate(_list(passage, "questions", "passage.")):
        qpath = f"passage.questions[{qi}]."
        _get(question, "question", str, qpath)
        _get(question, "idx", int, qpath)
        for ai, answer in enumerate(_list(question, "answers", qpath)):
            apath = f"{qpath}answers[{ai}]."
            _get(answer, "text", str, apath)
            _get(answer, "idx", int, apath)
            _label(answer, split, _BINARY, apath)


def _check_record(r: dict, split: str) -> None:
    _get(r, "idx", int)
    _opt(r, "source", str)
    passage = _get(r, "passage", dict)
    text = _get(passage, "text", str, "passage.")
    for i, entity in enumerate(_list(passage, "entities", "passage.")):
        path = f"passage.entities[{i}]."
        start, end = _get(entity, "start", int, path), _get(entity, "end", int, path)
        _span(start, end, len(text), f"{path}start/end", inclusive=True)
    for qi, qa in enumerate(_list(r, "qas")):
        qpath = f"qas[{qi}]."
        if "@placeholder" not in _get(qa, "query", str, qpath):
            raise FieldError(f"{qpath}query", "has no '@placeholder'")
        _get(qa, "idx", int, qpath)
        if "answers" not in qa and split == "test":
            continue
        for ai, answer in enumerate(_list(qa, "answers", qpath)):
            _check_record_answer(answer, text, f"{qpath}answers[{ai}].")


def _check_record_answer(answer: dict, text: str, path: str) -> None:
    start, end = _get(answer, "start", int, path), _get(answer, "end", int, path)
    _span(start, end, len(text), f"{path}start/end", inclusive=True)
    if text[start : end + 1] != _get(answer, "text", str, path):
        raise FieldError(
            f"{path}text", f"{answer['text']!r} != passage text[{start}:{end}+1] {text[start : end + 1]!r}"
        )


_VALIDATORS: dict[str, Callable[[dict, str], None]] = {
    "boolq": _check_boolq,
    "cb": _check_pair("premise", "hypothesis", _CB_LABELS),
    "copa": _check_copa,
    "multirc": _check_multirc,
    "record": _check_record,
    "rte": _check_pair("premise", "hypothesis", _NLI2),
    "wic": _check_wic,
    "wsc": _check_wsc,
    "axb": _check_axb,
    "axg": _check_axg,
}


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
    records = _FROM_HUB[spec.name](rows)
    file = f"hub:{source.hub_id}/{spec.hub_config}/{hub_split}"
    for i, record in enumerate(records, 1):
        _validate_at(spec.name, record, split, file, i)
    return records


def _hub_label(row: Mapping, names: tuple) -> Any:
    """Maps a Hub ClassLabel id to the official value; ``None`` for -1 (unlabelled test)."""
    label = row.get("label", -1)
    return None if label is None or label < 0 else names[label]


def _labelled(record: dict, label: Any) -> dict:
    if label is not None:
        record["label"] = label
    return record


def _from_hub_boolq(rows: Iterable[Mapping]) -> list[dict]:
    return [
        _labelled({"question": r["question"], "passage": r["passage"], "idx": r["idx"]}, _hub_label(r, _BOOL))
        for r in rows
    ]


def _from_hub_cb(rows: Iterable[Mapping]) -> list[dict]:
    return [
        _labelled({"premise": r["premise"], "hypothesis": r["hypothesis"], "idx": r["idx"]}, _hub_label(r, _CB_LABELS))
        for r in rows
    ]


def _from_hub_rte(rows: Iterable[Mapping]) -> list[dict]:
    return [
        _labelled({"premise": r["premise"], "hypothesis": r["hypothesis"], "idx": r["idx"]}, _hub_label(r, _NLI2))
        for r in rows
    ]


def _from_hub_axg(rows: Iterable[Mapping]) -> list[dict]:
    return _from_hub_rte(rows)  # the Hub drops pair_id


def _from_hub_axb(rows: Iterable[Mapping]) -> list[dict]:
    # The official idx is a string; the Hub cast it to int32 and dropped the diagnostic categories.
    return [
        _labelled(
            {"sentence1": r["sentence1"], "sentence2": r["sentence2"], "idx": str(r["idx"])}, _hub_label(r, _NLI2)
        )
        for r in rows
    ]


def _from_hub_copa(rows: Iterable[Mapping]) -> list[dict]:
    keys = ("premise", "choice1", "choice2", "question", "idx")
    return [_labelled({k: r[k] for k in keys}, _hub_label(r, _BINARY)) for r in rows]


def _from_hub_wic(rows: Iterable[Mapping]) -> list[dict]:
    keys = ("word", "sentence1", "sentence2", "idx", "start1", "start2", "end1", "end2")
    return [_labelled({k: r[k] for k in keys}, _hub_label(r, _BOOL)) for r in rows]


def _from_hub_wsc(rows: Iterable[Mapping]) -> list[dict]:
    keys = ("span1_index", "span2_index", "span1_text", "span2_text")
    return [
        _labelled({"text": r["text"], "target": {k: r[k] for k in keys}, "idx": r["idx"]}, _hub_label(r, _BOOL))
        for r in rows
    ]


def _from_hub_multirc(rows: Iterable[Mapping]) -> list[dict]:
    """Regroups one-row-per-answer Hub data into passages -> questions -> answers."""
    passages: dict[int, dict] = {}
    questions: dict[tuple[int, int], dict] = {}
    for r in rows:
        p, q = r["idx"]["paragraph"], r["idx"]["question"]
        if p not in passages:
            passages[p] = {"idx": p, "passage": {"text": r["paragraph"], "questions": []}}
        if (p, q) not in questions:
            questions[p, q] = {"question": r["question"], "answers": [], "idx": q}
            passages[p]["passage"]["questions"].append(questions[p, q])
        answer = {"text": r["answer"], "idx": r["idx"]["answer"]}
        questions[p, q]["answers"].append(_labelled(answer, _hub_label(r, _BINARY)))
    return list(passages.values())


def _from_hub_record(rows: Iterable[Mapping]) -> list[dict]:
    """Regroups one-row-per-query Hub data into passages with entity and answer offsets."""
    passages: dict[int, dict] = {}
    spans: dict[int, list[tuple[int, int, str]]] = {}
    for r in rows:
        p, text = r["idx"]["passage"], r["passage"]
        if p not in passages:
            spans[p] = _record_entity_spans(text, r["entity_spans"])
            entities = [{"start": s, "end": e} for s, e, _ in spans[p]]
            passages[p] = {"passage": {"text": text, "entities": entities}, "qas": [], "idx": p}
        qa: dict[str, Any] = {"query": r["query"], "idx": r["idx"]["query"]}
        if r["answers"]:  # empty on test: the official test qas have no answers field
            qa["answers"] = _record_answers(text, spans[p], r["answers"])
        passages[p]["qas"].append(qa)
    return list(passages.values())


def _record_entity_spans(text: str, entity_spans: Any) -> list[tuple[int, int, str]]:
    """Hub entity spans -> ``(start, inclusive end, text)``.

    The Hub's builder stored ``end + 1`` (exclusive); rather than trust one convention, the
    end is chosen so that ``text[start:end + 1]`` equals the span's text.
    """
    out = []
    for span in _as_rows(entity_spans):
        start, end, entity = span["start"], span["end"], span["text"]
        if text[start:end] == entity:
            out.append((start, end - 1, entity))
        elif text[start : end + 1] == entity:
            out.append((start, end, entity))
        else:
            raise ValueError(f"Hub entity span {span} does not match the passage text {text[start : end + 1]!r}")
    return out


def _record_answers(text: str, spans: list[tuple[int, int, str]], answers: Iterable[str]) -> list[dict]:
    """Answer texts -> every entity mention with that text (the official answers are mentions)."""
    found = []
    for answer in answers:
        mentions = [(s, e) for s, e, t in spans if t == answer] or _find_all(text, answer)
        if not mentions:
            raise ValueError(f"ReCoRD answer {answer!r} occurs nowhere in its passage")
        found += [{"start": s, "end": e, "text": answer} for s, e in mentions]
    unique = {(a["start"], a["end"]): a for a in found}
    return [unique[k] for k in sorted(unique)]


def _find_all(text: str, needle: str) -> list[tuple[int, int]]:
    out, start = [], text.find(needle)
    while needle and start >= 0:
        out.append((start, start + len(needle) - 1))
        start = text.find(needle, start + 1)
    return out


def _as_rows(seq: Any) -> list[Mapping]:
    """A sequence of structs as rows: ``datasets`` returns a legacy ``Sequence({...})`` as a
    dict of lists, a ``List({...})`` as a list of dicts; accept both."""
    if isinstance(seq, Mapping):
        keys = list(seq)
        return [dict(zip(keys, values)) for values in zip(*(seq[k] for k in keys))]
    return list(seq)


_FROM_HUB: dict[str, Callable[[Iterable[Mapping]], list[dict]]] = {
    "boolq": _from_hub_boolq,
    "cb": _from_hub_cb,
    "copa": _from_hub_copa,
    "multirc": _from_hub_multirc,
    "record": _from_hub_record,
    "rte": _from_hub_rte,
    "wic": _from_hub_wic,
    "wsc": _from_hub_wsc,
    "axb": _from_hub_axb,
    "axg": _from_hub_axg,
}
