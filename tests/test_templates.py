"""Prompt-design templates against literal records in the official SuperGLUE jsonl schema.

Record texts are invented; expected strings are written out in full so any template change
shows up here. Choice order must follow the label order the metrics use.
"""

from __future__ import annotations

import pytest

from promptscale.data.example import Example
from promptscale.data.tasks import TASKS
from promptscale.data.templates import GPT3, TEMPLATE_SETS, apply_template

BOOLQ = {"question": "is a tomato a fruit", "passage": "Botanically, a tomato is a fruit.", "idx": 7, "label": True}
CB = {"premise": "The cat sat on the mat.", "hypothesis": "A cat is sitting.", "idx": 3, "label": "neutral"}
COPA = {
    "premise": "The glass fell off the table.",
    "choice1": "It shattered.",
    "choice2": "It grew.",
    "question": "effect",
    "idx": 9,
    "label": 0,
}
MULTIRC = {
    "idx": 4,
    "version": 1.1,
    "passage": {
        "text": "Sent 1: Anna baked <b>bread</b>.<br>Sent 2: She sold it.",
        "questions": [
            {
                "question": "What did Anna bake?",
                "idx": 0,
                "answers": [{"text": "Bread", "idx": 0, "label": 1}, {"text": "A <b>cake</b>", "idx": 1, "label": 0}],
            }
        ],
    },
}
RECORD = {
    "idx": 21,
    "source": "Invented",
    "passage": {
        "text": "Anna Lee won the Cup in Paris.\n@highlight\nLee beat Bob Stone",
        "entities": [
            {"start": 0, "end": 7},
            {"start": 17, "end": 19},
            {"start": 24, "end": 28},
            {"start": 42, "end": 44},
            {"start": 51, "end": 59},
        ],
    },
    "qas": [
        {
            "query": "@placeholder beat Bob Stone.",
            "idx": 11,
            "answers": [{"start": 42, "end": 44, "text": "Lee"}, {"start": 0, "end": 7, "text": "Anna Lee"}],
        }
    ],
}
RTE = {
    "premise": "Paris is the capital of France.",
    "hypothesis": "France has a capital.",
    "idx": 0,
    "label": "not_entailment",
}
WIC = {
    "word": "bank",
    "sentence1": "He sat on the bank.",
    "sentence2": "She robbed the bank.",
    "start1": 14,
    "end1": 18,
    "start2": 15,
    "end2": 19,
    "idx": 5,
    "label": False,
}
WSC = {
    "text": "Maria thanked Ana because she had carried the box.",
    "target": {"span1_index": 2, "span1_text": "Ana", "span2_index": 4, "span2_text": "she"},
    "idx": 8,
    "label": True,
}
AXB = {
    "sentence1": "The cat sat.",
    "sentence2": "A cat sat.",
    "idx": "5",
    "logic": "Lexical entailment",
    "label": "entailment",
}
AXG = {
    "premise": "The nurse helped because she was kind.",
    "hypothesis": "The nurse was kind.",
    "idx": 2,
    "pair_id": 101,
    "label": "entailment",
}
RECORDS = {
    "boolq": BOOLQ,
    "cb": CB,
    "copa": COPA,
    "multirc": MULTIRC,
    "record": RECORD,
    "rte": RTE,
    "wic": WIC,
    "wsc": WSC,
    "axb": AXB,
    "axg": AXG,
}


def one(task: str, record: dict) -> Example:
    examples = GPT3[task](record)
    assert len(examples) == 1
    return examples[0]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_template_ranks_choices_of_its_own_task(task):
    examples = GPT3[task](RECORDS[task])
    assert examples and all(ex.task == task and ex.choices and ex.id for ex in examples)
    assert all(ex.targets == ex.choices[ex.label] for ex in examples if ex.label >= 0)


def test_boolq():
    assert one("boolq", BOOLQ) == Example(
        task="boolq",
        inputs="Botanically, a tomato is a fruit.\nQuestion: is a tomato a fruit?\nAnswer:",
        targets="yes",
        choices=("no", "yes"),
        label=1,
        group="7",
        answers=("yes",),
        id="7",
    )


def test_cb_choices_follow_the_nli_label_order():
    ex = one("cb", CB)
    assert ex.inputs == ("The cat sat on the mat.\nQuestion: A cat is sitting. True, False, or Neither?\nAnswer:")
    assert (ex.choices, ex.label, ex.targets) == (("true", "false", "neither"), 2, "neither")
    assert one("cb", {**CB, "label": "contradiction"}).targets == "false"


