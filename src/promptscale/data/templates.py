"""Hand-written natural-language templates for prompt design: one pure function per task.

Prompt design (Lester et al. 2021's "prompt engineering" baseline, after GPT-3) scores a
frozen model on instructions a person wrote, never on T5's ``key: value`` formats. Each
template turns one official SuperGLUE record into ``Example`` objects whose ``choices`` are
the template's own answer words ("yes"/"no", "true"/"false"/"neither", COPA's continuations,
ReCoRD's entities), so rank classification compares the log likelihood of each verbalised
answer. The choice order follows the label order of ``formats.py`` (e.g. CB: entailment,
contradiction, neutral -> true, false, neither), so the metrics read the predicted index
exactly as they read a T5-format prediction.

Templates follow the GPT-3 paper's SuperGLUE prompts (Brown et al. 2020, appendix G) where
an answer word fits a decoder target; the text is this project's own. One set exists,
``gpt3``; a new set is a new ``TEMPLATE_SETS`` entry (its name is recorded in result rows).
Every template expands a record as evaluation does (MultiRC: one example per answer option,
ReCoRD: one per query); demonstrations are built from the same expansion of train records.

Note: T5's SentencePiece normalises newlines to spaces; the layout is for the reader.
"""

from __future__ import annotations

from collections.abc import Callable

from promptscale.data.example import Example

# Label parsing and cleaning are shared with the T5 formats on purpose: one reading of labels.
from promptscale.data.formats import (
    _bool_label,
    _class_label,
    _clean_multirc,
    _mark_pronoun,
    _record_passage,
    _unique,
)
from promptscale.data.tasks import get_task

Template = Callable[[dict], list[Example]]

_NO_YES = ("no", "yes")  # index = the boolean label (False=0, True=1)
_NLI3 = ("entailment", "contradiction", "neutral")  # formats.py label order
_NLI3_WORDS = ("true", "false", "neither")
_NLI2 = ("entailment", "not_entailment")
_NLI2_WORDS = ("true", "false")
BLANK = "_____"


def _example(task: str, inputs: str, choices: tuple[str, ...], label: int, group: str) -> Example:
    """A rank-classification example; the target is the gold answer word ("" if unlabelled)."""
    targets = choices[label] if label >= 0 else ""
    return Example(
        task=task,
        inputs=inputs,
        targets=targets,
        choices=choices,
        label=label,
        group=group,
        answers=(targets,) if label >= 0 else (),
    )


def boolq(record: dict) -> list[Example]:
    """``{passage}\\nQuestion: {question}?\\nAnswer:`` -> no / yes."""
    inputs = f"{record['passage']}\nQuestion: {record['question']}?\nAnswer:"
    return [_example("boolq", inputs, _NO_YES, _bool_label(record), str(record["idx"]))]


def cb(record: dict) -> list[Example]:
    """``{premise}\\nQuestion: {hypothesis} True, False, or Neither?\\nAnswer:`` -> true / false / neither."""
    inputs = f"{record['premise']}\nQuestion: {record['hypothesis']} True, False, or Neither?\nAnswer:"
    label = _class_label(record.get("label"), _NLI3)
    return [_example("cb", inputs, _NLI3_WORDS, label, str(record["idx"]))]


def _lower_first(text: str) -> str:
    """Lower-cases the first letter so a choice continues the premise mid-sentence (as GPT-3)."""
    return text[:1].lower() + text[1:]


def copa(record: dict) -> list[Example]:
    """``{premise without the full stop} because|so`` -> the more likely continuation.

    The choices are the two alternatives themselves, so the model scores real text rather
    than the labels "choice1"/"choice2" it has never been taught.
    """
    connector = "because" if record["question"] == "cause" else "so"
    inputs = f"{record['premise'].rstrip().rstrip('.')} {connector}"
    choices = (_lower_first(record["choice1"]), _lower_first(record["choice2"]))
    label = _class_label(record.get("label"), ("choice1", "choice2"))
    return [_example("copa", inputs, choices, label, str(record["idx"]))]


def multirc(record: dict) -> list[Example]:
    """One ``{paragraph}\\nQuestion: ..\\nCandidate answer: ..\\nIs the candidate answer correct?``
    per answer option -> no / yes; ``group`` is the question id (EM is per question)."""
    passage = record["passage"]
    paragraph = _clean_multirc(passage["text"])
    out = []
    for question in passage["questions"]:
        group = f"{record['idx']}-{question['idx']}"
        for answer in question["answers"]:
            inputs = (
                f"{paragraph}\nQuestion: {_clean_multirc(question['question'])}\n"
                f"Candidate answer: {_clean_multirc(answer['text'])}\n"
                "Is the candidate answer correct?\nAnswer:"
            )
            out.append(_example("multirc", inputs, _NO_YES, _bool_label(answer), group))
    return out


