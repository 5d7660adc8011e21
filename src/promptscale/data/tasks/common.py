"""Helpers shared by the task modules: label reading, T5's ``key: value`` joining, Hub rows.

One reading of labels for the T5 formats and the prompt-design templates alike, so a label
means the same index everywhere the metrics look at it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from promptscale.data import schema
from promptscale.data.example import Example

BOOL_CHOICES = ("False", "True")  # T5's targets for boolean tasks; index = the label
NO_YES = ("no", "yes")  # the templates' answer words for boolean tasks; index = the label
NLI2 = ("entailment", "not_entailment")


# --------------------------------------------------------------------------- labels


def is_missing(label: Any) -> bool:
    """True for an unlabelled record: no label key, ``None`` or the integer ``-1``.

    ``bool`` is a subclass of ``int`` in Python, so ``False`` must not be mistaken for a
    missing label (``False == 0``, never ``-1``, but be explicit).
    """
    return label is None or (not isinstance(label, bool) and label == -1)


def bool_label(record: dict) -> int:
    """Maps a JSON boolean label (BoolQ, WiC, WSC, MultiRC answers) to 0/1, or -1 when unlabelled.

    Accepts the official JSON booleans and, leniently, 0/1 or "true"/"false" strings (the
    flattened Hub schema), because a silently wrong label is worse than a strict one.
    """
    label = record.get("label")
    if is_missing(label):
        return -1
    if isinstance(label, str):
        low = label.strip().lower()
        if low in ("true", "1"):
            return 1
        if low in ("false", "0"):
            return 0
        raise ValueError(f"cannot read boolean label {label!r}")
    if label in (0, 1):  # also True / False
        return int(label)
    raise ValueError(f"cannot read boolean label {label!r}")


def class_label(label: Any, choices: tuple[str, ...]) -> int:
    """Maps a label given as its name (CB, RTE, AX) or index (COPA) to an index, -1 if none."""
    if is_missing(label):
        return -1
    if isinstance(label, str):
        if label not in choices:
            raise ValueError(f"label {label!r} is not one of {choices}")
        return choices.index(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(choices):
        raise ValueError(f"label {label!r} is not an index into {choices}")
    return label


# --------------------------------------------------------------------------- examples


def join(task_word: str, fields: list[tuple[str, str]], *, prefix: bool) -> str:
    """Joins ``key: value`` pairs after the task word, the way T5's ``glue`` preprocessor does.

    T5 joins with single spaces and keeps the task name as the first word; prompt tuning drops
    that first word (the prompt plays the task name's role), so ``prefix=False`` omits it.
    """
    parts = [task_word] if prefix else []
    for key, value in fields:
        parts += [f"{key}:", value]
    return " ".join(parts)


def choice_example(task: str, inputs: str, choices: tuple[str, ...], label: int, idx: Any) -> Example:
    """A rank-classification example of one record; unlabelled gets empty targets and no answers.

    ``group`` and ``id`` are both the record's ``idx``: one example per record.
    """
    targets = choices[label] if label >= 0 else ""
    return Example(
        task=task,
        inputs=inputs,
        targets=targets,
        choices=choices,
        label=label,
        group=str(idx),
        answers=(targets,) if label >= 0 else (),
        id=str(idx),
    )


def label_postprocess(text: str, example: Example) -> tuple[int, bool]:
    """T5's ``string_label_to_class_id``: the choice the text is, exactly, else -1 (invalid).

    The decoded text is compared as it is: no stripping or case folding, because T5 does
    none, and an output with stray spaces or another case is no label in the paper's protocol.
    """
    if text in example.choices:
        return example.choices.index(text), True
    return -1, False


# --------------------------------------------------------------------------- schema


def check_pair(first: str, second: str, labels: tuple, idx_types: tuple[type, ...] = (int,)):
    """A ``check`` for two-text tasks (CB, RTE and the diagnostics): two texts, an idx, a label."""

    def check(record: dict, split: str) -> None:
        schema.texts(record, first, second)
        schema.get(record, "idx", idx_types)
        schema.label(record, split, labels)

    return check


# --------------------------------------------------------------------------- Hub


def hub_label(row: Mapping, names: tuple) -> Any:
    """Maps a Hub ClassLabel id to the official value; ``None`` for -1 (unlabelled test)."""
    label = row.get("label", -1)
    return None if label is None or label < 0 else names[label]


def labelled(record: dict, label: Any) -> dict:
    """Adds ``label`` to an official record unless it is ``None`` (test rows carry no label)."""
    if label is not None:
        record["label"] = label
    return record


def flat_from_hub(keys: tuple[str, ...], names: tuple) -> Callable[[Iterable[Mapping]], list[dict]]:
    """A Hub converter for tasks whose Hub rows are the official fields plus a ClassLabel id."""

    def from_hub(rows: Iterable[Mapping]) -> list[dict]:
        return [labelled({k: r[k] for k in keys}, hub_label(r, names)) for r in rows]

    return from_hub


def as_rows(seq: Any) -> list[Mapping]:
    """A sequence of structs as rows: ``datasets`` returns a legacy ``Sequence({...})`` as a
    dict of lists, a ``List({...})`` as a list of dicts; accept both."""
    if isinstance(seq, Mapping):
        keys = list(seq)
        return [dict(zip(keys, values)) for values in zip(*(seq[k] for k in keys))]
    return list(seq)
