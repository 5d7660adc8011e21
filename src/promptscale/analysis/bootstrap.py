"""The paired, two-level bootstrap of a score difference: dev examples shared, seeds resampled.

Two methods A (the baseline) and B evaluated on the same dev sets, each with several seeds. One
bootstrap replicate b (Efron & Tibshirani 1993, ch. 6 and 13; Koehn 2004, "paired bootstrap";
the two levels as in Davison & Hinkley 1997, sec. 3.8, multi-stage sampling):

1. for every task t, draw its n_t units (examples; MultiRC questions, ReCoRD queries) with
   replacement: counts w_t ~ Multinomial(n_t, 1/n_t). The *same* draw scores every run of both
   methods: the comparison is paired over examples, so example difficulty cancels;
2. draw |S_A| of A's seeds with replacement, and independently |S_B| of B's (seed 0 of one
   method shares nothing with seed 0 of another, so seeds are not paired);
3. each drawn run's task score is its task metric recomputed on the drawn units (exactly as
   ``metrics.score_examples``, see :mod:`promptscale.analysis.units`), its SuperGLUE score the
   mean over the tasks; a method's replicate score is the mean over its drawn seeds, and
   delta_b = score_B - score_A (per task alike).

The interval is the percentile interval of the replicates (``numpy.quantile``, linear
interpolation): [q(alpha/2), q(1 - alpha/2)]. The point estimate is the observed difference of
the seed means on the full dev sets, which is the difference of the two lines of Figure 1. With
one seed per method step 2 does nothing and the interval reflects the dev sample alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from promptscale.analysis.units import TaskUnits

Runs = Sequence[Mapping[str, TaskUnits]]
"""One method's seeds at one size: per seed, its units per task (aligned across all runs)."""


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedDifference:
    """B - A in SuperGLUE score (mean over the tasks) and per task, with intervals.

    Attributes:
        score: The SuperGLUE score difference.
        tasks: Per task, the task score difference.
        base_mean: A's seed mean on the full dev sets.
        method_mean: B's seed mean on the full dev sets.
        replicates: The bootstrap replicates of ``score``, ``[B]``.
    """

    score: Interval
    tasks: dict[str, Interval]
    base_mean: float
    method_mean: float
    replicates: np.ndarray


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13) of ``values``."""
    alpha = 1.0 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _check(base: Runs, method: Runs) -> list[str]:
    """The tasks, after checking that every run has them on the same units."""
    if not base or not method:
        raise ValueError("each side needs at least one run")
    tasks = list(base[0])
    for run in (*base, *method):
        if list(run) != tasks:
            raise ValueError(f"runs cover different tasks: {sorted(run)} vs {sorted(tasks)}")
        for t in tasks:
            if run[t].units != base[0][t].units:
                raise ValueError(f"{t}: runs are on different units; restrict them to the common ones first")
    return tasks


def _seed_means(scores: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """Per replicate, the mean over its drawn seeds: scores ``[S, T, b]``, drawn ``[b, S]`` -> ``[T, b]``."""
    per_replicate = scores.transpose(2, 0, 1)  # [b, S, T]
    picked = np.take_along_axis(per_replicate, drawn[:, :, None], axis=1)  # [b, S, T]
    return picked.mean(axis=1).T


def paired_difference(
    base: Runs,
    method: Runs,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    chunk: int = 250,
) -> PairedDifference:
    """The two-level paired bootstrap of the module docstring.

    Args:
        base: A's runs (one per seed), each ``{task: TaskUnits}`` on the same units as every other run.
        method: B's runs, likewise.
        n_boot: Replicates.
        seed: Seed of the replicates' random draws (``numpy.random.default_rng``).
        confidence: Interval coverage, e.g. 0.95.
        chunk: Replicates drawn at once (bounds memory: ``chunk x units`` counts per task).

    Raises:
        ValueError: A side without runs, or runs not on the same tasks and units.
    """
    if n_boot < 1 or not 0 < confidence < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < confidence < 1, got {n_boot} and {confidence}")
    tasks = _check(base, method)
    rng = np.random.default_rng(seed)
    sizes = {t: len(base[0][t].units) for t in tasks}
    deltas = []  # per chunk: [T, b]
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        weights = {t: rng.multinomial(n, np.full(n, 1.0 / n), size=b) for t, n in sizes.items()}  # [b, n_t]
        means = []
        for runs in (base, method):
            drawn = rng.integers(0, len(runs), size=(b, len(runs)))  # [b, S]
            scores = np.stack([np.stack([run[t].score(weights[t]) for t in tasks]) for run in runs])  # [S, T, b]
            means.append(_seed_means(scores, drawn))
        deltas.append(means[1] - means[0])
    delta = np.concatenate(deltas, axis=1)  # [T, B]
    observed = [np.array([[run[t].score() for t in tasks] for run in runs]).mean(axis=0) for runs in (base, method)]
    per_task = observed[1] - observed[0]  # [T]
    task_intervals = {
        t: Interval(float(per_task[i]), *percentile_interval(delta[i], confidence)) for i, t in enumerate(tasks)
    }
    total = delta.mean(axis=0)  # SuperGLUE: the mean over tasks, per replicate
    return PairedDifference(
        Interval(float(per_task.mean()), *percentile_interval(total, confidence)),
        task_intervals,
        float(observed[0].mean()),
        float(observed[1].mean()),
        total,
    )