def record(rec: dict) -> list[Example]:
    """``{passage}\\nFill in the blank: {query with _____}\\nAnswer:`` -> one of the entities.

    One example per query; the candidates are the passage's distinct entity texts (sorted, as
    ``formats.format_record``) and every gold text is kept for the max-over-answers EM/F1.
    """
    passage = rec["passage"]
    text = passage["text"]
    entities = tuple(sorted({text[e["start"] : e["end"] + 1] for e in passage["entities"]}))
    out = []
    for qa in rec["qas"]:
        query = qa["query"].replace("@placeholder", BLANK)
        inputs = f"{_record_passage(text)}\nFill in the blank: {query}\nAnswer:"
        answers = _unique([a["text"] for a in qa.get("answers") or ()])
        label = next((entities.index(a) for a in answers if a in entities), -1)
        targets = entities[label] if label >= 0 else (answers[0] if answers else "")
        out.append(
            Example(
                task="record",
                inputs=inputs,
                targets=targets,
                choices=entities,
                label=label,
                group=str(qa["idx"]),
                answers=answers,
            )
        )
    return out


def _rte_like(task: str, premise: str, hypothesis: str, label, idx) -> list[Example]:
    """``{premise}\\nQuestion: {hypothesis} True or False?\\nAnswer:`` -> true / false."""
    inputs = f"{premise}\nQuestion: {hypothesis} True or False?\nAnswer:"
    return [_example(task, inputs, _NLI2_WORDS, _class_label(label, _NLI2), str(idx))]


def rte(record: dict) -> list[Example]:
    """RTE: premise, then the hypothesis as a true-or-false question."""
    return _rte_like("rte", record["premise"], record["hypothesis"], record.get("label"), record["idx"])


def axb(record: dict) -> list[Example]:
    """AX-b in the RTE template (``sentence1`` is the premise), scored as "axb"."""
    return _rte_like("axb", record["sentence1"], record["sentence2"], record.get("label"), record["idx"])


def axg(record: dict) -> list[Example]:
    """AX-g in the RTE template, scored as "axg"."""
    return _rte_like("axg", record["premise"], record["hypothesis"], record.get("label"), record["idx"])


def wic(record: dict) -> list[Example]:
    """Both sentences, then whether ``word`` means the same in both -> no / yes."""
    inputs = (
        f"Sentence 1: {record['sentence1']}\nSentence 2: {record['sentence2']}\n"
        f'Question: Is the word "{record["word"]}" used with the same meaning in both '
        "sentences?\nAnswer:"
    )
    return [_example("wic", inputs, _NO_YES, _bool_label(record), str(record["idx"]))]


def wsc(record: dict) -> list[Example]:
    """The text with the pronoun marked, then whether it refers to span1 -> no / yes.

    Unlike T5's generated referent, the answer is the record's own truth label, so every
    record (true or false) is scored, and the predicted index is the 0/1 decision the WSC
    metric compares with the label.
    """
    target = record["target"]
    marked = _mark_pronoun(record["text"], int(target["span2_index"]), target["span2_text"])
    inputs = (
        f'{marked}\nQuestion: In the passage above, does the pronoun "*{target["span2_text"]}*" '
        f"refer to {target['span1_text']}?\nAnswer:"
    )
    label = _bool_label(record)
    return [
        Example(
            task="wsc",
            inputs=inputs,
            targets=_NO_YES[label] if label >= 0 else "",
            choices=_NO_YES,
            label=label,
            group=str(record["idx"]),
            answers=(target["span1_text"],),
        )
    ]


GPT3: dict[str, Template] = {
    "boolq": boolq,
    "cb": cb,
    "copa": copa,
    "multirc": multirc,
    "record": record,
    "rte": rte,
    "wic": wic,
    "wsc": wsc,
    "axb": axb,
    "axg": axg,
}
TEMPLATE_SETS: dict[str, dict[str, Template]] = {"gpt3": GPT3}


def apply_template(name: str, task: str, record: dict) -> list[Example]:
    """Formats ``record`` of ``task`` with template set ``name``.

    Raises:
        KeyError: If the set or the task is unknown; the message lists the valid names.
    """
    if name not in TEMPLATE_SETS:
        raise KeyError(f"unknown template set {name!r}; valid: {', '.join(TEMPLATE_SETS)}")
    get_task(task)
    return TEMPLATE_SETS[name][task](record)
