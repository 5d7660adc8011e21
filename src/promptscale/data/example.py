"""The unit every formatter produces and every method consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One text-to-text example, plus what evaluation needs to score it.

    Attributes:
        task: Task name (``promptscale.data.tasks.TASKS`` key).
        inputs: Encoder input text (with or without the task-name prefix, as formatted).
        targets: Decoder target text used for training (and as the gold text).
        choices: Verbalised candidates for rank classification, in a fixed order; empty for
            open-ended tasks scored only by generation (T5-format WSC).
        label: Index of the gold candidate in ``choices``; for WSC the truth label (0/1);
            -1 when unknown (unlabelled test data, or ReCoRD with no gold among candidates).
        group: Id the metrics group by: MultiRC question id, ReCoRD query id, else the
            record's ``idx`` as a string.
        answers: Gold texts: ReCoRD's answer texts, WSC's referent; else ``(targets,)``.
        id: Identity of the example within its (task, split) for evaluation examples, so a
            per-example prediction can be traced back to its record: MultiRC
            ``"<passage idx>-<question idx>-<answer idx>"``, ReCoRD the query idx, every other
            task the record idx. Last and defaulted so positional construction still works.
    """

    task: str
    inputs: str
    targets: str
    choices: tuple[str, ...]
    label: int
    group: str
    answers: tuple[str, ...]
    id: str = ""
