"""SuperGLUE metrics: hand-computed values, the offline evaluate.Metric, the bridge, the score."""

from __future__ import annotations

import pytest
from test_formats import BOOLQ, COPA

from promptscale.data.formats import format_examples
from promptscale.data.tasks import SCORED_TASKS, TASKS
from promptscale.metrics import (
    SuperGlueMetric,
    accuracy,
    compute_task_metrics,
    f1_macro,
    matthews_corr,
    multirc_f1a_em,
    record_em_f1,
    score_examples,
    squad_f1,
    squad_normalize,
    superglue_score,
    task_score,
    wsc_referent_match,
)

# Literal official-schema records (invented text; see test_formats.py for their formats).
RTE = {
    "premise": "Paris is the capital of France.",
    "hypothesis": "France has a capital.",
    "idx": 0,
    "label": "entailment",
}
CB = {"premise": "The cat sat on the mat.", "hypothesis": "A cat is sitting.", "idx": 3, "label": "neutral"}
MULTIRC = {
    "idx": 4,
    "version": 1.1,
    "passage": {
        "text": "Anna baked <b>bread</b>.<br>She sold it.",
        "questions": [
            {
                "question": "What did Anna bake?",
                "idx": 0,
                "answers": [{"text": "Bread", "idx": 0, "label": 1}, {"text": "Cake", "idx": 1, "label": 0}],
            },
            {"question": "Who sold it?", "idx": 1, "answers": [{"text": "Anna", "idx": 2, "label": 1}]},
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
        },
        {"query": "The Cup was in @placeholder.", "idx": 12, "answers": [{"start": 24, "end": 28, "text": "Paris"}]},
    ],
}
WSC = {
    "text": "Maria thanked Ana because she had carried the heavy box upstairs.",
    "target": {"span1_index": 2, "span1_text": "Ana", "span2_index": 4, "span2_text": "she"},
    "idx": 8,
    "label": True,
}

approx = pytest.approx


# --------------------------------------------------------------------------- pure helpers


def test_accuracy():
    # matches at positions 0 and 2 of 4 -> 2/4 = 50%
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 50.0
    with pytest.raises(ValueError):
        accuracy([1], [1, 0])
    with pytest.raises(ValueError):
        accuracy([], [])


def test_f1_macro():
    preds, refs = [0, 0, 0, 1, 2], [0, 0, 1, 1, 1]
    # class 0: tp 2, fp 1, fn 0 -> 2*2/(4+1+0) = 0.8
    # class 1: tp 1, fp 0, fn 2 -> 2*1/(2+0+2) = 0.5
    # class 2: tp 0, fp 1, fn 0 -> 0
    # macro = (0.8 + 0.5 + 0) / 3 = 0.43333
    assert f1_macro(preds, refs, labels=range(3)) == approx(100 * 1.3 / 3)
    # a class absent from both sides still counts, as 0 (T5 passes labels=range(3) for CB):
    # (1 + 1 + 0) / 3
    assert f1_macro([0, 1], [0, 1], labels=range(3)) == approx(200 / 3)
    assert f1_macro([0, 1], [0, 1]) == 100.0  # labels inferred: {0, 1}
    # an unparseable prediction (-1) is only a miss of the true class:
    # class 0: tp 1 fn 1 -> 2/3; class 1: tp 1 -> 1; mean 5/6
    assert f1_macro([0, -1, 1], [0, 0, 1]) == approx(100 * 5 / 6)


def test_f1_macro_and_mcc_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    preds = [0, 2, 1, 1, 0, 2, 2, 0, -1, 1]
    refs = [0, 1, 1, 2, 0, 2, 0, 0, 1, 1]
    assert f1_macro(preds, refs, labels=range(3)) == approx(
        100 * metrics.f1_score(refs, preds, labels=[0, 1, 2], average="macro", zero_division=0)
    )
    bin_preds, bin_refs = [1, 0, 1, 1, 0, 0, 1, -1], [1, 0, 0, 1, 1, 0, 1, 0]
    assert matthews_corr(bin_preds, bin_refs) == approx(100 * metrics.matthews_corrcoef(bin_refs, bin_preds))


