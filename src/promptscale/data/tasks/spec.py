"""``TaskSpec``: everything the project knows about one task, in one object.

A task module builds one ``TaskSpec`` from its own pure functions, and the registry
(``promptscale.data.tasks``) collects them; loading, formatting, templates, postprocessing and
metrics all look a task up there instead of branching on its name. Bump ``version`` whenever the
task's T5 text format changes: it is recorded in every result row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from promptscale.data.example import Example
from promptscale.data.tasks.scoring import Metric

Check = Callable[[dict, str], None]
Format = Callable[..., list[Example]]  # (record, *, prefix: bool, train: bool) -> examples
FromHub = Callable[[Iterable[Mapping]], list[dict]]
Template = Callable[[dict], list[Example]]
CountUnits = Callable[[list[dict]], int]
Postprocess = Callable[[str, Example], tuple[int | str, bool]]


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One SuperGLUE task: its facts and the pure functions that read, format and score it.

    Attributes:
        name: Lower-case task name used in configs, metric keys and result rows.
        folder: Folder name in the official SuperGLUE release.
        splits: Splits present in the official release (AX-b / AX-g hold only ``test``).
        version: Format version; bump when the T5 formatter's output changes.
        label_words: Words whose embeddings initialise prompt tuning's "class label" init
            (Lester et al. 2021): the verbalisers, or descriptive words for open tasks.
        hub_config: Config name of the Hub dataset ``aps/super_glue``.
        metric: How the task is scored (``scoring.LabelMetric`` and friends); its ``names``
            are the task's metrics.
        check: ``check(record, split)`` validates one official-schema record, raising
            ``schema.FieldError`` naming the field.
        format: ``format(record, *, prefix, train) -> list[Example]``, T5's text-to-text format.
        from_hub: ``from_hub(rows) -> list[dict]``, Hub rows back to official records.
        template: ``template(record) -> list[Example]``, the GPT-3-style prompt-design template.
        postprocess: ``postprocess(text, example) -> (prediction, valid)``, generated text to
            what the metric compares (see ``promptscale.data.formats.postprocess``).
        count_units: ``count_units(records) -> int``, what the task is scored over (records by
            default; MultiRC answer options, ReCoRD queries).
        in_score: Whether the task counts towards the SuperGLUE score (AX-b/AX-g do not).
        open_ended: The T5-format prediction is text, not a label index (ReCoRD, WSC).
    """

    name: str
    folder: str
    splits: tuple[str, ...] = ("train", "val", "test")
    version: int
    label_words: tuple[str, ...]
    hub_config: str
    metric: Metric
    check: Check
    format: Format
    from_hub: FromHub
    template: Template
    postprocess: Postprocess
    count_units: CountUnits = len
    in_score: bool = True
    open_ended: bool = False

    @property
    def metrics(self) -> tuple[str, ...]:
        """Metric names reported for the task (averaged into the task score)."""
        return self.metric.names
