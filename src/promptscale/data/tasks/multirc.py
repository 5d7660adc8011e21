"""MultiRC (Khashabi et al. 2018): judge each candidate answer to a question about a paragraph."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

from promptscale.data import schema
from promptscale.data.example import Example
from promptscale.data.tasks import common
from promptscale.data.tasks.scoring import GroupedF1Metric
from promptscale.data.tasks.spec import TaskSpec

_BR = re.compile(r"<br\s*/?>")
_BOLD = re.compile(r"</?b>")
_SPACES = re.compile(r"\s+")


def check(record: dict, split: str) -> None:
    """Official schema: ``idx``, ``passage: {text, questions: [{question, idx, answers: [{text, idx, label}]}]}``.

    Question ids and answer ids must not repeat within the record: they name the metric
    groups and the evaluation examples.
    """
    schema.get(record, "idx", int)
    schema.optional(record, "version", (str, int, float))
    passage = schema.get(record, "passage", dict)
    schema.text(passage, "text", "passage.")
    question_ids, answer_ids = [], []
    for qi, question in enumerate(schema.objects(passage, "questions", "passage.")):
        qpath = f"passage.questions[{qi}]."
        schema.text(question, "question", qpath)
        question_ids.append((f"{qpath}idx", schema.get(question, "idx", int, qpath)))
        for ai, answer in enumerate(schema.objects(question, "answers", qpath)):
            apath = f"{qpath}answers[{ai}]."
            schema.text(answer, "text", apath)
            answer_ids.append((f"{apath}idx", schema.get(answer, "idx", int, apath)))
            schema.label(answer, split, schema.BINARY, apath)
    schema.unique_ids(question_ids, "question")
    schema.unique_ids(answer_ids, "answer")


def clean(text: str) -> str:
    """Removes MultiRC's HTML markup: ``<br>`` becomes a space, ``<b>`` tags vanish.

    T5 does the same on the joined input; whitespace is also collapsed so the removed markup
    leaves no double spaces (SentencePiece would collapse them anyway).
    """
    text = _BOLD.sub("", _BR.sub(" ", text))
    return _SPACES.sub(" ", text).strip()


def _options(record: dict) -> Iterator[tuple[dict, dict, str, str]]:
    """``(question, answer, group, id)`` for every answer option, in record order.

    The question id is the metric group (EM is per question); the id names the option.
    """
    for question in record["passage"]["questions"]:
        group = f"{record['idx']}-{question['idx']}"
        for answer in question["answers"]:
            yield question, answer, group, f"{group}-{answer['idx']}"


def _example(inputs: str, choices: tuple[str, ...], answer: dict, group: str, id: str) -> Example:
    label = common.bool_label(answer)
    targets = choices[label] if label >= 0 else ""
    answers = (targets,) if label >= 0 else ()
    return Example("multirc", inputs, targets, choices, label, group, answers, id)


def format(record: dict, *, prefix: bool, train: bool) -> list[Example]:
    """One ``multirc question: {q} answer: {a} paragraph: {p}`` example per answer option.

    Each answer option is judged True/False on its own (as in T5), markup removed.
    """
    del train
    paragraph = record["passage"]["text"]
    out = []
    for question, answer, group, id in _options(record):
        fields = [("question", question["question"]), ("answer", answer["text"]), ("paragraph", paragraph)]
        inputs = clean(common.join("multirc", fields, prefix=prefix))
        out.append(_example(inputs, common.BOOL_CHOICES, answer, group, id))
    return out


def template(record: dict) -> list[Example]:
    """One ``{paragraph}\\nQuestion: ..\\nCandidate answer: ..\\nIs the candidate answer correct?``
    per answer option -> no / yes."""
    paragraph = clean(record["passage"]["text"])
    out = []
    for question, answer, group, id in _options(record):
        inputs = (
            f"{paragraph}\nQuestion: {clean(question['question'])}\n"
            f"Candidate answer: {clean(answer['text'])}\n"
            "Is the candidate answer correct?\nAnswer:"
        )
        out.append(_example(inputs, common.NO_YES, answer, group, id))
    return out


def from_hub(rows: Iterable[Mapping]) -> list[dict]:
    """Regroups one-row-per-answer Hub data into passages -> questions -> answers."""
    passages: dict[int, dict] = {}
    questions: dict[tuple[int, int], dict] = {}
    for r in rows:
        p, q = r["idx"]["paragraph"], r["idx"]["question"]
        if p not in passages:
            passages[p] = {"idx": p, "passage": {"text": r["paragraph"], "questions": []}}
        if (p, q) not in questions:
            questions[p, q] = {"question": r["question"], "answers": [], "idx": q}
            passages[p]["passage"]["questions"].append(questions[p, q])
        answer = {"text": r["answer"], "idx": r["idx"]["answer"]}
        questions[p, q]["answers"].append(common.labelled(answer, common.hub_label(r, schema.BINARY)))
    return list(passages.values())


def count_units(records: list[dict]) -> int:
    """MultiRC is scored over answer options."""
    return sum(len(q["answers"]) for r in records for q in r["passage"]["questions"])


SPEC = TaskSpec(
    name="multirc",
    folder="MultiRC",
    version=1,
    label_words=common.BOOL_CHOICES,
    hub_config="multirc",
    metric=GroupedF1Metric(),
    check=check,
    format=format,
    from_hub=from_hub,
    template=template,
    postprocess=common.label_postprocess,
    count_units=count_units,
)