def test_matthews_corr():
    # tp = 2 (pos 0, 4), fp = 1 (pos 1), tn = 2 (pos 2, 3), fn = 0
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = 4 / sqrt(3*2*3*2) = 4/6
    assert matthews_corr([1, 1, 0, 0, 1], [1, 0, 0, 0, 1]) == approx(200 / 3)
    assert matthews_corr([1, 0, 1], [1, 0, 1]) == approx(100.0)
    assert matthews_corr([0, 1, 0], [1, 0, 1]) == approx(-100.0)
    assert matthews_corr([1, 1, 1], [1, 0, 1]) == 0.0  # constant prediction: undefined -> 0


def test_multirc_f1a_em():
    groups = ["a", "a", "b", "b", "c"]
    preds, refs = [1, 0, 1, 1, 0], [1, 0, 0, 1, 1]
    # pooled: tp 2 (pos 0, 3), fp 1 (pos 2), fn 1 (pos 4) -> F1a = 4 / (4+1+1) = 2/3
    # EM: a all right, b wrong at pos 2, c wrong at pos 4 -> 1/3
    out = multirc_f1a_em(groups, preds, refs)
    assert out == {"f1a": approx(200 / 3), "em": approx(100 / 3)}


def test_multirc_f1a_invalid_counts_against_its_gold_label():
    # T5's f1_score_with_invalid: -1 becomes 1 - gold. Gold True predicted True, gold False
    # predicted invalid -> a false positive: tp 1, fp 1 -> F1a = 2 / (2 + 1) = 2/3 (not 100)
    assert multirc_f1a_em(["q", "q"], [1, -1], [1, 0]) == {"f1a": approx(200 / 3), "em": 0.0}
    # invalid on gold True -> a false negative: tp 1, fn 1 -> 2/3; EM: q1 wrong, q2 right -> 1/2
    assert multirc_f1a_em(["q1", "q1", "q2"], [1, -1, 0], [1, 1, 0]) == {"f1a": approx(200 / 3), "em": 50.0}
    # every option invalid: no true positive -> F1a 0
    assert multirc_f1a_em(["q", "q"], [-1, -1], [1, 0]) == {"f1a": 0.0, "em": 0.0}


def test_squad_normalize_and_f1():
    # lower, drop punctuation ("cat's" -> "cats"), drop articles, collapse spaces
    assert squad_normalize("The  Cat's, hat!") == "cats hat"
    assert squad_normalize("An apple a day") == "apple day"
    # pred {paris, france}, gold {paris}: overlap 1, P 1/2, R 1 -> F1 2/3
    assert squad_f1("Paris, France", "paris") == approx(2 / 3)
    assert squad_f1("Lyon", "Paris") == 0.0


def test_record_em_f1():
    preds = {"q1": "the Eiffel Tower", "q2": "Paris France"}
    refs = {"q1": ["Eiffel Tower", "Tower"], "q2": ["Paris"], "q3": ["Lyon"]}
    # q1: EM 1, F1 1 (max over answers); q2: EM 0, F1 2/3; q3: no prediction -> 0, 0
    # EM = 1/3, F1 = (1 + 2/3 + 0) / 3 = 5/9
    assert record_em_f1(preds, refs) == {"em": approx(100 / 3), "f1": approx(500 / 9)}
    with pytest.raises(ValueError, match="no gold"):
        record_em_f1({}, {"q": []})


@pytest.mark.parametrize(
    ("prediction", "referent", "expected"),
    [
        ("the dog", "The dog", True),  # case and determiners ignored
        ("dog", "the big dog", True),  # subset
        ("the big brown dog", "big dog", True),  # superset
        ("cat", "the dog", False),
        ("Bob", "Bob's hat", False),  # possessive on one side only
        ("", "Tom", False),  # empty output never matches
        ("Tom.", "Tom", False),  # T5 does not strip punctuation
    ],
)
def test_wsc_referent_match(prediction, referent, expected):
    assert wsc_referent_match(prediction, referent) is expected


