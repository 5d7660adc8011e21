"""WSC as T5 trains and scores it: TFDS ``wsc.fixed`` span corrections and ``wsc_simple`` marking.

Records are literal, in the official schema. Their texts are invented, except the two texts
T5's preprocessor special-cases (train records 137, 453 and 533 of the official release),
which are reproduced because the special case is keyed on the exact text.
"""

from __future__ import annotations

import copy

import pytest

from promptscale.data.formats import format_examples
from promptscale.data.tasks import get_task
from promptscale.data.tasks.wsc import fix_spans, mark_pronoun, t5_blank
from promptscale.data.templates import apply_template

PONY = (
    "The boy continued to whip the pony , and eventually the pony threw him over. John laughed out quite loud. "
    '"Good for him," he said. '
)
PEBBLE = (
    "When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble in an iron "
    "safe . Some day they might want to use it , but really for now, what more could they wish for?"
)


def wsc(text: str, span1: tuple[int, str], span2: tuple[int, str], label: bool = True, idx: int = 0) -> dict:
    target = {"span1_index": span1[0], "span1_text": span1[1], "span2_index": span2[0], "span2_text": span2[1]}
    return {"text": text, "target": target, "idx": idx, "label": label}


def inputs(record: dict) -> str:
    [example] = format_examples("wsc", record, prefix=True, train=False)
    return example.inputs


# --------------------------------------------------------------------------- TFDS wsc.fixed


def test_fix_case_of_first_character_follows_the_word_at_the_index():
    text = "The trophy does not fit into the brown suitcase because it is too large ."
    fixed = fix_spans(wsc(text, (0, "the trophy"), (9, "It")))
    # "the trophy" is no substring: word 0 "The" is capitalised; "It": word 9 "it" is lower-case
    assert fixed["target"] == {"span1_index": 0, "span1_text": "The trophy", "span2_index": 9, "span2_text": "it"}


def test_fix_strips_trailing_periods_and_newlines():
    text = "Anna gave the old brown suitcase to Mia because she was moving ."
    fixed = fix_spans(wsc(text, (2, "the old\nbrown suitcase.."), (8, "she")))
    assert fixed["target"]["span1_text"] == "the old brown suitcase"
    # word 2 starts with a quote, which is no lower-case letter, so the span is capitalised (as TFDS)
    quoted = fix_spans(wsc('Tom said "yes" because he agreed .', (2, "yes."), (4, "he")))
    assert quoted["target"]["span1_text"] == "Yes"


def test_fix_leaves_substrings_and_the_kamenev_spans_alone():
    text = "Kamenev and later Zinoviev opposed Stalin , so he removed them ."
    record = wsc(text, (0, "Kamenev and Zinoviev"), (8, "he"))
    assert fix_spans(record) == record
    ok = wsc("Ann saw Bea when she came in .", (0, "Ann"), (4, "she"))
    assert fix_spans(ok) == ok


def test_fix_theyscold_moves_span2_index_and_keeps_the_text():
    text = "The parents found the kids , and although they were happy theyscold them anyway ."
    record = wsc(text, (1, "parents"), (11, "theyscold."))
    fixed = fix_spans(record)
    assert fixed["text"] == text  # TFDS's replacement of "theyscold" in the text has no effect
    assert fixed["target"]["span2_index"] == 10
    assert fixed["target"]["span2_text"] == "theyscold"
    # the test is case-sensitive, as in TFDS: "Theyscold." keeps its index
    assert fix_spans(wsc(text, (1, "parents"), (11, "Theyscold.")))["target"]["span2_index"] == 11


def test_fix_is_idempotent_and_pure():
    text = "The trophy does not fit into the brown suitcase because it is too large ."
    record = wsc(text, (0, "the trophy."), (9, "It"))
    before = copy.deepcopy(record)
    once = fix_spans(record)
    assert fix_spans(once) == once
    assert record == before


def test_fixed_referent_is_the_target_in_format_and_template():
    text = "The trophy does not fit into the brown suitcase because it is too large ."
    record = wsc(text, (0, "the trophy."), (9, "it"), idx=3)
    [example] = format_examples("wsc", record, prefix=False, train=True)
    assert (example.targets, example.answers) == ("The trophy", ("The trophy",))
    [templated] = apply_template("gpt3", "wsc", record)
    assert templated.inputs.endswith('does the pronoun "*it*" refer to The trophy?\nAnswer:')
    assert templated.answers == ("The trophy",)
    assert get_task("wsc").version == 2


# --------------------------------------------------------------------------- T5 wsc_simple


def test_marking_is_t5s_blank_then_replace():
    record = wsc("Mitchell asked Tom if he could lend some money .", (2, "Tom"), (4, "he"))
    assert inputs(record) == "wsc: Mitchell asked Tom if *he* could lend some money ."
    assert t5_blank(record["text"], 4, "he") == "Mitchell asked Tom if X could lend some money ."


def test_t5_special_cases():
    pony = wsc(PONY, (4, "the pony"), (22, "him"), idx=137)
    assert inputs(pony) == (
        "wsc: The boy continued to whip the pony , and eventually the pony threw him over. John laughed out "
        'quite loud. "Good for *him* ," he said.'
    )
    # span2_index 30 points at "use"; T5's special case marks "it"
    pebble = wsc(PEBBLE, (16, "the magic pebble"), (30, "it"), idx=453)
    assert inputs(pebble) == (
        "wsc: When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble "
        "in an iron safe . Some day they might want to use *it* , but really for now, what more could they wish for?"
    )


def test_every_standalone_x_is_replaced_as_in_t5():
    # T5 replaces every " X " after blanking, so a word "X" elsewhere in the text is marked too.
    record = wsc("Player X passed to Sam because he was open .", (4, "Sam"), (6, "he"))
    assert inputs(record) == "wsc: Player *he* passed to Sam because *he* was open ."


def test_last_word_keeps_t5s_trailing_space():
    record = wsc("Ann called Bea and thanked her", (2, "Bea"), (5, "her"))
    assert mark_pronoun(record) == "Ann called Bea and thanked *her* "


@pytest.mark.parametrize(
    ("text", "span2", "expected"),
    [
        # T5 asserts word span2_index == span2_text: "him," is not "him" -> lenient, punctuation kept outside
        ("The coach praised Leo because he liked him, a lot .", (8, "him"), "*him*,"),
        # T5 asserts span2_index > 0 -> lenient
        ("It rolled off the table because it was round .", (0, "It"), "*It* rolled"),
        # a wrong index -> lenient marks the nearest occurrence
        ("Ann saw Bea when she came in .", (3, "she"), "when *she* came"),
    ],
)
def test_records_t5_rejects_fall_back_to_lenient_marking(text, span2, expected):
    record = wsc(text, (0, text.split()[0]), span2)
    assert t5_blank(text, *span2) is None
    assert expected in mark_pronoun(record)
    assert expected in inputs(record)
