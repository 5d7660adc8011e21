"""SuperGLUE loading and validation: embedded sample, official-layout dirs, Hub conversion."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from promptscale.data.schema import FieldError
from promptscale.data.sources import (
    SAMPLE_DIR,
    DataSource,
    EmptySplitError,
    RecordError,
    count_units,
    load_records,
    missing_splits,
    validate_dir,
    validate_record,
)
from promptscale.data.tasks import TASKS
from promptscale.data.tasks import record as record_task

# Written out here, not taken from the code under test, so a layout slip shows up.
FILES = {
    "boolq": {s: f"BoolQ/{s}.jsonl" for s in ("train", "val", "test")},
    "cb": {s: f"CB/{s}.jsonl" for s in ("train", "val", "test")},
    "copa": {s: f"COPA/{s}.jsonl" for s in ("train", "val", "test")},
    "multirc": {s: f"MultiRC/{s}.jsonl" for s in ("train", "val", "test")},
    "record": {s: f"ReCoRD/{s}.jsonl" for s in ("train", "val", "test")},
    "rte": {s: f"RTE/{s}.jsonl" for s in ("train", "val", "test")},
    "wic": {s: f"WiC/{s}.jsonl" for s in ("train", "val", "test")},
    "wsc": {s: f"WSC/{s}.jsonl" for s in ("train", "val", "test")},
    "axb": {"test": "AX-b/AX-b.jsonl"},
    "axg": {"test": "AX-g/AX-g.jsonl"},
}
EXPECTED_COUNTS = {
    "boolq": {"train": 16, "val": 16, "test": 4},
    "cb": {"train": 16, "val": 16, "test": 4},
    "copa": {"train": 16, "val": 16, "test": 4},
    "multirc": {"train": 26, "val": 25, "test": 10},
    "record": {"train": 13, "val": 12, "test": 4},
    "rte": {"train": 16, "val": 16, "test": 4},
    "wic": {"train": 16, "val": 16, "test": 4},
    "wsc": {"train": 16, "val": 16, "test": 4},
    "axb": {"test": 8},
    "axg": {"test": 8},
}
ALL_SPLITS = [(task, split) for task, files in FILES.items() for split in files]


def read_raw(task: str, split: str, root: Path = SAMPLE_DIR) -> list[dict]:
    with open(root / FILES[task][split]) as f:
        return [json.loads(line) for line in f if line.strip()]


def units(task: str, records: list[dict]) -> int:
    if task == "multirc":
        return sum(len(q["answers"]) for p in records for q in p["passage"]["questions"])
    if task == "record":
        return sum(len(p["qas"]) for p in records)
    return len(records)


# --------------------------------------------------------------------------- embedded sample


def test_sample_validates_with_expected_counts():
    report = validate_dir(SAMPLE_DIR)
    independent = {t: {s: units(t, read_raw(t, s)) for s in files} for t, files in FILES.items()}
    assert report == independent == EXPECTED_COUNTS
    assert list(report) == list(TASKS)


def test_sample_is_small():
    size = sum(p.stat().st_size for p in SAMPLE_DIR.rglob("*.jsonl"))
    assert size < 200_000
    assert sorted(p.name for p in SAMPLE_DIR.iterdir()) == sorted(
        ["BoolQ", "CB", "COPA", "MultiRC", "ReCoRD", "RTE", "WiC", "WSC", "AX-b", "AX-g"]
    )


@pytest.mark.parametrize("task,split", ALL_SPLITS)
def test_load_records_embedded(task, split):
    records = load_records(task, split, DataSource())
    assert records == read_raw(task, split)
    assert count_units(task, records) == EXPECTED_COUNTS[task][split]


def _labels(task: str, records: list[dict]) -> list:
    if task == "multirc":
        return [a.get("label") for p in records for q in p["passage"]["questions"] for a in q["answers"]]
    if task == "record":
        return [bool(qa.get("answers")) or None for p in records for qa in p["qas"]]
    return [r.get("label") for r in records]


@pytest.mark.parametrize("task", [t for t in TASKS if t not in ("axb", "axg")])
def test_sample_test_split_is_unlabelled_and_train_val_balanced(task):
    assert all(label is None for label in _labels(task, read_raw(task, "test")))
    for split in ("train", "val"):
        counts = Counter(_labels(task, read_raw(task, split)))
        assert None not in counts
        if task != "record":
            assert min(counts.values()) >= 4, counts  # every class well represented


def test_sample_offsets_are_consistent():
    for split in ("train", "val", "test"):
        for r in read_raw("wic", split):
            for n in "12":
                form = r[f"sentence{n}"][r[f"start{n}"] : r[f"end{n}"]]
                assert form.isalpha() and form[:2].lower() == r["word"][:2], (r, form)
        for r in read_raw("wsc", split):
            words, t = r["text"].split(), r["target"]
            for n in "12":
                span = t[f"span{n}_text"].split()
                got = [w.strip(".,") for w in words[t[f"span{n}_index"] :][: len(span)]]
                assert got == span, (r, n)
        for p in read_raw("record", split):
            text = p["passage"]["text"]
            assert "\n@highlight\n" in text
            mentions = {(e["start"], e["end"]) for e in p["passage"]["entities"]}
            for qa in p["qas"]:
                for a in qa.get("answers", []):
                    assert (a["start"], a["end"]) in mentions and text[a["start"] : a["end"] + 1] == a["text"]
    assert sum(r["label"] for r in read_raw("wsc", "train")) >= 4


def test_sample_multirc_shape():
    for split in ("train", "val", "test"):
        passages = read_raw("multirc", split)
        answer_ids = [a["idx"] for p in passages for q in p["passage"]["questions"] for a in q["answers"]]
        assert len(answer_ids) == len(set(answer_ids))
        for p in passages:
            assert "<br>" in p["passage"]["text"] and "<b>Sent 1: </b>" in p["passage"]["text"]
            assert all(2 <= len(q["answers"]) <= 4 for q in p["passage"]["questions"])


# --------------------------------------------------------------------------- malformed files


def _corrupt(root: Path, task: str, split: str, line: int, edit) -> Path:
    """Copies a sample file into ``root`` with line ``line`` (1-based) edited."""
    rel = FILES[task][split]
    lines = (SAMPLE_DIR / rel).read_text().splitlines()
    lines[line - 1] = edit if isinstance(edit, str) else json.dumps(edit(json.loads(lines[line - 1])))
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text("\n".join(lines) + "\n")
    return root / rel


def _set(path: str, value):
    """An edit setting a nested field; ``value`` None deletes it."""

    def edit(record):
        *parents, last = path.split("/")
        obj = record
        for key in parents:
            obj = obj[int(key)] if key.isdigit() else obj[key]
        if value is None:
            del obj[last]
        elif callable(value):
            obj[last] = value(obj[last])
        else:
            obj[last] = value
        return record

    return edit


MALFORMED = [
    # (task, split, line, edit, field, text in the message)
    ("cb", "val", 3, "{not json", "<json>", "invalid JSON"),
    (
        "cb",
        "val",
        3,
        _set("label", "yes"),
        "label",
        "expected one of ['contradiction', 'entailment', 'neutral'], got 'yes'",
    ),
    ("rte", "train", 2, _set("premise", None), "premise", "missing"),
    ("rte", "train", 2, _set("label", None), "label", "only test records may be unlabelled"),
    ("boolq", "train", 5, _set("label", "true"), "label", "got 'true'"),
    ("copa", "val", 1, _set("label", True), "label", "got True"),
    ("copa", "val", 1, _set("question", "why"), "question", "got 'why'"),
    ("wic", "val", 4, _set("end1", lambda e: e + 100), "start1/end1", "outside text"),
    ("wic", "val", 4, _set("start2", "3"), "start2", "expected int"),
    ("wsc", "train", 6, _set("target/span2_index", 99), "target.span2_index", "outside text.split()"),
    (
        "multirc",
        "train",
        2,
        _set("passage/questions/1/answers/0/label", 2),
        "passage.questions[1].answers[0].label",
        "got 2",
    ),
    ("record", "val", 3, _set("qas/0/answers/0/end", lambda e: e + 1), "qas[0].answers[0].text", "!= passage text"),
    ("record", "val", 3, _set("passage/entities/0/end", 10_000), "passage.entities[0].start/end", "outside text"),
    ("record", "val", 3, _set("qas/0/query", "no placeholder here"), "qas[0].query", "@placeholder"),
    ("axb", "test", 2, _set("label", "neutral"), "label", "got 'neutral'"),
    # empty (or whitespace-only) required texts
    ("boolq", "val", 2, _set("question", ""), "question", "empty text ''"),
    ("copa", "train", 3, _set("choice2", "  "), "choice2", "empty text '  '"),
    ("wic", "train", 1, _set("word", ""), "word", "empty text"),
    ("wsc", "val", 2, _set("target/span1_text", ""), "target.span1_text", "empty text"),
    ("axg", "test", 1, _set("hypothesis", ""), "hypothesis", "empty text"),
    (
        "multirc",
        "val",
        1,
        _set("passage/questions/0/answers/1/text", ""),
        "passage.questions[0].answers[1].text",
        "empty",
    ),
    ("record", "val", 1, _set("qas/0/query", ""), "qas[0].query", "empty text"),
    # ids repeated inside one record (MultiRC questions and answers, ReCoRD queries)
    (
        "multirc",
        "val",
        1,
        _set("passage/questions/1/idx", 0),
        "passage.questions[1].idx",
        "duplicate question idx 0 (first at passage.questions[0].idx)",
    ),
    (
        "multirc",
        "val",
        2,
        _set("passage/questions/1/answers/2/idx", 6),
        "passage.questions[1].answers[2].idx",
        "duplicate answer idx 6 (first at passage.questions[0].answers[0].idx)",
    ),
    ("record", "val", 3, _set("qas/1/idx", 3), "qas[1].idx", "duplicate query idx 3 (first at qas[0].idx)"),
    # an idx repeated across lines of one file
    ("cb", "val", 3, _set("idx", 0), "idx", "duplicate idx 0 (first on line 1)"),
    ("multirc", "val", 4, _set("idx", 1), "idx", "duplicate idx 1 (first on line 2)"),
]


@pytest.mark.parametrize("task,split,line,edit,field,reason", MALFORMED)
def test_malformed_file_names_file_line_field(tmp_path, task, split, line, edit, field, reason):
    _corrupt(tmp_path, task, split, line, edit)
    for load in (lambda: validate_dir(tmp_path), lambda: load_records(task, split, DataSource.from_dir(str(tmp_path)))):
        with pytest.raises(RecordError) as info:
            load()
        err = info.value
        assert (err.file, err.line, err.field) == (FILES[task][split], line, field)
        assert str(err).startswith(f"{FILES[task][split]} line {line}: field {field!r}: ")
        assert reason in str(err)


def test_non_utf8_bytes_name_file_and_line(tmp_path):
    path = tmp_path / "RTE" / "val.jsonl"
    path.parent.mkdir()
    lines = (SAMPLE_DIR / "RTE" / "val.jsonl").read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].replace(b"the", "th\u00e9".encode("latin-1"), 1)  # a Latin-1 byte 0xe9
    path.write_bytes(b"".join(lines))
    for load in (
        lambda: validate_dir(tmp_path),
        lambda: load_records("rte", "val", DataSource.from_dir(str(tmp_path))),
    ):
        with pytest.raises(RecordError) as info:
            load()
        assert (info.value.file, info.value.line, info.value.field) == ("RTE/val.jsonl", 5, "<utf-8>")
        assert "not UTF-8: byte 0xe9" in str(info.value)


@pytest.mark.parametrize("content", ["", "\n\n", "  \n"])
def test_empty_split_file_is_an_error_naming_it(tmp_path, content):
    path = tmp_path / "CB" / "val.jsonl"
    path.parent.mkdir()
    path.write_text(content)
    for load in (lambda: validate_dir(tmp_path), lambda: load_records("cb", "val", DataSource.from_dir(str(tmp_path)))):
        with pytest.raises(EmptySplitError, match=r"^CB/val\.jsonl: no records") as info:
            load()
        assert info.value.file == "CB/val.jsonl" and isinstance(info.value, ValueError)


def test_hub_rows_are_checked_for_duplicates_and_emptiness(monkeypatch):
    import datasets

    rows = {"validation": [*HUB_ROWS["rte", "validation"], {**HUB_ROWS["rte", "validation"][0]}], "test": []}
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name, *, revision, split: rows[split])
    with pytest.raises(RecordError, match=r"hub:aps/super_glue/rte/validation line 3: field 'idx': duplicate idx 0"):
        load_records("rte", "val", DataSource(kind="hub"))
    with pytest.raises(EmptySplitError, match="hub:aps/super_glue/rte/test: no records"):
        load_records("rte", "test", DataSource(kind="hub"))


def test_missing_splits_lists_absent_train_and_val_of_present_folders(tmp_path):
    for rel in ("ReCoRD/val.jsonl", "CB/train.jsonl", "CB/val.jsonl", "AX-b/AX-b.jsonl"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE_DIR / rel, tmp_path / rel)
    (tmp_path / "RTE").mkdir()  # an empty task folder lacks both
    assert missing_splits(tmp_path) == ["ReCoRD/train.jsonl", "RTE/train.jsonl", "RTE/val.jsonl"]
    assert missing_splits(SAMPLE_DIR) == []


def test_validate_record_raises_field_error():
    record = read_raw("cb", "val")[0] | {"label": "yes"}
    with pytest.raises(FieldError) as info:
        validate_record("cb", record, "val")
    assert info.value.field == "label" and isinstance(info.value, ValueError)
    validate_record("cb", {k: v for k, v in record.items() if k != "label"}, "test")  # unlabelled test: fine
    with pytest.raises(FieldError, match="expected a JSON object"):
        validate_record("cb", ["not", "a", "dict"], "val")  # type: ignore[arg-type]


def test_blank_trailing_lines_are_ignored(tmp_path):
    path = tmp_path / "CB" / "train.jsonl"
    path.parent.mkdir()
    path.write_text((SAMPLE_DIR / "CB" / "train.jsonl").read_text() + "\n\n")
    assert validate_dir(tmp_path) == {"cb": {"train": 16}}


# --------------------------------------------------------------------------- dirs and sources


def test_partial_dir_reports_only_present_files(tmp_path):
    for rel in ("CB/train.jsonl", "AX-g/AX-g.jsonl", "MultiRC/val.jsonl"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE_DIR / rel, tmp_path / rel)
    assert validate_dir(tmp_path) == {"cb": {"train": 16}, "multirc": {"val": 25}, "axg": {"test": 8}}
    assert validate_dir(tmp_path / "CB") == {}  # a task folder is not a release root
    with pytest.raises(FileNotFoundError, match="CB/val.jsonl"):
        load_records("cb", "val", DataSource.from_dir(str(tmp_path)))
    assert len(load_records("cb", "train", DataSource.from_dir(str(tmp_path)))) == 16


def test_data_source_from_dir(tmp_path):
    assert DataSource.from_dir(None) == DataSource(kind="embedded")
    assert DataSource.from_dir("hub") == DataSource(kind="hub")
    assert DataSource.from_dir(str(tmp_path)) == DataSource(kind="dir", dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"data.dir=.*nope does not exist"):
        DataSource.from_dir(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        validate_dir(tmp_path / "nope")
    with pytest.raises(ValueError):
        DataSource(kind="s3")


def test_unknown_task_and_split():
    for call in (
        lambda: load_records("superglue", "val", DataSource()),
        lambda: validate_record("boolqq", {}, "val"),
        lambda: count_units("nope", []),
    ):
        with pytest.raises(KeyError) as info:
            call()
        assert "valid tasks: " + ", ".join(TASKS) in str(info.value)
    with pytest.raises(ValueError, match="no split 'validation'.*train, val, test"):
        load_records("cb", "validation", DataSource())
    with pytest.raises(ValueError, match="no split 'val'.*test"):
        load_records("axb", "val", DataSource())


# --------------------------------------------------------------------------- Hub


# Literal rows in the Hub schema (aps/super_glue, refs/convert/parquet), as `datasets` returns them.
HUB_ROWS = {
    ("boolq", "validation"): [
        {"question": "is ice less dense than water", "passage": "Ice floats on water.", "idx": 0, "label": 1},
        {"question": "is the moon a star", "passage": "The Moon reflects light.", "idx": 1, "label": 0},
    ],
    ("boolq", "test"): [{"question": "is it", "passage": "It is.", "idx": 0, "label": -1}],
    ("cb", "train"): [
        {"premise": "She knew he had left.", "hypothesis": "he had left", "idx": 0, "label": 0},
        {"premise": "I doubt it rained.", "hypothesis": "it rained", "idx": 1, "label": 1},
        {"premise": "He hoped it would work.", "hypothesis": "it would work", "idx": 2, "label": 2},
    ],
    ("copa", "validation"): [
        {
            "premise": "The man fell.",
            "choice1": "He tripped.",
            "choice2": "He sang.",
            "question": "cause",
            "idx": 0,
            "label": 0,
        },
    ],
    ("rte", "validation"): [
        {"premise": "A cat sleeps.", "hypothesis": "An animal sleeps.", "idx": 0, "label": 0},
        {"premise": "A cat sleeps.", "hypothesis": "A dog sleeps.", "idx": 1, "label": 1},
    ],
    ("wic", "validation"): [
        {
            "word": "bank",
            "sentence1": "The bank of the river.",
            "sentence2": "The bank closed.",
            "start1": 4,
            "start2": 4,
            "end1": 8,
            "end2": 8,
            "idx": 0,
            "label": 0,
        },
    ],
    ("wsc.fixed", "validation"): [
        {
            "text": "Ann thanked Bea because she helped.",
            "span1_index": 2,
            "span2_index": 4,
            "span1_text": "Bea",
            "span2_text": "she",
            "idx": 0,
            "label": 1,
        },
    ],
    ("axb", "test"): [{"sentence1": "A cat sleeps.", "sentence2": "A cat does not sleep.", "idx": 0, "label": 1}],
    ("axg", "test"): [
        {"premise": "The nurse said she was late.", "hypothesis": "The nurse was late.", "idx": 0, "label": 0}
    ],
    ("multirc", "validation"): [
        {
            "paragraph": "<b>Sent 1: </b>Ann baked bread.<br>",
            "question": "What did Ann bake?",
            "answer": "Bread",
            "idx": {"paragraph": 0, "question": 0, "answer": 0},
            "label": 1,
        },
        {
            "paragraph": "<b>Sent 1: </b>Ann baked bread.<br>",
            "question": "What did Ann bake?",
            "answer": "Cake",
            "idx": {"paragraph": 0, "question": 0, "answer": 1},
            "label": 0,
        },
        {
            "paragraph": "<b>Sent 1: </b>Ann baked bread.<br>",
            "question": "Who baked?",
            "answer": "Ann",
            "idx": {"paragraph": 0, "question": 1, "answer": 2},
            "label": 1,
        },
        {
            "paragraph": "<b>Sent 1: </b>Bo ran.<br>",
            "question": "Who ran?",
            "answer": "Bo",
            "idx": {"paragraph": 1, "question": 2, "answer": 3},
            "label": 1,
        },
    ],
    ("record", "validation"): [
        # entity_spans as `datasets` returns a legacy Sequence of structs (dict of lists), end exclusive.
        {
            "passage": "Ann met Bo in Rome.\n@highlight\nAnn in Rome",
            "query": "@placeholder met Bo.",
            "entities": ["Ann", "Bo", "Rome"],
            "entity_spans": {
                "text": ["Ann", "Bo", "Rome", "Ann", "Rome"],
                "start": [0, 8, 14, 31, 38],
                "end": [3, 10, 18, 34, 42],
            },
            "answers": ["Ann"],
            "idx": {"passage": 0, "query": 0},
        },
        {
            "passage": "Ann met Bo in Rome.\n@highlight\nAnn in Rome",
            "query": "They met in @placeholder.",
            "entities": ["Ann", "Bo", "Rome"],
            "entity_spans": {
                "text": ["Ann", "Bo", "Rome", "Ann", "Rome"],
                "start": [0, 8, 14, 31, 38],
                "end": [3, 10, 18, 34, 42],
            },
            "answers": ["Rome"],
            "idx": {"passage": 0, "query": 1},
        },
    ],
    ("record", "test"): [
        # entity_spans as a list of structs (`List` feature), end exclusive.
        {
            "passage": "Cy saw Di.",
            "query": "@placeholder saw Di.",
            "entities": ["Cy", "Di"],
            "entity_spans": [{"text": "Cy", "start": 0, "end": 2}, {"text": "Di", "start": 7, "end": 9}],
            "answers": [],
            "idx": {"passage": 5, "query": 9},
        },
    ],
}

OFFICIAL = {
    ("boolq", "val"): [
        {"question": "is ice less dense than water", "passage": "Ice floats on water.", "idx": 0, "label": True},
        {"question": "is the moon a star", "passage": "The Moon reflects light.", "idx": 1, "label": False},
    ],
    ("boolq", "test"): [{"question": "is it", "passage": "It is.", "idx": 0}],
    ("cb", "train"): [
        {"premise": "She knew he had left.", "hypothesis": "he had left", "idx": 0, "label": "entailment"},
        {"premise": "I doubt it rained.", "hypothesis": "it rained", "idx": 1, "label": "contradiction"},
        {"premise": "He hoped it would work.", "hypothesis": "it would work", "idx": 2, "label": "neutral"},
    ],
    ("copa", "val"): [
        {
            "premise": "The man fell.",
            "choice1": "He tripped.",
            "choice2": "He sang.",
            "question": "cause",
            "idx": 0,
            "label": 0,
        },
    ],
    ("rte", "val"): [
        {"premise": "A cat sleeps.", "hypothesis": "An animal sleeps.", "idx": 0, "label": "entailment"},
        {"premise": "A cat sleeps.", "hypothesis": "A dog sleeps.", "idx": 1, "label": "not_entailment"},
    ],
    ("wic", "val"): [
        {
            "word": "bank",
            "sentence1": "The bank of the river.",
            "sentence2": "The bank closed.",
            "idx": 0,
            "start1": 4,
            "start2": 4,
            "end1": 8,
            "end2": 8,
            "label": False,
        },
    ],
    ("wsc", "val"): [
        {
            "text": "Ann thanked Bea because she helped.",
            "idx": 0,
            "label": True,
            "target": {"span1_index": 2, "span2_index": 4, "span1_text": "Bea", "span2_text": "she"},
        },
    ],
    ("axb", "test"): [
        {"sentence1": "A cat sleeps.", "sentence2": "A cat does not sleep.", "idx": "0", "label": "not_entailment"}
    ],
    ("axg", "test"): [
        {
            "premise": "The nurse said she was late.",
            "hypothesis": "The nurse was late.",
            "idx": 0,
            "label": "entailment",
        }
    ],
    ("multirc", "val"): [
        {
            "idx": 0,
            "passage": {
                "text": "<b>Sent 1: </b>Ann baked bread.<br>",
                "questions": [
                    {
                        "question": "What did Ann bake?",
                        "idx": 0,
                        "answers": [{"text": "Bread", "idx": 0, "label": 1}, {"text": "Cake", "idx": 1, "label": 0}],
                    },
                    {"question": "Who baked?", "idx": 1, "answers": [{"text": "Ann", "idx": 2, "label": 1}]},
                ],
            },
        },
        {
            "idx": 1,
            "passage": {
                "text": "<b>Sent 1: </b>Bo ran.<br>",
                "questions": [{"question": "Who ran?", "idx": 2, "answers": [{"text": "Bo", "idx": 3, "label": 1}]}],
            },
        },
    ],
    ("record", "val"): [
        {
            "idx": 0,
            "passage": {
                "text": "Ann met Bo in Rome.\n@highlight\nAnn in Rome",
                "entities": [
                    {"start": 0, "end": 2},
                    {"start": 8, "end": 9},
                    {"start": 14, "end": 17},
                    {"start": 31, "end": 33},
                    {"start": 38, "end": 41},
                ],
            },
            "qas": [
                {
                    "query": "@placeholder met Bo.",
                    "idx": 0,
                    "answers": [{"start": 0, "end": 2, "text": "Ann"}, {"start": 31, "end": 33, "text": "Ann"}],
                },
                {
                    "query": "They met in @placeholder.",
                    "idx": 1,
                    "answers": [{"start": 14, "end": 17, "text": "Rome"}, {"start": 38, "end": 41, "text": "Rome"}],
                },
            ],
        },
    ],
    ("record", "test"): [
        {
            "idx": 5,
            "passage": {"text": "Cy saw Di.", "entities": [{"start": 0, "end": 1}, {"start": 7, "end": 8}]},
            "qas": [{"query": "@placeholder saw Di.", "idx": 9}],
        },
    ],
}


@pytest.fixture
def fake_hub(monkeypatch):
    """Serves HUB_ROWS through `datasets.load_dataset`; records the calls. Never touches the network."""
    import datasets

    calls = []

    def load_dataset(path, name, *, revision, split):
        calls.append((path, name, revision, split))
        return list(HUB_ROWS[name, split])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


@pytest.mark.parametrize("task,split", list(OFFICIAL))
def test_hub_rows_become_official_records(fake_hub, task, split):
    records = load_records(task, split, DataSource.from_dir("hub"))
    assert records == OFFICIAL[task, split]
    hub_split = {"val": "validation"}.get(split, split)
    assert fake_hub == [("aps/super_glue", TASKS[task].hub_config, "refs/convert/parquet", hub_split)]
    for record in records:
        validate_record(task, record, split)


def _to_hub(task: str, records: list[dict]) -> list[dict]:
    """Official -> Hub rows, the way the Hub's builder flattened them (ClassLabel ids, end + 1)."""
    label_ids = {"cb": ["entailment", "contradiction", "neutral"], "rte": ["entailment", "not_entailment"]}
    label_ids["axb"] = label_ids["axg"] = label_ids["rte"]
    rows = []
    for r in records:
        if task == "multirc":
            for q in r["passage"]["questions"]:
                for a in q["answers"]:
                    rows.append(
                        {
                            "paragraph": r["passage"]["text"],
                            "question": q["question"],
                            "answer": a["text"],
                            "label": a.get("label", -1),
                            "idx": {"paragraph": r["idx"], "question": q["idx"], "answer": a["idx"]},
                        }
                    )
        elif task == "record":
            text = r["passage"]["text"]
            spans = sorted(
                (
                    {"text": text[e["start"] : e["end"] + 1], "start": e["start"], "end": e["end"] + 1}
                    for e in r["passage"]["entities"]
                ),
                key=lambda s: s["start"],
            )
            for qa in r["qas"]:
                rows.append(
                    {
                        "passage": text,
                        "query": qa["query"],
                        "entities": sorted({s["text"] for s in spans}),
                        "entity_spans": {k: [s[k] for s in spans] for k in ("text", "start", "end")},
                        "answers": sorted({a["text"] for a in qa.get("answers", [])}),
                        "idx": {"passage": r["idx"], "query": qa["idx"]},
                    }
                )
        else:
            row = {k: v for k, v in r.items() if k not in ("target", "label", "version", "logic", "pair_id")}
            row.update(r.get("target", {}))
            row["idx"] = int(r["idx"])
            label = r.get("label", -1)
            row["label"] = label_ids[task].index(label) if task in label_ids and label != -1 else int(label)
            rows.append(row)
    return rows


