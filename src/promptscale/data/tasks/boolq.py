"""BoolQ (Clark et al. 2019): a yes/no question about a Wikipedia passage."""

from __future__ import annotations

from promptscale.data import schema
from promptscale.data.example import Example
from promptscale.data.tasks import common
from promptscale.data.tasks.scoring import LabelMetric
from promptscale.data.tasks.spec import TaskSpec


def check(record: dict, split: str) -> None:
    """Official schema: ``question``, ``passage``, integer ``idx``, JSON boolean ``label``."""
    schema.texts(record, "question", "passage")
    schema.get(record, "idx", int)
    schema.label(record, split, schema.BOOL)


def format(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """``boolq passage: {passage} question: {question}`` -> ``False``/``True``.

    T5 orders the fields alphabetically, hence the passage before the question (and, cut at
    512 tokens, the question is what gets cut, as in T5). Training and evaluation examples
    are the same.
    """
    del train
    inputs = common.join("boolq", [("passage", record["passage"]), ("question", record["question"])], prefix=prefix)
    return [common.choice_example("boolq", inputs, common.BOOL_CHOICES, common.bool_label(record), record["idx"])]


def template(record: dict) -> list[Example]:
    """``{passage}\\nQuestion: {question}?\\nAnswer:`` -> no / yes."""
    inputs = f"{record['passage']}\nQuestion: {record['question']}?\nAnswer:"
    return [common.choice_example("boolq", inputs, common.NO_YES, common.bool_label(record), record["idx"])]


SPEC = TaskSpec(
    name="boolq",
    folder="BoolQ",
    version=1,
    label_words=common.BOOL_CHOICES,
    hub_config="boolq",
    metric=LabelMetric(("accuracy",)),
    check=check,
    format=format,
    from_hub=common.flat_from_hub(("question", "passage", "idx"), schema.BOOL),
    template=template,
    postprocess=common.label_postprocess,
)
