"""Text-to-text formats: one pure function per SuperGLUE task, as T5 (Raffel et al. 2020).

Every formatter takes one record in the official SuperGLUE jsonl schema and returns the
``Example`` objects it expands to (MultiRC: one per answer option; ReCoRD: one per gold
answer in training, one per query in evaluation). With ``prefix=True`` the inputs start with
the task name as in T5's multi-task mixture ("rte hypothesis: ..."); with ``prefix=False``
that first word is dropped, as Lester et al. 2021 do for prompt tuning ("hypothesis: ...").

Formatters are pure: no I/O, no randomness, no global state, so a format can be checked
against a literal record in a test and its version bumped in ``tasks.py`` when it changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from promptscale.data.example import Example
from promptscale.data.tasks import get_task

Formatter = Callable[..., list[Example]]

_BOOL_CHOICES = ("False", "True")
_NLI3 = ("entailment", "contradiction", "neutral")
_NLI2 = ("entailment", "not_entailment")
_COPA_CHOICES = ("choice1", "choice2")
# Tasks scored by generation plus a task-specific rule rather than by picking a choice.
_OPEN_TASKS = ("record", "wsc")


# --------------------------------------------------------------------------- helpers


def _join(task_word: str, fields: list[tuple[str, str]], *, prefix: bool) -> str:
    """Joins ``key: value`` pairs after the task word, the way T5's ``glue`` preprocessor does.

    T5 joins with single spaces and keeps the task name as the first word; prompt tuning drops
    that first word (the prompt plays the task name's role), so ``prefix=False`` omits it.
    """
    parts = [task_word] if prefix else []
    for key, value in fields:
        parts += [f"{key}:", value]
    return " ".join(parts)


def _is_missing(label: Any) -> bool:
    """True for an unlabelled record: no label key, ``None`` or the integer ``-1``.

    ``bool`` is a subclass of ``int`` in Python, so ``False`` must not be mistaken for a
    missing label (``False == 0``, never ``-1``, but be explicit).
    """
    return label is None or (not isinstance(label, bool) and label == -1)


def _bool_label(record: dict) -> int:
    """Maps a JSON boolean label (BoolQ, WiC, WSC) to 0/1, or -1 when unlabelled.

    Accepts the official JSON booleans and, leniently, 0/1 or "true"/"false" strings (the
    flattened Hub schema), because a silently wrong label is worse than a strict one.
    """
    label = record.get("label")
    if _is_missing(label):
        return -1
    if isinstance(label, str):
        low = label.strip().lower()
        if low in ("true", "1"):
            return 1
        if low in ("false", "0"):
            return 0
        raise ValueError(f"cannot read boolean label {label!r}")
    if label in (0, 1):  # also True / False
        return int(label)
    raise ValueError(f"cannot read boolean label {label!r}")


def _class_label(label: Any, choices: tuple[str, ...]) -> int:
    """Maps a label given as its name (CB, RTE, AX) or index (COPA) to an index, -1 if none."""
    if _is_missing(label):
        return -1
    if isinstance(label, str):
        if label not in choices:
            raise ValueError(f"label {label!r} is not one of {choices}")
        return choices.index(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(choices):
        raise ValueError(f"label {label!r} is not an index into {choices}")
    return label


def _choice_example(task: str, inputs: str, choices: tuple[str, ...], label: int, group: str) -> Example:
    """Builds a rank-classification example; unlabelled gets empty targets and no answers."""
    targets = choices[label] if label >= 0 else ""
    answers = (targets,) if label >= 0 else ()
    return Example(
        task=task, inputs=inputs, targets=targets, choices=choices, label=label, group=group, answers=answers
    )


def _rte_like(task: str, premise: str, hypothesis: str, label: Any, idx: Any, *, prefix: bool) -> list[Example]:
    """The RTE format, shared by RTE and the diagnostics (which are run with an RTE model)."""
    inputs = _join("rte", [("hypothesis", hypothesis), ("premise", premise)], prefix=prefix)
    return [_choice_example(task, inputs, _NLI2, _class_label(label, _NLI2), str(idx))]


# --------------------------------------------------------------------------- formatters


def format_boolq(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """BoolQ: ``boolq passage: {passage} question: {question}`` -> ``False``/``True``.

    T5 orders the fields alphabetically, hence the passage before the question.

    Args:
        record: Official record with ``question``, ``passage``, ``idx`` and (not in test) a
            boolean ``label``.
        prefix: Keep the leading task name.
        train: Unused (training and evaluation examples are the same); kept so every
            formatter has one signature.

    Returns:
        One example.
    """
    del train
    inputs = _join("boolq", [("passage", record["passage"]), ("question", record["question"])], prefix=prefix)
    return [_choice_example("boolq", inputs, _BOOL_CHOICES, _bool_label(record), str(record["idx"]))]


def format_cb(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """CB: ``cb hypothesis: {hypothesis} premise: {premise}`` -> one of three NLI labels.

    Args:
        record: Official record with ``premise``, ``hypothesis``, ``idx``, ``label``.
        prefix: Keep the leading task name.
        train: Unused; one signature for all formatters.

    Returns:
        One example.
    """
    del train
    inputs = _join("cb", [("hypothesis", record["hypothesis"]), ("premise", record["premise"])], prefix=prefix)
    return [_choice_example("cb", inputs, _NLI3, _class_label(record.get("label"), _NLI3), str(record["idx"]))]


def format_copa(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """COPA: ``copa choice1: .. choice2: .. premise: .. question: cause|effect`` -> ``choice1|2``.

    The targets are the literal words "choice1"/"choice2" (as in T5), not the choice text, so
    COPA is a two-way classification like the others.

    Args:
        record: Official record with ``premise``, ``choice1``, ``choice2``, ``question``,
            ``idx`` and an integer ``label`` 0/1.
        prefix: Keep the leading task name.
        train: Unused; one signature for all formatters.

    Returns:
        One example.
    """
    del train
    inputs = _join(
        "copa",
        [
            ("choice1", record["choice1"]),
            ("choice2", record["choice2"]),
            ("premise", record["premise"]),
            ("question", record["question"]),
        ],
        prefix=prefix,
    )
    return [
        _choice_example(
            "copa", inputs, _COPA_CHOICES, _class_label(record.get("label"), _COPA_CHOICES), str(record["idx"])
        )
    ]


_BR = re.compile(r"<br\s*/?>")
_BOLD = re.compile(r"</?b>")
_SPACES = re.compile(r"\s+")


def _clean_multirc(text: str) -> str:
    """Removes MultiRC's HTML markup: ``<br>`` becomes a space, ``<b>`` tags vanish.

    T5 does the same on the joined input; whitespace is also collapsed so the removed markup
    leaves no double spaces (SentencePiece would collapse them anyway).
    """
    text = _BOLD.sub("", _BR.sub(" ", text))
    return _SPACES.sub(" ", text).strip()


def format_multirc(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """MultiRC: one ``multirc question: {q} answer: {a} paragraph: {p}`` example per answer.

    Each answer option is judged True/False on its own (as in T5); the question id is kept as
    ``group`` because EM is computed per question over all of its options.

    Args:
        record: Official record with ``idx`` and ``passage: {text, questions: [{question,
            idx, answers: [{text, idx, label}]}]}``.
        prefix: Keep the leading task name.
        train: Unused; one signature for all formatters.

    Returns:
        One example per answer option of every question, in record order.
    """
    del train
    passage = record["passage"]
    out = []
    for question in passage["questions"]:
        group = f"{record['idx']}-{question['idx']}"
        for answer in question["answers"]:
            inputs = _clean_multirc(
                _join(
                    "multirc",
                    [("question", question["question"]), ("answer", answer["text"]), ("paragraph", passage["text"])],
                    prefix=prefix,
                )
            )
            out.append(_choice_example("multirc", inputs, _BOOL_CHOICES, _bool_label(answer), group))
    return out


def _record_passage(text: str) -> str:
    """Turns ReCoRD's ``@highlight`` lines into sentences, exactly as T5 does.

    A highlight that follows sentence-final punctuation or a quote is joined with a space;
    any other is joined with ". " (two regex passes, in this order).
    """
    text = re.sub(r"(\.|\?|\!|\"|')\n@highlight\n", r"\1 ", text)
    return re.sub(r"\n@highlight\n", ". ", text)


def _unique(items: list[str]) -> tuple[str, ...]:
    """Unique items in order of first appearance."""
    return tuple(dict.fromkeys(items))


def format_record(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """ReCoRD: ``record query: {query} entities: {e1, e2} passage: {passage}`` -> entity text.

    Training follows T5: one example per distinct gold answer, so a query with two gold
    answers teaches both and a query with none (test) teaches nothing. Evaluation needs one
    example per query, with the entities as candidates for rank classification and all gold
    texts kept for the max-over-answers EM/F1.

    Args:
        record: Official record with ``idx``, ``passage: {text, entities: [{start, end}]}``
            and ``qas: [{query, idx, answers: [{start, end, text}]}]`` (``end`` inclusive).
        prefix: Keep the leading task name.
        train: One example per gold answer if True, else one per query.

    Returns:
        The examples of every query, in record order; ``group`` is the query id.
    """
    passage = record["passage"]
    text = passage["text"]
    # TFDS, which T5 read ReCoRD from, lists the distinct entity texts sorted.
    entities = tuple(sorted({text[e["start"] : e["end"] + 1] for e in passage["entities"]}))
    inputs_tail = [("entities", ", ".join(entities)), ("passage", _record_passage(text))]
    out = []
    for qa in record["qas"]:
        inputs = _join("record", [("query", qa["query"]), *inputs_tail], prefix=prefix)
        answers = _unique([a["text"] for a in qa.get("answers") or ()])
        group = str(qa["idx"])
        if train:
            for answer in answers:
                label = entities.index(answer) if answer in entities else -1
                out.append(
                    Example(
                        task="record",
                        inputs=inputs,
                        targets=answer,
                        choices=entities,
                        label=label,
                        group=group,
                        answers=answers,
                    )
                )
            continue
        label = next((entities.index(a) for a in answers if a in entities), -1)
        targets = entities[label] if label >= 0 else (answers[0] if answers else "")
        out.append(
            Example(
                task="record",
                inputs=inputs,
                targets=targets,
                choices=entities,
                label=label,
                group=group,
                answers=answers,
            )
        )
    return out


def format_rte(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """RTE: ``rte hypothesis: {hypothesis} premise: {premise}`` -> ``entailment``/``not_entailment``.

    Args:
        record: Official record with ``premise``, ``hypothesis``, ``idx``, ``label``.
        prefix: Keep the leading task name.
        train: Unused; one signature for all formatters.

    Returns:
        One example.
    """
    del train
    return _rte_like("rte", record["premise"], record["hypothesis"], record.get("label"), record["idx"], prefix=prefix)


def format_wic(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """WiC: ``wic sentence1: {s1} sentence2: {s2} word: {word}`` -> ``False``/``True``.

    The character offsets of the word are not used: T5 gives the word itself.

    Args:
        record: Official record with ``word``, ``sentence1``, ``sentence2``, ``idx`` and a
            boolean ``label``.
        prefix: Keep the leading task name.
        train: Unused; one signature for all formatters.

    Returns:
        One example.
    """
    del train
    inputs = _join(
        "wic",
        [("sentence1", record["sentence1"]), ("sentence2", record["sentence2"]), ("word", record["word"])],
        prefix=prefix,
    )
    return [_choice_example("wic", inputs, _BOOL_CHOICES, _bool_label(record), str(record["idx"]))]


_TRAILING_PUNCT = ".,!?;:\"')"


def _span_at(words: list[str], index: int, span_text: str) -> str | None:
    """Returns the punctuation glued after ``span_text`` if it starts at word ``index``, else None."""
    n = len(span_text.split())
    if index < 0 or index + n > len(words):
        return None
    span = " ".join(words[index : index + n])
    if not span.lower().startswith(span_text.lower()):
        return None
    tail = span[len(span_text) :]
    return None if tail.strip(_TRAILING_PUNCT) else tail


def _mark_pronoun(text: str, index: int, span2_text: str) -> str:
    """Replaces the word(s) at ``index`` in ``text.split()`` by ``*{span2_text}*``.

    This is T5's ``wsc_simple``: the pronoun is blanked at its word position and written back
    wrapped in asterisks. T5 asserts the word equals ``span2_text``; here punctuation glued to
    the pronoun ("him,") is kept outside the asterisks ("*him*,"), a multi-word
    ``span2_text`` replaces as many words, and an index that is off (the official release has
    a few; TFDS ships a "fixed" WSC) falls back to the nearest occurrence of ``span2_text``.

    Raises:
        ValueError: If ``span2_text`` occurs nowhere in ``text.split()``.
    """
    words = text.split()
    starts = sorted(range(len(words)), key=lambda j: (abs(j - index), j))
    for j in starts:
        tail = _span_at(words, j, span2_text)
        if tail is not None:
            n = len(span2_text.split())
            return " ".join([*words[:j], f"*{span2_text}*{tail}", *words[j + n :]])
    raise ValueError(f"WSC span2 {span2_text!r} (word {index}) not found in {text!r}")


def format_wsc(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """WSC: ``wsc: {text with *pronoun*}`` -> the referent text (span1), as T5's ``wsc_simple``.

    The model generates the referent; a prediction is scored True when it matches span1 (see
    ``metrics.wsc_referent_match``) and compared with the label. Only true pairs make sense as
    training targets, so training drops records whose label is false (T5,
    ``correct_referent_only``).

    Args:
        record: Official record with ``text``, ``target: {span1_index, span1_text,
            span2_index, span2_text}``, ``idx`` and a boolean ``label``.
        prefix: Keep the leading ``wsc:``.
        train: Drop records whose label is not true.

    Returns:
        One example, or none in training when the label is not true.
    """
    label = _bool_label(record)
    if train and label != 1:
        return []
    target = record["target"]
    marked = _mark_pronoun(record["text"], int(target["span2_index"]), target["span2_text"])
    inputs = f"wsc: {marked}" if prefix else marked
    referent = target["span1_text"]
    return [
        Example(
            task="wsc",
            inputs=inputs,
            targets=referent,
            choices=(),
            label=label,
            group=str(record["idx"]),
            answers=(referent,),
        )
    ]


def format_axb(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """AX-b: the broad-coverage diagnostic in RTE format (``sentence1`` is the premise).

    AX-b is evaluated with an RTE-trained model, so it must look exactly like RTE, "rte"
    task word included; ``Example.task`` stays "axb" so it is scored with its own metric.

    Args:
        record: Official record with ``sentence1``, ``sentence2``, ``idx`` (a string) and
            ``label``.
        prefix: Keep the leading task name ("rte").
        train: Unused; one signature for all formatters.

    Returns:
        One example.
    """
    del train
    return _rte_like("axb", record["sentence1"], record["sentence2"], record.get("label"), record["idx"], prefix=prefix)


def format_axg(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """AX-g: the Winogender diagnostic in RTE format ("rte" task word), task kept as "axg".

    Args:
        record: Official record with ``premise``, ``hypothesis``, ``idx``, ``pair_id``,
            ``label``.
        prefix: Keep the leading task name ("rte").
        train: Unused; one signature for all formatters.

    Returns:
        One example.
    """
    del train
    return _rte_like("axg", record["premise"], record["hypothesis"], record.get("label"), record["idx"], prefix=prefix)


FORMATTERS: dict[str, Formatter] = {
    "boolq": format_boolq,
    "cb": format_cb,
    "copa": format_copa,
    "multirc": format_multirc,
    "record": format_record,
    "rte": format_rte,
    "wic": format_wic,
    "wsc": format_wsc,
    "axb": format_axb,
    "axg": format_axg,
}


def format_examples(task: str, record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """Formats one official record of ``task``.

    Args:
        task: Task name (a ``FORMATTERS`` key).
        record: One record in the official SuperGLUE schema.
        prefix: Keep the leading task name (multi-task model tuning) or drop it (prompt
            tuning, prefix tuning).
        train: Training expansion (ReCoRD one example per answer, WSC true labels only).

    Returns:
        The examples the record expands to (possibly none).

    Raises:
        KeyError: If ``task`` is unknown; the message lists the valid names.
    """
    try:
        formatter = FORMATTERS[task]
    except KeyError:
        raise KeyError(f"unknown task {task!r}; valid tasks: {', '.join(FORMATTERS)}") from None
    return formatter(record, prefix=prefix, train=train)


def t5_postprocess(task: str, text: str, example: Example) -> int | str:
    """Maps generated text to what the metric compares, as T5's postprocessors do.

    Choice tasks: the index of the choice the text equals after stripping whitespace, or -1
    (T5's ``string_label_to_class_id``: anything else is simply wrong). ReCoRD and WSC are
    open-ended: the stripped text is returned for the metric to compare with the answers.

    Args:
        task: Task name.
        text: Decoded model output.
        example: The example the output belongs to (gives the choices).

    Returns:
        A choice index (or -1) for choice tasks, else the text.
    """
    get_task(task)  # fail loudly on an unknown task
    text = text.strip()
    if task in _OPEN_TASKS:
        return text
    return example.choices.index(text) if text in example.choices else -1
