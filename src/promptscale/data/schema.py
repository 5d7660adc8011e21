"""Field checks for one record in the official SuperGLUE schema: the vocabulary task checks use.

Each task module's ``check(record, split)`` is written with these helpers, so a malformed
record fails with the dotted path of the offending field and what is wrong with it. The file
and line are added by ``promptscale.data.sources`` (``RecordError``), which reads the files.
This module knows no task: it is imported by every task module and must not import them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class FieldError(ValueError):
    """One field of one record is missing or wrong (no file position: see ``sources.RecordError``).

    Attributes:
        field: Dotted path of the field, e.g. ``passage.qas[0].answers[1].end``.
        reason: What is wrong with it.
    """

    def __init__(self, field: str, reason: str):
        super().__init__(f"field {field!r}: {reason}")
        self.field = field
        self.reason = reason


BOOL = (False, True)
"""JSON booleans: the labels of BoolQ, WiC and WSC."""
BINARY = (0, 1)
"""JSON integers 0/1: the labels of COPA and of MultiRC answers."""


def short(value: Any) -> str:
    """``repr`` cut to 60 characters, for error messages about long texts."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON true/false must not pass as an int
        return bool in types
    return isinstance(value, types)


def get(obj: dict, key: str, types: type | tuple[type, ...], path: str = "") -> Any:
    """Returns ``obj[key]`` after checking presence and JSON type.

    Raises:
        FieldError: The key is missing or its value has another JSON type.
    """
    types = types if isinstance(types, tuple) else (types,)
    field = f"{path}{key}"
    if key not in obj:
        raise FieldError(field, "missing")
    value = obj[key]
    if not _type_ok(value, types):
        expected = " or ".join(t.__name__ for t in types)
        raise FieldError(field, f"expected {expected}, got {type(value).__name__} {short(value)}")
    return value


def text(obj: dict, key: str, path: str = "") -> str:
    """Returns a required text field, refusing an empty (or whitespace-only) string.

    An empty premise or question formats to a valid-looking input the model cannot answer;
    it is a damaged file, so it is reported like a missing field.
    """
    value = get(obj, key, str, path)
    if not value.strip():
        raise FieldError(f"{path}{key}", f"empty text {value!r}")
    return value


def texts(obj: dict, *keys: str, path: str = "") -> None:
    """Checks several required text fields (see ``text``)."""
    for key in keys:
        text(obj, key, path)


def optional(obj: dict, key: str, types: type | tuple[type, ...], path: str = "") -> None:
    """Checks the JSON type of ``obj[key]`` when present (fields the Hub dropped)."""
    if key in obj:
        get(obj, key, types, path)


def label(obj: dict, split: str, allowed: tuple, path: str = "") -> None:
    """Checks a label's value (and JSON type: ``1`` is not ``true``); absent is fine on test."""
    field = f"{path}label"
    if "label" not in obj:
        if split != "test":
            raise FieldError(field, f"missing (only test records may be unlabelled; split is {split!r})")
        return
    value = obj["label"]
    if not any(type(value) is type(a) and value == a for a in allowed):
        raise FieldError(field, f"expected one of {sorted(allowed)}, got {value!r}")


def span(start: int, end: int, size: int, field: str, *, inclusive: bool) -> None:
    """Checks that character offsets ``[start, end]`` lie inside a text of ``size`` characters."""
    last = end if inclusive else end - 1
    if not 0 <= start <= last < size:
        kind = "inclusive" if inclusive else "exclusive"
        raise FieldError(field, f"span [{start}, {end}] ({kind} end) outside text of length {size}")


def objects(obj: dict, key: str, path: str = "", *, nonempty: bool = True) -> list[dict]:
    """Returns a list field whose items must all be JSON objects (and, by default, at least one)."""
    value = get(obj, key, list, path)
    if nonempty and not value:
        raise FieldError(f"{path}{key}", "empty list")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise FieldError(f"{path}{key}[{i}]", f"expected an object, got {short(item)}")
    return value


def unique_ids(fields: Iterable[tuple[str, Any]], what: str) -> None:
    """Refuses a repeated id among nested items of one record (MultiRC answers, ReCoRD queries).

    Ids are what evaluation examples are known by (``Example.id``); a repeat would make two
    examples indistinguishable in a predictions file and merge two groups in the metrics.

    Args:
        fields: ``(dotted path, id value)`` pairs in record order.
        what: What the ids identify, for the message ("question", "answer", "query").

    Raises:
        FieldError: On the second occurrence, naming the path of the first.
    """
    first: dict[Any, str] = {}
    for field, value in fields:
        if value in first:
            raise FieldError(field, f"duplicate {what} idx {value!r} (first at {first[value]})")
        first[value] = field
