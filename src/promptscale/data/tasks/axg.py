"""AX-g, the Winogender diagnostic: RTE-format pairs scored by accuracy."""

from __future__ import annotations

from promptscale.data import schema
from promptscale.data.tasks import common
from promptscale.data.tasks.rte import pair_task
from promptscale.data.tasks.scoring import LabelMetric
from promptscale.data.tasks.spec import TaskSpec


def check(record: dict, split: str) -> None:
    """Official schema: ``premise``, ``hypothesis``, ``idx``, ``label`` and (not on the Hub) ``pair_id``."""
    common.check_pair("premise", "hypothesis", common.NLI2)(record, split)
    schema.optional(record, "pair_id", int)


# RTE's format and template; the task stays "axg".
format, template = pair_task("axg", "premise", "hypothesis")

SPEC = TaskSpec(
    name="axg",
    folder="AX-g",
    splits=("test",),
    version=1,
    label_words=common.NLI2,
    hub_config="axg",
    metric=LabelMetric(("accuracy",)),
    check=check,
    format=format,
    from_hub=common.flat_from_hub(("premise", "hypothesis", "idx"), common.NLI2),  # the Hub drops pair_id
    template=template,
    postprocess=common.label_postprocess,
    in_score=False,
)
