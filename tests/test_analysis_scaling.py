"""Scaling fits recover known curves, choose their form by AICc, and find where two lines cross."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_figures import row as figure_row

from promptscale.analysis.fits import fit_lines, fit_table, fitted_crossings, line_points
from promptscale.analysis.scaling import aicc, band, bootstrap_params, crossing, first_crossing, fit_scaling
from promptscale.reference import T5_PARAMS

X = np.repeat(np.log10(list(T5_PARAMS.values())), 3)  # five T5 1.1 sizes x three seeds


def logistic(x, floor, ceiling, mid, rate):
    return floor + (ceiling - floor) / (1 + np.exp(-rate * (x - mid)))


def test_logistic_parameters_are_recovered_exactly_without_noise_and_closely_with_it():
    truth = {"floor": 35.0, "ceiling": 92.0, "mid": 8.9, "rate": 1.6}
    fit = fit_scaling(X, logistic(X, **truth))
    assert fit.form == "logistic"
    assert fit.named == pytest.approx(truth, rel=1e-3)
    noisy = logistic(X, **truth) + np.random.default_rng(0).normal(0, 0.3, len(X))
    fit = fit_scaling(noisy * 0 + X, noisy)
    assert fit.form == "logistic" and fit.aicc["logistic"] < fit.aicc["line"] - 10
    assert fit.named["mid"] == pytest.approx(8.9, abs=0.1) and fit.named["ceiling"] == pytest.approx(92, abs=2)


def test_a_line_is_recovered_and_preferred_on_linear_points():
    y = 10.0 + 7.0 * X + np.random.default_rng(1).normal(0, 0.3, len(X))
    fit = fit_scaling(X, y)
    assert fit.form == "line" and fit.aicc["line"] < fit.aicc["logistic"]
    assert fit.named["slope"] == pytest.approx(7.0, abs=0.15)  # the intercept is 9 decades away: looser
    assert fit.named["intercept"] == pytest.approx(10.0, abs=1.5)
    exact = fit_scaling(X, 10.0 + 7.0 * X)
    assert exact.named == pytest.approx({"intercept": 10.0, "slope": 7.0}) and exact.rss == pytest.approx(0, abs=1e-18)


def test_too_few_points_fit_a_line_only():
    x = np.log10([1e8, 1e9, 1e10])
    fit = fit_scaling(x, [50.0, 60.0, 75.0])
    assert fit.form == "line" and math.isnan(fit.aicc["logistic"]) and math.isnan(fit.aicc["line"])
    with pytest.raises(ValueError, match="at least two model sizes"):
        fit_scaling([8.0, 8.0], [1.0, 2.0])
    assert aicc(rss=4.0, n=10, n_params=2) == pytest.approx(10 * math.log(0.4) + 6 + 24 / 6)


def test_bootstrap_band_covers_the_truth_and_narrows_with_less_noise():
    y = 10.0 + 7.0 * X + np.random.default_rng(2).normal(0, 1.0, len(X))
    fit = fit_scaling(X, y, forms=("line",))
    grid = np.linspace(X.min(), X.max(), 9)
    low, high = band(fit, bootstrap_params(fit, 400, seed=0), grid)
    assert (low <= 10 + 7 * grid).all() and (10 + 7 * grid <= high).all()
    quiet = fit_scaling(X, 10.0 + 7.0 * X + (y - 10.0 - 7.0 * X) / 10, forms=("line",))
    q_low, q_high = band(quiet, bootstrap_params(quiet, 400, seed=0), grid)
    assert (q_high - q_low < (high - low) / 5).all()


def test_crossing_of_two_lines_is_found_and_marked_as_an_extrapolation():
    """Base 20 + 6x, method 8x: they cross at x = 10, inside the measured range (7.9 to 10.05)."""
    base, method = fit_scaling(X, 20 + 6 * X), fit_scaling(X, 8 * X)
    found = crossing(base, method, n_boot=50)
    assert found.estimate == pytest.approx(10.0, abs=1e-9) and not found.extrapolated
    assert (found.low, found.high, found.share) == (pytest.approx(10.0), pytest.approx(10.0), 1.0)  # no residuals
    later = crossing(fit_scaling(X, 30 + 6 * X), method, n_boot=50)  # 30 + 6x = 8x at x = 15: beyond + 2 decades
    assert math.isinf(later.estimate) and later.share == 0 and math.isinf(later.high)
    assert "do not cross below 1.11T parameters" in later.describe()
    noisy = 23 + 6 * X + np.random.default_rng(3).normal(0, 0.5, len(X))  # crosses at 11.5: an extrapolation
    beyond = crossing(fit_scaling(X, noisy, forms=("line",)), method, n_boot=300)
    assert beyond.estimate == pytest.approx(11.5, abs=0.3) and beyond.extrapolated
    assert beyond.low < beyond.estimate < beyond.high
    assert "an extrapolation beyond the measured sizes (77M to 11.1B)" in beyond.describe()
    assert first_crossing(lambda g: g - 3.0, 0.0, 10.0) == pytest.approx(3.0)


def test_fits_per_line_from_result_rows():
    """Prompt tuning rte accuracy = 8x + seed, model tuning 20 + 6x + seed: lines crossing at x = 10."""
    rows = []
    for model, params in T5_PARAMS.items():
        x = math.log10(params)
        for seed in (0, 1):
            rows.append(figure_row("prompt_tuning", model, seed, "rte", "accuracy", 8 * x + seed))
            rows.append(figure_row("model_tuning", model, seed, "rte", "accuracy", 20 + 6 * x + seed))
    points = line_points(rows)
    assert len(points[("prompt_tuning", "", "")]) == 10
    fits = fit_lines(rows)
    assert fits[("prompt_tuning", "", "")].named == pytest.approx({"intercept": 0.5, "slope": 8.0})
    table = fit_table(fits)
    assert list(table["form"]) == ["line", "line"] and set(table["points"]) == {10}
    found = fitted_crossings(rows, "model_tuning", "prompt_tuning", n_boot=100)
    assert found[""].estimate == pytest.approx(10.0, abs=1e-6) and found[""].low <= 10.0 <= found[""].high
    with pytest.raises(ValueError, match="no scaling fit of both model_tuning and lora"):
        fitted_crossings(rows, "model_tuning", "lora")
