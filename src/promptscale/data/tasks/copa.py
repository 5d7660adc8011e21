"""COPA (Roemmele et al. 2011): which of two alternatives is the cause (or effect) of a premise."""

from __future__ import annotations

from promptscale.data import schema
from promptscale.data.example import Example
from promptscale.data.tasks import common
from promptscale.data.tasks.scoring import LabelMetric
from promptscale.data.tasks.spec import TaskSpec

CHOICES = ("choice1", "choice2")


def check(record: dict, split: str) -> None:
    """Official schema: ``premise``, ``choice1``, ``choice2``, ``question`` (cause/effect), ``idx``, 0/1."""
    schema.texts(record, "premise", "choice1", "choice2")
    if schema.get(record, "question", str) not in ("cause", "effect"):
        raise schema.FieldError("question", f"expected one of ['cause', 'effect'], got {record['question']!r}")
    schema.get(record, "idx", int)
    schema.label(record, split, schema.BINARY)


def format(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """``copa choice1: .. choice2: .. premise: .. question: cause|effect`` -> ``choice1|2``.

    The targets are the literal words "choice1"/"choice2" (as in T5), not the choice text, so
    COPA is a two-way classification like the others.
    """
    del train
    fields = [(key, record[key]) for key in ("choice1", "choice2", "premise", "question")]
    label = common.class_label(record.get("label"), CHOICES)
    return [common.choice_example("copa", common.join("copa", fields, prefix=prefix), CHOICES, label, record["idx"])]


def _lower_first(text: str) -> str:
    """Lower-cases the first letter so a choice continues the premise mid-sentence (as GPT-3)."""
    return text[:1].lower() + text[1:]


def template(record: dict) -> list[Example]:
    """``{premise without the full stop} because|so`` -> the more likely continuation.

    The choices are the two alternatives themselves, so the model scores real text rather
    than the labels "choice1"/"choice2" it has never been taught.
    """
    connector = "because" if record["question"] == "cause" else "so"
    inputs = f"{record['premise'].rstrip().rstrip('.')} {connector}"
    choices = (_lower_first(record["choice1"]), _lower_first(record["choice2"]))
    return [
        common.choice_example("copa", inputs, choices, common.class_label(record.get("label"), CHOICES), record["idx"])
    ]


SPEC = TaskSpec(
    name="copa",
    folder="COPA",
    version=1,
    label_words=CHOICES,
    hub_config="copa",
    metric=LabelMetric(("accuracy",)),
    check=check,
    format=format,
    from_hub=common.flat_from_hub(("premise", "choice1", "choice2", "question", "idx"), schema.BINARY),
    template=template,
    postprocess=common.label_postprocess,
)
