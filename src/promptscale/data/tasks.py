"""Task specs: SuperGLUE tasks as data (folder, splits, metrics, format version, label words).

A spec is the single place a task's facts live; formatters (``formats.py``) and metrics
(``metrics.py``) look tasks up here by name. Bump ``version`` whenever the task's text
format changes: it is recorded in every result row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    """Static facts about one SuperGLUE task.

    Attributes:
        name: Lower-case task name used in configs, metric keys and result rows.
        folder: Folder name in the official SuperGLUE release.
        splits: Splits present in the official release (AX-b / AX-g hold only ``test``).
        metrics: Metric names reported for the task (averaged into the task score).
        version: Format version; bump when the formatter's output changes.
        label_words: Words whose embeddings initialise prompt tuning's "class label" init
            (Lester et al. 2021): the verbalisers, or descriptive words for open tasks.
        hub_config: Config name of the Hub dataset ``aps/super_glue``.
        in_score: Whether the task counts towards the SuperGLUE score (AX-b/AX-g do not).
    """

    name: str
    folder: str
    splits: tuple[str, ...]
    metrics: tuple[str, ...]
    version: int
    label_words: tuple[str, ...]
    hub_config: str
    in_score: bool = True


_TRAIN_VAL_TEST = ("train", "val", "test")
_NLI2 = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {
    s.name: s
    for s in (
        TaskSpec("boolq", "BoolQ", _TRAIN_VAL_TEST, ("accuracy",), 1, ("False", "True"), "boolq"),
        TaskSpec(
            "cb", "CB", _TRAIN_VAL_TEST, ("accuracy", "f1_macro"), 1, ("entailment", "contradiction", "neutral"), "cb"
        ),
        TaskSpec("copa", "COPA", _TRAIN_VAL_TEST, ("accuracy",), 1, ("choice1", "choice2"), "copa"),
        TaskSpec("multirc", "MultiRC", _TRAIN_VAL_TEST, ("f1a", "em"), 1, ("False", "True"), "multirc"),
        TaskSpec(
            "record",
            "ReCoRD",
            _TRAIN_VAL_TEST,
            ("em", "f1"),
            1,
            ("commonsense", "reasoning", "reading", "comprehension"),
            "record",
        ),
        TaskSpec("rte", "RTE", _TRAIN_VAL_TEST, ("accuracy",), 1, _NLI2, "rte"),
        TaskSpec("wic", "WiC", _TRAIN_VAL_TEST, ("accuracy",), 1, ("False", "True"), "wic"),
        TaskSpec(
            "wsc", "WSC", _TRAIN_VAL_TEST, ("accuracy",), 1, ("commonsense", "pronoun", "resolution"), "wsc.fixed"
        ),
        TaskSpec("axb", "AX-b", ("test",), ("matthews_corr",), 1, _NLI2, "axb", in_score=False),
        TaskSpec("axg", "AX-g", ("test",), ("accuracy",), 1, _NLI2, "axg", in_score=False),
    )
}

SCORED_TASKS: tuple[str, ...] = tuple(n for n, s in TASKS.items() if s.in_score)


def get_task(name: str) -> TaskSpec:
    """Returns the spec of ``name`` or raises a ``KeyError`` listing the valid names."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}") from None
