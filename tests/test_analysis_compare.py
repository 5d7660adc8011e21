"""Paired comparisons on synthetic stores with a known answer: the gap per size, "gap closed at",
and bad input that says exactly what is missing (sizes, tasks, examples, a replaced file)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from test_analysis_bootstrap import dev_examples
from test_figures import row as figure_row

from promptscale.analysis.compare import ComparisonError, Side, closed_at, compare, reference_gap
from promptscale.metrics import score_examples
from promptscale.reference import T5_PARAMS
from promptscale.store.predictions import PredictionsError, write_predictions
from promptscale.store.results import ResultsStore


def write_run(store: ResultsStore, method: str, model: str, seed: int, wrong: dict[str, int], **over) -> list[dict]:
    """A finished run on the sample's dev sets: its predictions file, then its rows (as training writes).

    Per task, the first ``wrong[task]`` examples are answered wrongly (the next choice), the rest
    right, under both protocols; ``over`` sets row fields (e.g. ``family``) or ``ids`` (an id shift).
    """
    shift = over.pop("shift", 0)
    records, rows = [], []
    hash_ = f"h-{method}-{model}-{seed}-{over.get('setting', '')}"
    run_id = f"{method}-{model}-{seed}{over.get('setting', '')}"
    for task, n_wrong in wrong.items():
        examples = dev_examples(task)
        picks = [(ex.label + (i < n_wrong)) % len(ex.choices) for i, ex in enumerate(examples)]
        for ex, pick in zip(examples, picks):
            unit = str(int(ex.group) + shift)
            records.append(
                {"task": task, "id": unit, "group": unit, "label": ex.label, "answers": ex.answers,
                 "choices": ex.choices, "choice_scores": [0.0] * len(ex.choices), "rank": pick,
                 "text": ex.choices[pick], "generate": pick, "valid": True}
            )  # fmt: skip
        for protocol in ("generate", "rank"):
            for metric, value in score_examples(task, examples, picks).items():
                rows.append(
                    figure_row(method, model, seed, task, metric, value, protocol=protocol, config_hash=hash_, **over)
                    | {"run_id": run_id}
                )
    refs = write_predictions(store.dir, hash_, run_id, records)
    rows = [r | refs for r in rows]
    assert store.append(rows, once=True)
    return rows


def gap_store(tmp_path, pt_wrong: dict[str, tuple[int, ...]]) -> ResultsStore:
    """Model tuning right on every rte and cb example at small / base / large (2 seeds); prompt tuning
    wrong on ``pt_wrong[model]`` examples (rte, cb) with seeds 0 and 1."""
    store = ResultsStore(tmp_path / "results.jsonl")
    for model, (rte, cb) in pt_wrong.items():
        for seed in (0, 1):
            write_run(store, "model_tuning", model, seed, {"rte": 0, "cb": 0})
            write_run(store, "prompt_tuning", model, seed, {"rte": rte, "cb": cb})
    return store


def test_gap_and_closed_at_on_a_known_answer(tmp_path):
    """16 dev examples per task. Small: prompt tuning wrong on all -> -100 exactly, in every replicate.
    Base: wrong on 8 of rte and 4 of cb -> rte -50, cb -25 (and macro-F1 moves), below 0 in every
    replicate but a vanishing few. Large: identical -> [0, 0]: the gap closed at large."""
    store = gap_store(tmp_path, {"small": (16, 16), "base": (8, 4), "large": (0, 0)})
    result = compare(store.rows(), store.dir, "model_tuning", "prompt_tuning", n_boot=2000, seed=0)
    sizes = result.sizes.set_index("model")
    assert list(sizes.index) == ["small", "base", "large"]
    assert (sizes.loc["small", "diff"], sizes.loc["small", "low"], sizes.loc["small", "high"]) == (
        -100.0,
        -100.0,
        -100.0,
    )
    tasks = result.tasks.set_index(["model", "task"])
    assert tasks.loc[("base", "rte"), "diff"] == -50.0
    assert tasks.loc[("base", "cb"), "diff"] == pytest.approx(-25.0 / 2 + (score_cb(4) - 100.0) / 2)
    assert sizes.loc["base", "diff"] == pytest.approx(
        (tasks.loc[("base", "rte"), "diff"] + tasks.loc[("base", "cb"), "diff"]) / 2
    )
    assert sizes.loc["base", "high"] < 0 < 100 + sizes.loc["base", "low"]
    assert (sizes.loc["large", "diff"], sizes.loc["large", "low"], sizes.loc["large", "high"]) == (0.0, 0.0, 0.0)
    assert list(sizes["closed"]) == [False, False, True]
    assert result.closed_at() == {"": ("", "large", T5_PARAMS["large"])}
    assert result.closed_text() == "gap closed at: large (783M)"
    assert (sizes["n_seeds_base"] == 2).all() and sizes.loc["base", "units"] == "cb:16 rte:16"
    assert sizes.loc["small", "base_mean"] == 100.0 and sizes.loc["small", "method_mean"] == 0.0


def score_cb(n_wrong: int) -> float:
    """CB's macro-F1 with the first ``n_wrong`` sample examples answered by the next class."""
    examples = dev_examples("cb")
    picks = [(ex.label + (i < n_wrong)) % 3 for i, ex in enumerate(examples)]
    return score_examples("cb", examples, picks)["f1_macro"]


