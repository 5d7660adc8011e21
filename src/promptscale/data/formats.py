"""Text-to-text formats and T5's postprocessing: the facade over the task registry.

Every task's T5 formatter lives in its task module (``promptscale.data.tasks.<name>``); this
module is the one place callers go through, by task name. A formatter takes one record in the
official SuperGLUE jsonl schema and returns the ``Example`` objects it expands to (MultiRC: one
per answer option; ReCoRD: one per gold answer in training, one per query in evaluation). With
``prefix=True`` the inputs start with the task name as in T5's multi-task mixture
("rte hypothesis: ..."); with ``prefix=False`` that first word is dropped, as Lester et al. 2021
do for prompt tuning ("hypothesis: ...").

Formatters are pure: no I/O, no randomness, no global state, so a format can be checked
against a literal record in a test and its ``version`` bumped in its task module when it changes.
"""

from __future__ import annotations

from promptscale.data.example import Example
from promptscale.data.tasks import get_task


def format_examples(task: str, record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """Formats one official record of ``task`` in T5's text-to-text format.

    Args:
        task: Task name (a ``TASKS`` key).
        record: One record in the official SuperGLUE schema.
        prefix: Keep the leading task name (multi-task model tuning) or drop it (prompt
            tuning, prefix tuning).
        train: Training expansion (ReCoRD one example per answer, WSC true labels only).

    Returns:
        The examples the record expands to (possibly none).

    Raises:
        KeyError: If ``task`` is unknown; the message lists the valid names.
    """
    return get_task(task).format(record, prefix=prefix, train=train)


def postprocess(task: str, text: str, example: Example) -> tuple[int | str, bool]:
    """Maps generated text to what the metric compares, exactly as T5's postprocessors do.

    * Label tasks (the example has ``choices`` and its task's T5 prediction is a label, which
      also covers prompt design's templated WSC with its no/yes choices): ``(index, True)``
      when ``text`` is exactly one of the choices, else ``(-1, False)``. Nothing is stripped
      or case-folded: T5's ``string_label_to_class_id`` compares the decoded text as it is.
    * ReCoRD: ``(text, valid)``; valid iff the SQuAD-normalised text equals the normalised
      text of one of the example's candidate entities.
    * T5-format WSC (no choices): ``(text, valid)``; valid iff the text, lower-cased and
      whitespace-collapsed, is non-empty and occurs in the example's lower-cased input
      sentence (a referent copied from the sentence).

    T5 defines no "invalid" for the open tasks: the two validity rules are this project's,
    for the invalid-output rate; the metrics score the text itself (SQuAD EM/F1, T5's
    referent match) whatever its validity.

    Decoding contract (the caller's side): generated ids are decoded with sentinel tokens
    kept as text, so a span-corruption model that answers ``<extra_id_0> ...`` is invalid,
    as in T5X, where sentinels decode to unknown pieces. One leading ``<extra_id_0>`` (and
    the space after it) is stripped before calling this function only when the targets were
    trained with it (``data.target_sentinel``); nothing else is removed.

    Args:
        task: Task name.
        text: Decoded model output.
        example: The example the output belongs to (gives the choices and the sentence).

    Returns:
        ``(prediction, valid)``: a choice index (-1 when invalid) for label tasks, else the
        text itself.

    Raises:
        KeyError: If ``task`` is unknown.
    """
    return get_task(task).postprocess(text, example)
