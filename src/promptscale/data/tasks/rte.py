"""RTE (Dagan et al. 2005 and later): two-way entailment; also the format of the diagnostics."""

from __future__ import annotations

from collections.abc import Callable

from promptscale.data.example import Example
from promptscale.data.tasks import common
from promptscale.data.tasks.scoring import LabelMetric
from promptscale.data.tasks.spec import TaskSpec

WORDS = ("true", "false")  # the template's answer words, in NLI2 order


def pair_task(task: str, premise: str, hypothesis: str) -> tuple[Callable[..., list[Example]], Callable]:
    """The T5 formatter and the template of an RTE-format task, reading two named fields.

    AX-b and AX-g are evaluated with an RTE-trained model, so they must look exactly like
    RTE, "rte" task word included; ``Example.task`` keeps ``task`` so each is scored with its
    own metric.

    Args:
        task: The task the examples belong to.
        premise: Field holding the premise (AX-b calls it ``sentence1``).
        hypothesis: Field holding the hypothesis (AX-b: ``sentence2``).

    Returns:
        ``(format, template)`` for the task's ``TaskSpec``.
    """

    def format(record: dict, *, prefix: bool, train: bool) -> list[Example]:
        """``rte hypothesis: {hypothesis} premise: {premise}`` -> ``entailment``/``not_entailment``.

        Training and evaluation examples are the same.
        """
        del train
        fields = [("hypothesis", record[hypothesis]), ("premise", record[premise])]
        label = common.class_label(record.get("label"), common.NLI2)
        return [
            common.choice_example(task, common.join("rte", fields, prefix=prefix), common.NLI2, label, record["idx"])
        ]

    def template(record: dict) -> list[Example]:
        """``{premise}\\nQuestion: {hypothesis} True or False?\\nAnswer:`` -> true / false."""
        inputs = f"{record[premise]}\nQuestion: {record[hypothesis]} True or False?\nAnswer:"
        label = common.class_label(record.get("label"), common.NLI2)
        return [common.choice_example(task, inputs, WORDS, label, record["idx"])]

    return format, template


format, template = pair_task("rte", "premise", "hypothesis")

SPEC = TaskSpec(
    name="rte",
    folder="RTE",
    version=1,
    label_words=common.NLI2,
    hub_config="rte",
    metric=LabelMetric(("accuracy",)),
    check=common.check_pair("premise", "hypothesis", common.NLI2),
    format=format,
    from_hub=common.flat_from_hub(("premise", "hypothesis", "idx"), common.NLI2),
    template=template,
    postprocess=common.label_postprocess,
)