def test_a_gap_that_reopens_is_not_closed_and_overtaking_closes_it():
    frame = pd.DataFrame(
        {"family": "", "model": ["s", "b", "l", "x"], "total_params": [1, 2, 3, 4],
         "high": [-1.0, 0.5, -0.2, 0.1]}
    )  # fmt: skip
    assert closed_at(frame) == {"": ("", "x", 4)}
    assert closed_at(frame.assign(high=[-1.0, -2.0, -0.5, -0.1])) == {"": None}
    assert closed_at(frame.assign(high=[0.5, 0.5, 3.0, 9.0])) == {"": ("", "s", 1)}  # overtaken from the start
    two = pd.concat([frame.assign(family="t5"), frame.assign(family="flan", high=[-1.0, 1.0, 1.0, 1.0])])
    assert closed_at(two) == {"t5": ("t5", "x", 4), "flan": ("flan", "b", 2)}


def test_families_are_compared_within_themselves(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    for family, wrong in (("t5_1_1", 4), ("flan_t5", 0)):
        write_run(store, "model_tuning", f"{family}_small", 0, {"rte": 0}, family=family, total_params=1000)
        write_run(store, "prompt_tuning", f"{family}_small", 0, {"rte": wrong}, family=family, total_params=1000)
    result = compare(store.rows(), store.dir, "model_tuning", "prompt_tuning", n_boot=200)
    assert dict(zip(result.sizes["family"], result.sizes["diff"])) == {"flan_t5": 0.0, "t5_1_1": -25.0}
    assert result.closed_text() == "gap closed at: flan_t5: flan_t5_small (1K); t5_1_1: not closed"


def test_settings_are_sides_of_their_own(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    for length, wrong in ((5, 8), (20, 2)):
        write_run(store, "prompt_tuning", "small", 0, {"rte": wrong}, setting=f"prompt_length={length}")
    with pytest.raises(ComparisonError, match=r"prompt_tuning has runs of 2 settings .* prompt_tuning@SETTING"):
        compare(store.rows(), store.dir, "prompt_tuning", "prompt_tuning@prompt_length=5")
    result = compare(store.rows(), store.dir, "prompt_tuning@prompt_length=5", "prompt_tuning@prompt_length=20")
    assert result.sizes["diff"].tolist() == [37.5]
    assert Side.of("prompt_tuning@prompt_length=20").label == "Prompt Tuning (20)"


def test_no_common_sizes_tasks_or_examples_say_what_is_missing(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    write_run(store, "model_tuning", "small", 0, {"rte": 0})
    write_run(store, "prompt_tuning", "base", 0, {"cb": 0})
    with pytest.raises(
        ComparisonError, match=r"no model size in common: model_tuning has small \(77M\); prompt_tuning has base"
    ):
        compare(store.rows(), store.dir, "model_tuning", "prompt_tuning")
    write_run(store, "prompt_tuning", "small", 0, {"cb": 0})
    with pytest.raises(
        ComparisonError,
        match=r"no SuperGLUE task in common .*model_tuning small \(77M\) seed 0: rte; prompt_tuning small .* 0: cb",
    ):
        compare(store.rows(), store.dir, "model_tuning", "prompt_tuning")
    write_run(store, "lora", "small", 0, {"rte": 0}, shift=100)  # the same task, other examples
    with pytest.raises(
        ComparisonError,
        match=r"no rte dev example is common to every run at small \(77M\) \(model_tuning run 1: 16; lora run 1: 16\)",
    ):
        compare(store.rows(), store.dir, "model_tuning", "lora")
    write_run(store, "prefix_tuning", "small", 0, {"rte": 0}, shift=10)  # 6 examples in common
    with pytest.warns(UserWarning, match=r"paired on the 6 dev examples every run has"):
        assert compare(store.rows(), store.dir, "model_tuning", "prefix_tuning").sizes["units"].tolist() == ["rte:6"]
    with pytest.raises(
        ComparisonError, match=r"no finished runs of multitask_model_tuning .*present: lora, model_tuning"
    ):
        compare(store.rows(), store.dir, "multitask_model_tuning", "prompt_tuning")


def test_a_replaced_predictions_file_is_refused_by_name(tmp_path):
    store = gap_store(tmp_path, {"small": (3, 3)})
    victim = next(r for r in store.rows() if r["method"] == "prompt_tuning")
    path = store.dir / victim["predictions"]
    other = next(r for r in store.rows() if r["predictions"] != victim["predictions"])
    path.write_bytes((store.dir / other["predictions"]).read_bytes())  # a valid file, but not this run's
    with pytest.raises(PredictionsError, match=rf"{path}: SHA-256 .* does not match .*refusing it"):
        compare(store.rows(), store.dir, "model_tuning", "prompt_tuning")


def test_rows_without_predictions_and_mismatched_values(tmp_path):
    store = gap_store(tmp_path, {"small": (3, 3)})
    rows = store.rows()
    doctored = [r | {"value": r["value"] + 1} if r["method"] == "prompt_tuning" else r for r in rows]
    with pytest.warns(UserWarning, match=r"rte accuracy from the predictions is 81.2500, its rows record 82.2500"):
        compare(doctored, store.dir, "model_tuning", "prompt_tuning", n_boot=50)
    old = [{k: v for k, v in r.items() if k not in ("predictions", "predictions_sha256")} for r in rows]
    with pytest.raises(PredictionsError, match="has no predictions file"):
        compare(old, store.dir, "model_tuning", "prompt_tuning")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare(rows, store.dir, "model_tuning", "prompt_tuning", n_boot=50)  # a clean store: no warning


def test_reference_gap_is_the_papers():
    gap = dict(reference_gap(Side("model_tuning"), Side("prompt_tuning")))
    assert gap[T5_PARAMS["small"]] == pytest.approx(59.8 - 62.8) and gap[T5_PARAMS["xxl"]] == pytest.approx(-1.1)
    assert reference_gap(Side("model_tuning"), Side("lora")) == []
