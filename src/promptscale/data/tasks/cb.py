"""CommitmentBank (de Marneffe et al. 2019): three-way entailment of an embedded clause."""

from __future__ import annotations

from promptscale.data.example import Example
from promptscale.data.tasks import common
from promptscale.data.tasks.scoring import LabelMetric
from promptscale.data.tasks.spec import TaskSpec

LABELS = ("entailment", "contradiction", "neutral")  # official names, in the Hub's ClassLabel order
WORDS = ("true", "false", "neither")  # the template's answer words, in the same order


def format(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """``cb hypothesis: {hypothesis} premise: {premise}`` -> one of the three label names."""
    del train
    inputs = common.join("cb", [("hypothesis", record["hypothesis"]), ("premise", record["premise"])], prefix=prefix)
    return [common.choice_example("cb", inputs, LABELS, common.class_label(record.get("label"), LABELS), record["idx"])]


def template(record: dict) -> list[Example]:
    """``{premise}\\nQuestion: {hypothesis} True, False, or Neither?\\nAnswer:`` -> true / false / neither."""
    inputs = f"{record['premise']}\nQuestion: {record['hypothesis']} True, False, or Neither?\nAnswer:"
    return [common.choice_example("cb", inputs, WORDS, common.class_label(record.get("label"), LABELS), record["idx"])]


SPEC = TaskSpec(
    name="cb",
    folder="CB",
    version=1,
    label_words=LABELS,
    hub_config="cb",
    # T5: accuracy and the mean F1 over all three classes (labels=range(3)).
    metric=LabelMetric(("accuracy", "f1_macro"), num_labels=len(LABELS)),
    check=common.check_pair("premise", "hypothesis", LABELS),
    format=format,
    from_hub=common.flat_from_hub(("premise", "hypothesis", "idx"), LABELS),
    template=template,
    postprocess=common.label_postprocess,
)
