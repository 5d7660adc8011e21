"""WiC (Pilehvar & Camacho-Collados 2019): is a word used with the same sense in two sentences?"""

from __future__ import annotations

from promptscale.data import schema
from promptscale.data.example import Example
from promptscale.data.tasks import common
from promptscale.data.tasks.scoring import LabelMetric
from promptscale.data.tasks.spec import TaskSpec


def check(record: dict, split: str) -> None:
    """Official schema: ``word``, two sentences with exclusive character offsets, ``idx``, boolean label."""
    schema.text(record, "word")
    schema.get(record, "idx", int)
    schema.optional(record, "version", (str, int, float))
    for n in ("1", "2"):
        sentence = schema.text(record, f"sentence{n}")
        start, end = schema.get(record, f"start{n}", int), schema.get(record, f"end{n}", int)
        schema.span(start, end, len(sentence), f"start{n}/end{n}", inclusive=False)
    schema.label(record, split, schema.BOOL)


def format(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """``wic sentence1: {s1} sentence2: {s2} word: {word}`` -> ``False``/``True``.

    The character offsets of the word are not used: T5 gives the word itself.
    """
    del train
    fields = [(key, record[key]) for key in ("sentence1", "sentence2", "word")]
    inputs = common.join("wic", fields, prefix=prefix)
    return [common.choice_example("wic", inputs, common.BOOL_CHOICES, common.bool_label(record), record["idx"])]


def template(record: dict) -> list[Example]:
    """Both sentences, then whether ``word`` means the same in both -> no / yes."""
    inputs = (
        f"Sentence 1: {record['sentence1']}\nSentence 2: {record['sentence2']}\n"
        f'Question: Is the word "{record["word"]}" used with the same meaning in both '
        "sentences?\nAnswer:"
    )
    return [common.choice_example("wic", inputs, common.NO_YES, common.bool_label(record), record["idx"])]


SPEC = TaskSpec(
    name="wic",
    folder="WiC",
    version=1,
    label_words=common.BOOL_CHOICES,
    hub_config="wic",
    metric=LabelMetric(("accuracy",)),
    check=check,
    format=format,
    from_hub=common.flat_from_hub(
        ("word", "sentence1", "sentence2", "idx", "start1", "start2", "end1", "end2"), schema.BOOL
    ),
    template=template,
    postprocess=common.label_postprocess,
)