# --------------------------------------------------------------------------- evaluate.Metric

_CLASSIFICATION_CASES = {
    # task: (predictions, references, expected)
    "boolq": ([1, 0, 1, 1], [1, 1, 1, 0], {"accuracy": 50.0}),
    "copa": ([0, 1], [0, 1], {"accuracy": 100.0}),
    "rte": ([0, 1, 1], [0, 0, 1], {"accuracy": approx(200 / 3)}),
    "wic": ([0], [1], {"accuracy": 0.0}),
    "wsc": ([1, 1, 0, 0], [1, 0, 0, 0], {"accuracy": 75.0}),
    "axg": ([0, 1, 0, 1], [0, 1, 1, 1], {"accuracy": 75.0}),
    # same numbers as test_f1_macro: accuracy 3/5
    "cb": ([0, 0, 0, 1, 2], [0, 0, 1, 1, 1], {"accuracy": 60.0, "f1_macro": approx(130 / 3)}),
    # same numbers as test_matthews_corr
    "axb": ([1, 1, 0, 0, 1], [1, 0, 0, 0, 1], {"matthews_corr": approx(200 / 3)}),
}


@pytest.mark.parametrize("task", sorted(_CLASSIFICATION_CASES))
def test_evaluate_metric_classification(task, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    preds, refs, expected = _CLASSIFICATION_CASES[task]
    out = SuperGlueMetric(config_name=task).compute(predictions=preds, references=refs)
    assert out == expected
    assert list(out) == list(TASKS[task].metrics)


def test_evaluate_metric_multirc_batches():
    metric = SuperGlueMetric(config_name="multirc")
    groups, preds, refs = ["a", "a", "b", "b", "c"], [1, 0, 1, 1, 0], [1, 0, 0, 1, 1]
    rows = [{"group": g, "prediction": p} for g, p in zip(groups, preds)]
    metric.add_batch(predictions=rows[:2], references=refs[:2])
    metric.add_batch(predictions=rows[2:], references=refs[2:])
    assert metric.compute() == {"f1a": approx(200 / 3), "em": approx(100 / 3)}


def test_evaluate_metric_record():
    metric = SuperGlueMetric(config_name="record")
    out = metric.compute(
        predictions=[
            {"group": "q1", "prediction_text": "the Eiffel Tower"},
            {"group": "q2", "prediction_text": "Paris France"},
            {"group": "q3", "prediction_text": "Nice"},
        ],
        references=[
            {"group": "q1", "answers": ["Eiffel Tower", "Tower"]},
            {"group": "q2", "answers": ["Paris"]},
            {"group": "q3", "answers": ["Lyon"]},
        ],
    )
    assert out == {"em": approx(100 / 3), "f1": approx(500 / 9)}  # as test_record_em_f1


def test_evaluate_metric_covers_every_task_and_rejects_unknown():
    for task in TASKS:
        assert SuperGlueMetric(config_name=task).config_name == task
    with pytest.raises(KeyError, match="boolq"):
        SuperGlueMetric(config_name="squad")


# --------------------------------------------------------------------------- score_examples


def _eval_examples(task, records):
    return [ex for r in records for ex in format_examples(task, r, prefix=False, train=False)]


def test_score_examples_int_and_str_predictions():
    examples = _eval_examples("rte", [RTE, {**RTE, "label": "not_entailment"}])
    assert score_examples("rte", examples, [0, 0]) == {"accuracy": 50.0}
    assert score_examples("rte", examples, ["entailment", "not_entailment"]) == {"accuracy": 100.0}
    # text that is no label, exactly, maps to -1: wrong (T5 strips nothing)
    assert score_examples("rte", examples, ["yes", "not_entailment"]) == {"accuracy": 50.0}
    assert score_examples("rte", examples, ["entailment", " not_entailment "]) == {"accuracy": 50.0}


def test_score_examples_cb():
    labels = ["entailment", "contradiction", "neutral", "neutral"]
    examples = _eval_examples("cb", [{**CB, "label": lab} for lab in labels])
    # preds 0, 1, 1, 2 vs refs 0, 1, 2, 2: accuracy 3/4
    # F1: class 0 = 1; class 1: tp 1 fp 1 -> 2/3; class 2: tp 1 fn 1 -> 2/3; mean 7/9
    out = score_examples("cb", examples, [0, "contradiction", 1, "neutral"])
    assert out == {"accuracy": 75.0, "f1_macro": approx(700 / 9)}


def test_score_examples_multirc_groups_by_question():
    examples = _eval_examples("multirc", [MULTIRC])  # labels 1, 0 (question 4-0), 1 (4-1)
    # preds 1, 1, 1: tp 2, fp 1 -> F1a 4/5; question 4-0 wrong, 4-1 right -> EM 1/2
    assert score_examples("multirc", examples, ["True", 1, "True"]) == {"f1a": approx(80.0), "em": 50.0}


def test_score_examples_record():
    examples = _eval_examples("record", [RECORD])  # choices Anna Lee, Bob Stone, Cup, Lee, Paris
    # query 11 answers {Lee, Anna Lee}; query 12 answers {Paris}
    assert score_examples("record", examples, [3, 4]) == {"em": 100.0, "f1": 100.0}
    # "Anna Lee" is gold for 11; "Cup" vs Paris: 0. EM = F1 = 1/2
    assert score_examples("record", examples, ["Anna Lee", 2]) == {"em": 50.0, "f1": 50.0}
    # "Lee Cup": EM 0 for 11, F1 vs "Lee" = 2*(1/2*1)/(1/2+1) = 2/3, vs "Anna Lee" = 1/2 -> 2/3
    assert score_examples("record", examples, ["Lee Cup", "Paris"]) == {"em": 50.0, "f1": approx(100 * (2 / 3 + 1) / 2)}


def test_score_examples_wsc():
    examples = _eval_examples("wsc", [WSC, {**WSC, "label": False}])  # labels 1, 0; referent Ana
    # "the Ana" names the referent -> True (right, label 1); "Maria" -> False (right, label 0)
    assert score_examples("wsc", examples, ["the Ana", "Maria"]) == {"accuracy": 100.0}
    # "Ana" -> True twice: the second is wrong
    assert score_examples("wsc", examples, ["Ana", "Ana"]) == {"accuracy": 50.0}
    # ints are the truth decisions themselves
    assert score_examples("wsc", examples, [0, 0]) == {"accuracy": 50.0}


def test_score_examples_axb_with_rte_outputs():
    records = [
        {"sentence1": "A.", "sentence2": "B.", "idx": str(i), "label": lab}
        for i, lab in enumerate(["entailment", "not_entailment", "not_entailment"])
    ]
    examples = _eval_examples("axb", records)
    # preds 0, 1, 0 vs refs 0, 1, 1: tp(1=pos) 1, tn 1, fn 1, fp 0
    # MCC over classes: (1*1 - 0*1) / sqrt((1)(2)(2)(1)) = 1/2
    out = score_examples("axb", examples, ["entailment", "not_entailment", "entailment"])
    assert out == {"matthews_corr": approx(50.0)}


def test_score_examples_refuses_unlabelled():
    unlabelled = {k: v for k, v in RTE.items() if k != "label"}
    with pytest.raises(ValueError, match="unlabelled"):
        score_examples("rte", _eval_examples("rte", [unlabelled]), [0])
    record = {**RECORD, "qas": [{k: v for k, v in qa.items() if k != "answers"} for qa in RECORD["qas"]]}
    with pytest.raises(ValueError, match="unlabelled"):
        score_examples("record", _eval_examples("record", [record]), [0, 0])
    wsc = {k: v for k, v in WSC.items() if k != "label"}
    with pytest.raises(ValueError, match="unlabelled"):
        score_examples("wsc", _eval_examples("wsc", [wsc]), ["Ana"])
    with pytest.raises(ValueError):
        score_examples("rte", _eval_examples("rte", [RTE]), [0, 1])  # length mismatch


# --------------------------------------------------------------------------- invalid outputs (paper's protocol)


def test_invalid_boolq_is_wrong():
    examples = _eval_examples("boolq", [BOOLQ, {**BOOLQ, "idx": 8, "label": False}])  # labels 1, 0
    assert score_examples("boolq", examples, ["True", "False"]) == {"accuracy": 100.0}
    # "false" is no label (T5 compares case-sensitively): invalid -> wrong
    assert score_examples("boolq", examples, ["True", "false"]) == {"accuracy": 50.0}
    assert score_examples("boolq", examples, ["yes", "no"]) == {"accuracy": 0.0}
    assert score_examples("boolq", examples, [-1, 0]) == {"accuracy": 50.0}  # -1 from rank/elsewhere: wrong


def test_invalid_copa_is_wrong():
    examples = _eval_examples("copa", [COPA, {**COPA, "idx": 10, "label": 1}])  # labels 0, 1
    assert score_examples("copa", examples, ["choice1", "choice 2"]) == {"accuracy": 50.0}
    # the alternative's text is not the label word; neither are case or space variants
    assert score_examples("copa", examples, ["It shattered.", "choice2"]) == {"accuracy": 50.0}
    assert score_examples("copa", examples, ["Choice1", " choice2"]) == {"accuracy": 0.0}


def test_invalid_cb_is_only_a_miss_of_the_true_class():
    labels = ["entailment", "contradiction", "neutral"]
    examples = _eval_examples("cb", [{**CB, "idx": i, "label": lab} for i, lab in enumerate(labels)])
    # preds 0, -1, 2 vs 0, 1, 2: accuracy 2/3; F1 class 0 = 1, class 1 = 0 (one miss, no FP), class 2 = 1
    out = score_examples("cb", examples, ["entailment", "maybe", "neutral"])
    assert out == {"accuracy": approx(200 / 3), "f1_macro": approx(200 / 3)}


def test_invalid_multirc_as_t5():
    one_question = {**MULTIRC, "passage": {**MULTIRC["passage"], "questions": MULTIRC["passage"]["questions"][:1]}}
    examples = _eval_examples("multirc", [one_question])  # gold True, False
    # the example: "Maybe" on gold False is a false positive -> F1a 2/3, not 100
    assert score_examples("multirc", examples, ["True", "Maybe"]) == {"f1a": approx(200 / 3), "em": 0.0}
    examples = _eval_examples("multirc", [MULTIRC])  # gold True, False (4-0); True (4-1)
    # "false" on gold True: invalid -> false negative: tp 1, fn 1 -> 2/3; EM: 4-0 right, 4-1 wrong
    assert score_examples("multirc", examples, ["True", "False", "false"]) == {"f1a": approx(200 / 3), "em": 50.0}


def test_invalid_record_text_is_scored_as_text():
    examples = _eval_examples("record", [RECORD])  # 11: {Lee, Anna Lee}; 12: {Paris}
    # "<extra_id_0> Lee" normalises to "extraid0 lee": EM 0; F1 vs "Lee" P 1/2 R 1 -> 2/3 (vs "Anna Lee" 1/2)
    # "Paris!" normalises to "paris": EM 1, F1 1. EM = 1/2, F1 = (2/3 + 1) / 2
    out = score_examples("record", examples, ["<extra_id_0> Lee", "Paris!"])
    assert out == {"em": 50.0, "f1": approx(100 * (2 / 3 + 1) / 2)}
    assert score_examples("record", examples, ["", -1]) == {"em": 0.0, "f1": 0.0}
    # the first prediction of a query counts
    first = score_examples("record", [examples[0], examples[0], examples[1]], ["Cup", "Lee", "Paris"])
    assert first == {"em": 50.0, "f1": 50.0}


def test_invalid_wsc_is_t5s_referent_match():
    examples = _eval_examples("wsc", [WSC, {**WSC, "idx": 9, "label": False}])  # labels 1, 0; referent Ana
    # a sentinel names no referent -> "False": wrong on the true pair, right on the false one (as T5)
    assert score_examples("wsc", examples, ["<extra_id_0>", "<extra_id_0>"]) == {"accuracy": 50.0}
    assert score_examples("wsc", examples, ["", "Maria thanked"]) == {"accuracy": 50.0}
    # "Ana." keeps its period (T5 strips none): no match, wrong; "ana" matches on the false pair: wrong
    assert score_examples("wsc", examples, ["Ana.", "ana"]) == {"accuracy": 0.0}


def test_invalid_axb_is_a_class_of_its_own():
    records = [
        {"sentence1": "A.", "sentence2": "B.", "idx": str(i), "label": lab}
        for i, lab in enumerate(["entailment", "not_entailment", "not_entailment", "entailment"])
    ]
    examples = _eval_examples("axb", records)
    # preds 0, -1, 1, 1 vs refs 0, 1, 1, 0: n 4, correct 2, pred counts {0:1, -1:1, 1:2}, true {0:2, 1:2}
    # cov_tp = 2*4 - (1*2 + 2*2) = 2; cov_pp = 16 - 6 = 10; cov_tt = 16 - 8 = 8 -> 2 / sqrt(80)
    out = score_examples("axb", examples, ["entailment", "maybe", "not_entailment", "not_entailment"])
    assert out == {"matthews_corr": approx(100 * 2 / 80**0.5)}


def test_compute_task_metrics_keys_follow_task_specs():
    for task in TASKS:
        if task == "multirc":
            out = compute_task_metrics(task, [{"group": "g", "prediction": 1}], [1])
        elif task == "record":
            out = compute_task_metrics(
                task, [{"group": "g", "prediction_text": "x"}], [{"group": "g", "answers": ["x"]}]
            )
        else:
            out = compute_task_metrics(task, [0, 1], [0, 1])
        assert tuple(out) == TASKS[task].metrics


# --------------------------------------------------------------------------- scores

# Lester et al. 2021, Table 3: prompt tuning on T5 XXL, SuperGLUE dev.
LESTER_XXL = {
    "boolq": {"accuracy": 91.1},
    "cb": {"accuracy": 99.3, "f1_macro": 99.0},
    "copa": {"accuracy": 98.8},
    "multirc": {"f1a": 65.7, "em": 88.7},
    "record": {"em": 92.7, "f1": 93.4},
    "rte": {"accuracy": 92.6},
    "wic": {"accuracy": 76.2},
    "wsc": {"accuracy": 95.8},
}


def test_task_score():
    assert task_score("cb", {"accuracy": 99.3, "f1_macro": 99.0}) == approx(99.15)
    assert task_score("rte", {"accuracy": 92.6, "extra": 0.0}) == 92.6
    with pytest.raises(KeyError, match="f1_macro"):
        task_score("cb", {"accuracy": 99.3})


def test_superglue_score_reproduces_lester_table3():
    # task scores: 91.1, 99.15, 98.8, 77.2, 93.05, 92.6, 76.2, 95.8; sum 723.9; / 8 = 90.4875
    score = superglue_score(LESTER_XXL)
    assert score == approx(90.4875)
    assert round(score, 1) == 90.5
    assert set(LESTER_XXL) == set(SCORED_TASKS)


def test_superglue_score_ignores_diagnostics():
    with_ax = {**LESTER_XXL, "axb": {"matthews_corr": 0.0}, "axg": {"accuracy": 0.0}}
    assert superglue_score(with_ax) == approx(90.4875)
    # a subset averages what is given: (91.1 + 99.15) / 2
    assert superglue_score({"boolq": LESTER_XXL["boolq"], "cb": LESTER_XXL["cb"]}) == approx(95.125)
    with pytest.raises(ValueError):
        superglue_score({"axb": {"matthews_corr": 10.0}})
