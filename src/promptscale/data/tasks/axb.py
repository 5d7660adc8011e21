"""AX-b, the broad-coverage diagnostic: RTE-format pairs scored by Matthews correlation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from promptscale.data import schema
from promptscale.data.tasks import common
from promptscale.data.tasks.rte import pair_task
from promptscale.data.tasks.scoring import LabelMetric
from promptscale.data.tasks.spec import TaskSpec


def check(record: dict, split: str) -> None:
    """Official schema: ``sentence1``, ``sentence2``, a *string* ``idx``, ``label``, categories."""
    # The official file has a string idx and diagnostic category fields; the Hub keeps neither.
    common.check_pair("sentence1", "sentence2", common.NLI2, (int, str))(record, split)
    schema.optional(record, "logic", str)


def from_hub(rows: Iterable[Mapping]) -> list[dict]:
    """Hub rows -> official records; the Hub cast the string idx to int32, so it is cast back."""
    return [
        common.labelled(
            {"sentence1": r["sentence1"], "sentence2": r["sentence2"], "idx": str(r["idx"])},
            common.hub_label(r, common.NLI2),
        )
        for r in rows
    ]


# RTE's format and template with sentence1 as the premise; the task stays "axb".
format, template = pair_task("axb", "sentence1", "sentence2")

SPEC = TaskSpec(
    name="axb",
    folder="AX-b",
    splits=("test",),
    version=1,
    label_words=common.NLI2,
    hub_config="axb",
    metric=LabelMetric(("matthews_corr",)),
    check=check,
    format=format,
    from_hub=from_hub,
    template=template,
    postprocess=common.label_postprocess,
    in_score=False,
)
