"""The paired bootstrap: its resampling units reproduce ``score_examples`` exactly, and its
intervals equal hand-computed values on literal small cases."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from promptscale.analysis.bootstrap import paired_difference, percentile_interval
from promptscale.analysis.units import TaskUnits, units_from_predictions
from promptscale.data.example import Example
from promptscale.data.formats import format_examples
from promptscale.data.sources import DataSource, load_records
from promptscale.data.tasks import TASKS
from promptscale.metrics import score_examples


def dev_examples(task: str) -> list[Example]:
    """The embedded sample's dev examples of ``task`` in T5 format (AX-b / AX-g: their test split)."""
    split = "test" if task in ("axb", "axg") else "val"
    records = load_records(task, split, DataSource())
    return [ex for r in records for ex in format_examples(task, r, prefix=False, train=False)]


def random_predictions(examples: list[Example], rng: random.Random) -> list[int | str]:
    """Indices (some -1), exact label text, near-miss text and free text, as models produce them."""
    out: list[int | str] = []
    for ex in examples:
        kind = rng.randrange(4)
        if ex.choices and kind == 0:
            out.append(rng.randrange(-1, len(ex.choices)))
        elif ex.choices and kind == 1:
            out.append(rng.choice(ex.choices))
        elif kind == 2:
            out.append(rng.choice([*ex.answers, *ex.choices]) + rng.choice(["", " ", "s"]))
        else:
            out.append(rng.choice(["", "the cat", "True", "entailment", "<extra_id_0>", *ex.answers]))
    return out


def expanded(examples: list[Example], predictions: list, units: tuple[str, ...], weights: np.ndarray):
    """The examples of each unit repeated ``weights[u]`` times, each copy its own group: a resampled dev set."""
    by_unit = {u: [(ex, p) for ex, p in zip(examples, predictions) if ex.group == u] for u in units}
    out_examples, out_predictions = [], []
    for u, w in zip(units, weights):
        for copy in range(int(w)):
            for ex, p in by_unit[u]:
                out_examples.append(dataclasses.replace(ex, group=f"{u}#{copy}"))
                out_predictions.append(p)
    return out_examples, out_predictions


@pytest.mark.parametrize("task", list(TASKS))
def test_units_reproduce_score_examples_on_the_dev_set_and_on_resamples(task):
    rng = random.Random(task)
    examples = dev_examples(task)
    for trial in range(4):
        predictions = random_predictions(examples, rng)
        units = units_from_predictions(task, examples, predictions)
        want = score_examples(task, examples, predictions)
        got = units.metrics()
        assert {k: float(v) for k, v in got.items()} == pytest.approx(want, abs=1e-9)
        weights = np.random.default_rng(trial).multinomial(
            len(units.units), np.full(len(units.units), 1 / len(units.units))
        )
        resampled = units.metrics(weights[None, :])
        want = score_examples(task, *expanded(examples, predictions, units.units, weights))
        assert {k: float(v[0]) for k, v in resampled.items()} == pytest.approx(want, abs=1e-9)


def test_multirc_and_record_resample_questions_and_queries_whole():
    multirc = units_from_predictions("multirc", dev_examples("multirc"), [1] * len(dev_examples("multirc")))
    questions = {ex.group for ex in dev_examples("multirc")}
    assert set(multirc.units) == questions and len(questions) < len(dev_examples("multirc"))
    record = dev_examples("record")
    assert len(units_from_predictions("record", record, [0] * len(record)).units) == len({ex.group for ex in record})


def accuracy_units(correct: list[int]) -> dict[str, TaskUnits]:
    """One run on RTE: example i right (label 0 predicted 0) or wrong (predicted 1)."""
    examples = [Example("rte", "", "", ("entailment", "not_entailment"), 0, str(i), ("entailment",), str(i))
                for i in range(len(correct))]  # fmt: skip
    return {"rte": units_from_predictions("rte", examples, [0 if c else 1 for c in correct])}


def test_paired_interval_equals_the_hand_computed_binomial_quantiles():
    """A right on examples 0, 1; B also on 2. A replicate draws 4 examples; delta = 25 x (copies of
    example 2) ~ 25 x Binomial(4, 1/4): P(0) = .316, P(<=2) = .949, P(<=3) = .996, so the 2.5% and
    97.5% quantiles are 0 and 75 for any seed once there are enough replicates."""
    base, method = [accuracy_units([1, 1, 0, 0])], [accuracy_units([1, 1, 1, 0])]
    result = paired_difference(base, method, n_boot=10_000, seed=0)
    assert (result.score.estimate, result.score.low, result.score.high) == (25.0, 0.0, 75.0)
    assert result.tasks["rte"] == result.score and (result.base_mean, result.method_mean) == (50.0, 75.0)
    counts = np.bincount((result.replicates / 25).astype(int), minlength=5) / 10_000
    assert counts == pytest.approx([0.3164, 0.4219, 0.2109, 0.0469, 0.0039], abs=0.015)
    again = paired_difference(base, method, n_boot=10_000, seed=0, chunk=7)  # chunking changes draws, not the law
    assert (again.score.low, again.score.high) == (0.0, 75.0)


def test_seed_level_resampling_hand_computed():
    """One example, so only seeds vary: A's seeds score 0 and 100, B's 100 and 100. A replicate
    draws two of A's seeds: delta = 100 - mean in {100 (p 1/4), 50 (1/2), 0 (1/4)}."""
    base = [accuracy_units([0]), accuracy_units([1])]
    method = [accuracy_units([1]), accuracy_units([1])]
    result = paired_difference(base, method, n_boot=4000, seed=3)
    assert (result.score.estimate, result.score.low, result.score.high) == (50.0, 0.0, 100.0)
    assert set(np.unique(result.replicates)) == {0.0, 50.0, 100.0}
    assert np.mean(result.replicates == 50.0) == pytest.approx(0.5, abs=0.03)


def test_pairing_cancels_shared_examples_exactly():
    """Identical predictions: every replicate's difference is 0, however hard the examples."""
    runs = [accuracy_units([1, 0, 1, 1, 0, 0, 1])]
    result = paired_difference(runs, runs, n_boot=500, seed=1)
    assert (result.score.low, result.score.high) == (0.0, 0.0) and not result.replicates.any()


def test_percentile_interval_and_bad_input():
    assert percentile_interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))
    with pytest.raises(ValueError, match="different units"):
        paired_difference([accuracy_units([1, 0])], [accuracy_units([1, 0, 1])])
    with pytest.raises(ValueError, match="confidence"):
        paired_difference([accuracy_units([1])], [accuracy_units([1])], confidence=1.5)
