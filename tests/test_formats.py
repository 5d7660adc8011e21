"""Formatters against literal records in the official SuperGLUE jsonl schema.

The record texts are invented for the tests (not SuperGLUE data); the expected strings are
written out in full so any change of format shows up here (and should bump the task's
``version`` in its task module under ``promptscale/data/tasks/``).
"""

from __future__ import annotations

import copy

import pytest

from promptscale.data.example import Example
from promptscale.data.formats import format_examples, postprocess
from promptscale.data.tasks import TASKS

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
        "text": "Sent 1: Anna baked <b>bread</b>.<br>Sent 2: She  sold it.<br/>",
        "questions": [
            {
                "question": "What did Anna bake?",
                "idx": 0,
                "answers": [
                    {"text": "Bread", "idx": 0, "label": 1},
                    {"text": "A <b>cake</b>", "idx": 1, "label": 0},
                ],
            },
            {
                "question": "Who sold it?",
                "idx": 1,
                "answers": [
                    {"text": "Anna", "idx": 2, "label": 1},
                ],
            },
        ],
    },
}
RECORD_TEXT = (
    "Anna Lee won the Cup in Paris.\n@highlight\nLee beat Bob Stone\n@highlight\n"
    "The final was tense!\n@highlight\nParis cheered"
)
RECORD = {
    "idx": 21,
    "source": "Invented",
    "passage": {
        "text": RECORD_TEXT,
        # end is inclusive; "Paris" appears twice and must be listed once.
        "entities": [
            {"start": 0, "end": 7},
            {"start": 17, "end": 19},
            {"start": 24, "end": 28},
            {"start": 42, "end": 44},
            {"start": 51, "end": 59},
            {"start": 104, "end": 108},
        ],
    },
    "qas": [
        {
            "query": "@placeholder beat Bob Stone in the final.",
            "idx": 11,
            "answers": [
                {"start": 42, "end": 44, "text": "Lee"},
                {"start": 0, "end": 7, "text": "Anna Lee"},
                {"start": 5, "end": 7, "text": "Lee"},  # same text again: one example only
            ],
        },
        {
            "query": "The Cup final was held in @placeholder.",
            "idx": 12,
            "answers": [
                {"start": 24, "end": 28, "text": "Paris"},
                {"start": 104, "end": 108, "text": "Paris"},
            ],
        },
    ],
}
RECORD_PASSAGE = "Anna Lee won the Cup in Paris. Lee beat Bob Stone. The final was tense! Paris cheered"
RECORD_ENTITIES = ("Anna Lee", "Bob Stone", "Cup", "Lee", "Paris")  # sorted, as TFDS lists them
RTE = {
    "premise": "Paris is the capital of France.",
    "hypothesis": "France has a capital.",
    "idx": 0,
    "label": "entailment",
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
    "version": 1.1,
    "label": False,
}
WSC = {
    "text": "Maria thanked Ana because she had carried the heavy box upstairs.",
    "target": {"span1_index": 2, "span1_text": "Ana", "span2_index": 4, "span2_text": "she"},
    "idx": 8,
    "label": True,
}
AXB = {
    "sentence1": "The cat sat.",
    "sentence2": "A cat sat.",
    "idx": "5",
    "logic": "Lexical entailment",
    "label": "not_entailment",
}
AXG = {
    "premise": "The nurse helped the patient because she was kind.",
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


def _one(task, record, prefix=True, train=False) -> Example:
    examples = format_examples(task, record, prefix=prefix, train=train)
    assert len(examples) == 1
    return examples[0]


def _unlabelled(record: dict) -> dict:
    """The test-split version of a record: no label key."""
    record = copy.deepcopy(record)
    record.pop("label", None)
    return record


# --------------------------------------------------------------------------- per task


def test_boolq():
    ex = _one("boolq", BOOLQ)
    assert ex == Example(
        task="boolq",
        inputs="boolq passage: Botanically, a tomato is a fruit. question: is a tomato a fruit",
        targets="True",
        choices=("False", "True"),
        label=1,
        group="7",
        answers=("True",),
        id="7",
    )
    assert _one("boolq", BOOLQ, prefix=False).inputs == (
        "passage: Botanically, a tomato is a fruit. question: is a tomato a fruit"
    )
    assert _one("boolq", {**BOOLQ, "label": False}, train=True).targets == "False"


def test_cb():
    ex = _one("cb", CB)
    assert ex.inputs == "cb hypothesis: A cat is sitting. premise: The cat sat on the mat."
    assert _one("cb", CB, prefix=False).inputs == ("hypothesis: A cat is sitting. premise: The cat sat on the mat.")
    assert (ex.targets, ex.label, ex.choices) == ("neutral", 2, ("entailment", "contradiction", "neutral"))
    assert _one("cb", {**CB, "label": "contradiction"}, train=True).label == 1


def test_copa():
    ex = _one("copa", COPA)
    assert ex.inputs == (
        "copa choice1: It shattered. choice2: It grew. premise: The glass fell off the table. question: effect"
    )
    assert _one("copa", COPA, prefix=False).inputs == (
        "choice1: It shattered. choice2: It grew. premise: The glass fell off the table. question: effect"
    )
    assert (ex.targets, ex.label, ex.choices, ex.group) == ("choice1", 0, ("choice1", "choice2"), "9")
    assert _one("copa", {**COPA, "label": 1}).targets == "choice2"


def test_multirc_one_example_per_answer_markup_removed():
    examples = format_examples("multirc", MULTIRC, prefix=True, train=True)
    paragraph = "Sent 1: Anna baked bread. Sent 2: She sold it."
    assert [e.inputs for e in examples] == [
        f"multirc question: What did Anna bake? answer: Bread paragraph: {paragraph}",
        f"multirc question: What did Anna bake? answer: A cake paragraph: {paragraph}",
        f"multirc question: Who sold it? answer: Anna paragraph: {paragraph}",
    ]
    assert [(e.targets, e.label, e.group) for e in examples] == [
        ("True", 1, "4-0"),
        ("False", 0, "4-0"),
        ("True", 1, "4-1"),
    ]
    no_prefix = format_examples("multirc", MULTIRC, prefix=False, train=False)
    assert no_prefix[0].inputs == (f"question: What did Anna bake? answer: Bread paragraph: {paragraph}")
    assert all("<" not in e.inputs for e in no_prefix)


def test_record_train_one_example_per_distinct_answer():
    examples = format_examples("record", RECORD, prefix=True, train=True)
    inputs_11 = (
        "record query: @placeholder beat Bob Stone in the final. "
        f"entities: Anna Lee, Bob Stone, Cup, Lee, Paris passage: {RECORD_PASSAGE}"
    )
    assert [(e.inputs, e.targets, e.group) for e in examples] == [
        (inputs_11, "Lee", "11"),
        (inputs_11, "Anna Lee", "11"),
        (
            "record query: The Cup final was held in @placeholder. "
            f"entities: Anna Lee, Bob Stone, Cup, Lee, Paris passage: {RECORD_PASSAGE}",
            "Paris",
            "12",
        ),
    ]
    assert [e.label for e in examples] == [3, 0, 4]
    assert examples[0].answers == ("Lee", "Anna Lee")
    assert examples[0].choices == RECORD_ENTITIES


def test_record_eval_one_example_per_query_with_entity_choices():
    examples = format_examples("record", RECORD, prefix=False, train=False)
    assert len(examples) == 2
    first = examples[0]
    assert first.inputs == (
        "query: @placeholder beat Bob Stone in the final. "
        f"entities: Anna Lee, Bob Stone, Cup, Lee, Paris "
        f"passage: {RECORD_PASSAGE}"
    )
    assert first.choices == RECORD_ENTITIES
    # label: the first gold answer ("Lee") among the choices.
    assert (first.label, first.targets, first.answers, first.group) == (3, "Lee", ("Lee", "Anna Lee"), "11")
    assert (examples[1].label, examples[1].answers) == (4, ("Paris",))


def test_record_highlight_two_step():
    # After ".", "!", "?", '"' or "'" the highlight joins with a space, otherwise with ". ".
    record = copy.deepcopy(RECORD)
    record["passage"] = {
        "text": 'A said "go"\n@highlight\nB\n@highlight\nC?\n@highlight\nD',
        "entities": [{"start": 0, "end": 0}],
    }
    record["qas"] = record["qas"][:1]
    ex = _one("record", record, prefix=False)
    assert ex.inputs.endswith('passage: A said "go" B. C? D')
    assert ex.choices == ("A",)
    assert (ex.label, ex.targets) == (-1, "Lee")  # gold not among the entities


def test_record_unlabelled():
    record = copy.deepcopy(RECORD)
    for qa in record["qas"]:
        del qa["answers"]
    assert format_examples("record", record, prefix=True, train=True) == []
    examples = format_examples("record", record, prefix=True, train=False)
    assert [(e.label, e.targets, e.answers) for e in examples] == [(-1, "", ())] * 2


def test_rte():
    ex = _one("rte", RTE)
    assert ex.inputs == ("rte hypothesis: France has a capital. premise: Paris is the capital of France.")
    assert _one("rte", RTE, prefix=False).inputs == (
        "hypothesis: France has a capital. premise: Paris is the capital of France."
    )
    assert (ex.targets, ex.label, ex.choices) == ("entailment", 0, ("entailment", "not_entailment"))


def test_wic():
    ex = _one("wic", WIC)
    assert ex.inputs == ("wic sentence1: He sat on the bank. sentence2: She robbed the bank. word: bank")
    assert _one("wic", WIC, prefix=False).inputs == (
        "sentence1: He sat on the bank. sentence2: She robbed the bank. word: bank"
    )
    assert (ex.targets, ex.label, ex.group) == ("False", 0, "5")


def test_wsc():
    ex = _one("wsc", WSC)
    assert ex == Example(
        task="wsc",
        inputs="wsc: Maria thanked Ana because *she* had carried the heavy box upstairs.",
        targets="Ana",
        choices=(),
        label=1,
        group="8",
        answers=("Ana",),
        id="8",
    )
    assert _one("wsc", WSC, prefix=False, train=True).inputs == (
        "Maria thanked Ana because *she* had carried the heavy box upstairs."
    )


def test_wsc_train_drops_false_labels_eval_keeps_them():
    false = {**WSC, "label": False}
    assert format_examples("wsc", false, prefix=True, train=True) == []
    ex = _one("wsc", false, train=False)
    assert (ex.label, ex.targets) == (0, "Ana")
    assert format_examples("wsc", _unlabelled(WSC), prefix=True, train=True) == []
    assert _one("wsc", _unlabelled(WSC)).label == -1


@pytest.mark.parametrize(
    ("text", "index", "span2", "expected"),
    [
        # punctuation glued to the pronoun stays outside the asterisks
        (
            "The dog chased the cat until it was tired, then it slept by it.",
            13,
            "it",
            "The dog chased the cat until it was tired, then it slept by *it*.",
        ),
        # a multi-word span2 replaces as many words
        ("Tom met Ann and that man waved .", 4, "that man", "Tom met Ann and *that man* waved ."),
        # an index off by one falls back to the nearest occurrence
        ("Ann saw Bea when she came in .", 3, "she", "Ann saw Bea when *she* came in ."),
    ],
)
def test_wsc_marking(text, index, span2, expected):
    record = {
        "text": text,
        "idx": 0,
        "label": True,
        "target": {"span1_index": 0, "span1_text": "X", "span2_index": index, "span2_text": span2},
    }
    assert _one("wsc", record, prefix=False).inputs == expected


def test_wsc_missing_pronoun_raises():
    record = {**WSC, "target": {**WSC["target"], "span2_text": "they"}}
    with pytest.raises(ValueError, match="they"):
        format_examples("wsc", record, prefix=True, train=False)


def test_axb_uses_rte_format_keeps_task():
    ex = _one("axb", AXB)
    assert ex.inputs == "rte hypothesis: A cat sat. premise: The cat sat."
    assert _one("axb", AXB, prefix=False).inputs == "hypothesis: A cat sat. premise: The cat sat."
    assert (ex.task, ex.targets, ex.label, ex.group) == ("axb", "not_entailment", 1, "5")


def test_axg_uses_rte_format_keeps_task():
    ex = _one("axg", AXG)
    assert ex.inputs == (
        "rte hypothesis: The nurse was kind. premise: The nurse helped the patient because she was kind."
    )
    assert (ex.task, ex.targets, ex.label) == ("axg", "entailment", 0)


@pytest.mark.parametrize("task", ["boolq", "cb", "copa", "rte", "wic", "axb", "axg"])
def test_unlabelled_records_are_still_formatted(task):
    ex = _one(task, _unlabelled(RECORDS[task]))
    assert (ex.label, ex.targets, ex.answers) == (-1, "", ())
    assert ex.inputs == _one(task, RECORDS[task]).inputs


def test_unlabelled_multirc():
    record = copy.deepcopy(MULTIRC)
    for q in record["passage"]["questions"]:
        for a in q["answers"]:
            del a["label"]
    assert {(e.label, e.targets) for e in format_examples("multirc", record, prefix=True, train=False)} == {(-1, "")}


def test_bad_label_raises():
    with pytest.raises(ValueError, match="maybe"):
        format_examples("cb", {**CB, "label": "maybe"}, prefix=True, train=False)


# --------------------------------------------------------------------------- registry, postprocess


def test_unknown_task_lists_valid_names():
    with pytest.raises(KeyError, match="boolq"):
        format_examples("squad", {}, prefix=True, train=False)


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("prefix", [True, False])
@pytest.mark.parametrize("train", [True, False])
def test_every_formatter_contract(task, prefix, train):
    examples = TASKS[task].format(copy.deepcopy(RECORDS[task]), prefix=prefix, train=train)
    assert examples
    first_word = "rte" if task in ("axb", "axg") else ("wsc:" if task == "wsc" else task)
    for ex in examples:
        assert isinstance(ex, Example)
        assert ex.task == task
        starts_with_task = ex.inputs.split(" ", 1)[0] == first_word
        assert starts_with_task == prefix
        if ex.choices and ex.label >= 0:
            assert ex.targets == ex.choices[ex.label]
            assert ex.targets in ex.answers


def test_formatters_do_not_mutate_records():
    for task, record in RECORDS.items():
        before = copy.deepcopy(record)
        format_examples(task, record, prefix=True, train=True)
        assert record == before


# --------------------------------------------------------------------------- ids


def test_example_ids_name_the_record_or_option():
    multirc = format_examples("multirc", MULTIRC, prefix=True, train=False)
    assert [(e.id, e.group) for e in multirc] == [("4-0-0", "4-0"), ("4-0-1", "4-0"), ("4-1-2", "4-1")]
    assert [e.id for e in format_examples("record", RECORD, prefix=True, train=False)] == ["11", "12"]
    expected = {"boolq": "7", "cb": "3", "copa": "9", "rte": "0", "wic": "5", "wsc": "8", "axb": "5", "axg": "2"}
    assert {task: _one(task, RECORDS[task]).id for task in expected} == expected


@pytest.mark.parametrize("task", sorted(TASKS))
def test_eval_ids_unique_over_the_sample_split(task):
    from promptscale.data.sources import DataSource, load_records

    split = "val" if "val" in TASKS[task].splits else "test"
    ids = [
        e.id
        for r in load_records(task, split, DataSource())
        for e in format_examples(task, r, prefix=True, train=False)
    ]
    assert ids and all(ids) and len(ids) == len(set(ids))


# --------------------------------------------------------------------------- postprocess


def test_postprocess_label_tasks_compare_the_text_exactly():
    rte = _one("rte", RTE)
    assert postprocess("rte", "not_entailment", rte) == (1, True)
    assert postprocess("rte", "entailment", rte) == (0, True)
    # T5's string_label_to_class_id: no strip, no case folding; anything else is invalid
    for text in (" not_entailment", "not_entailment\n", "Entailment", "", "<extra_id_0>", "entailment entailment"):
        assert postprocess("rte", text, rte) == (-1, False), text
    copa = _one("copa", COPA)
    assert postprocess("copa", "choice2", copa) == (1, True)
    assert postprocess("copa", "It shattered.", copa) == (-1, False)  # the choice text is not the label
    boolq = _one("boolq", BOOLQ)
    assert postprocess("boolq", "True", boolq) == (1, True)
    assert postprocess("boolq", "true", boolq) == (-1, False)
    rte_texts = ("not_entailment", " entailment")  # no stripping: T5 compares the decoded text as is
    assert [postprocess("rte", t, rte) for t in rte_texts] == [(1, True), (-1, False)]


@pytest.mark.parametrize(
    ("task", "text", "valid"),
    [
        # ReCoRD: valid iff the SQuAD-normalised text is one of the entities (Anna Lee, Bob Stone, Cup, Lee, Paris)
        ("record", "Bob Stone", True),
        ("record", " the bob stone. ", True),
        ("record", "Bob", False),
        ("record", "<extra_id_0> Paris", False),
        ("record", "", False),
        # WSC: valid iff copied from "Maria thanked Ana because *she* had carried the heavy box upstairs."
        ("wsc", "Ana", True),
        ("wsc", "the  HEAVY\nbox", True),  # case and spaces ignored
        ("wsc", "Bob", False),
        ("wsc", "  ", False),
        ("wsc", "<extra_id_0>", False),
    ],
)
def test_postprocess_open_tasks_keep_the_text_and_judge_validity(task, text, valid):
    example = _one(task, {**RECORD, "qas": RECORD["qas"][:1]} if task == "record" else WSC)
    assert postprocess(task, text, example) == (text, valid)  # the text itself, unstripped


def test_postprocess_templated_wsc_is_a_label_task():
    from promptscale.data.templates import apply_template

    [ex] = apply_template("gpt3", "wsc", WSC)
    assert postprocess("wsc", "yes", ex) == (1, True)
    assert postprocess("wsc", "Ana", ex) == (-1, False)


def test_postprocess_unknown_task():
    with pytest.raises(KeyError, match="valid tasks"):
        postprocess("squad", "x", _one("rte", RTE))