def _drop_hub_losses(task: str, records: list[dict]) -> list[dict]:
    """The official fields the Hub never had: versions, ReCoRD source, AX-b logic, AX-g pair_id."""
    lost = {
        "wic": ("version",),
        "multirc": ("version",),
        "record": ("source",),
        "axb": ("logic",),
        "axg": ("pair_id",),
    }.get(task, ())
    return [{k: v for k, v in r.items() if k not in lost} for r in records]


def _canonical(task: str, records: list[dict]) -> list[dict]:
    if task == "record":  # the Hub keeps answer texts only; answers come back as all matching mentions
        for r in records:
            for qa in r["qas"]:
                if "answers" in qa:
                    qa["answers"] = sorted(qa["answers"], key=lambda a: a["start"])
    return records


@pytest.mark.parametrize("task,split", ALL_SPLITS)
def test_hub_conversion_round_trips_the_sample(task, split):
    official = read_raw(task, split)
    back = TASKS[task].from_hub(_to_hub(task, official))
    assert _canonical(task, back) == _canonical(task, _drop_hub_losses(task, official))
    for record in back:
        validate_record(task, record, split)


def test_hub_record_answer_without_entity_span_falls_back_to_text():
    rows = [
        {
            "passage": "Ann met Bo.",
            "query": "@placeholder met Bo.",
            "entities": ["Bo"],
            "entity_spans": {"text": ["Bo"], "start": [8], "end": [10]},
            "answers": ["Ann"],
            "idx": {"passage": 0, "query": 0},
        }
    ]
    [record] = record_task.from_hub(rows)
    assert record["qas"][0]["answers"] == [{"start": 0, "end": 2, "text": "Ann"}]
    rows[0]["answers"] = ["Cy"]
    with pytest.raises(ValueError, match="'Cy' occurs nowhere"):
        record_task.from_hub(rows)


def test_hub_unreachable_points_to_data_dir(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'aps/super_glue' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match=r"unreachable.*data\.dir=/path/to/SuperGLUE") as info:
        load_records("rte", "val", DataSource(kind="hub"))
    assert isinstance(info.value.__cause__, ConnectionError)


def test_hub_unreachable_with_real_datasets_offline():
    # conftest sets HF_HUB_OFFLINE=1; an id nobody has cached fails fast without network.
    source = DataSource(kind="hub", hub_id="promptscale-tests/no-such-dataset")
    with pytest.raises(RuntimeError, match=r"data\.dir="):
        load_records("cb", "val", source)