def test_copa_scores_the_alternatives_as_continuations():
    ex = one("copa", COPA)
    assert ex.inputs == "The glass fell off the table so"
    assert (ex.choices, ex.label, ex.targets) == (("it shattered.", "it grew."), 0, "it shattered.")
    assert one("copa", {**COPA, "question": "cause", "label": 1}).inputs == "The glass fell off the table because"


def test_multirc_one_example_per_answer_markup_removed():
    examples = GPT3["multirc"](MULTIRC)
    head = "Sent 1: Anna baked bread. Sent 2: She sold it.\nQuestion: What did Anna bake?\n"
    tail = "\nIs the candidate answer correct?\nAnswer:"
    assert [e.inputs for e in examples] == [
        f"{head}Candidate answer: Bread{tail}",
        f"{head}Candidate answer: A cake{tail}",
    ]
    assert [(e.targets, e.label, e.group, e.id) for e in examples] == [
        ("yes", 1, "4-0", "4-0-0"),
        ("no", 0, "4-0", "4-0-1"),
    ]


def test_record_blank_and_entity_choices():
    ex = one("record", RECORD)
    assert (
        ex.inputs
        == "Anna Lee won the Cup in Paris. Lee beat Bob Stone\nFill in the blank: _____ beat Bob Stone.\nAnswer:"
    )
    assert ex.choices == ("Anna Lee", "Bob Stone", "Cup", "Lee", "Paris")
    assert (ex.label, ex.targets, ex.answers, ex.group, ex.id) == (3, "Lee", ("Lee", "Anna Lee"), "11", "11")


@pytest.mark.parametrize("task,record", [("rte", RTE), ("axb", AXB), ("axg", AXG)])
def test_rte_like(task, record):
    ex = one(task, record)
    premise, hypothesis = (
        (AXB["sentence1"], AXB["sentence2"]) if task == "axb" else (record["premise"], record["hypothesis"])
    )
    assert ex.inputs == f"{premise}\nQuestion: {hypothesis} True or False?\nAnswer:"
    assert ex.task == task and ex.choices == ("true", "false")
    assert ex.targets == ("false" if task == "rte" else "true")


def test_wic():
    ex = one("wic", WIC)
    assert ex.inputs == (
        "Sentence 1: He sat on the bank.\nSentence 2: She robbed the bank.\n"
        'Question: Is the word "bank" used with the same meaning in both sentences?\nAnswer:'
    )
    assert (ex.choices, ex.label, ex.targets) == (("no", "yes"), 0, "no")


def test_wsc_is_a_yes_no_question_about_the_marked_pronoun():
    ex = one("wsc", WSC)
    assert ex.inputs == (
        "Maria thanked Ana because *she* had carried the box.\n"
        'Question: In the passage above, does the pronoun "*she*" refer to Ana?\nAnswer:'
    )
    assert (ex.choices, ex.label, ex.targets, ex.answers) == (("no", "yes"), 1, "yes", ("Ana",))
    assert one("wsc", {**WSC, "label": False}).targets == "no"  # false pairs are scored too


@pytest.mark.parametrize("task", sorted(RECORDS))
def test_unlabelled_records_have_no_target(task):
    record = {k: v for k, v in RECORDS[task].items() if k != "label"}
    if task == "multirc":
        return  # MultiRC labels live on the answers; covered by the per-answer label reading
    if task == "record":
        record = {**RECORD, "qas": [{k: v for k, v in RECORD["qas"][0].items() if k != "answers"}]}
    ex = one(task, record)
    assert ex.label == -1 and ex.targets == "" and ex.choices


def test_templates_are_pure():
    import copy

    for task, record in RECORDS.items():
        before = copy.deepcopy(record)
        assert GPT3[task](record) == GPT3[task](record)
        assert record == before


def test_apply_template_names_valid_sets_and_tasks():
    assert apply_template("gpt3", "rte", RTE) == GPT3["rte"](RTE)
    with pytest.raises(KeyError, match="gpt3"):
        apply_template("nope", "rte", RTE)
    with pytest.raises(KeyError, match="valid tasks"):
        apply_template("gpt3", "nope", RTE)
    assert "gpt3" in TEMPLATE_SETS
