"""Scaling fits: SuperGLUE score against x = log10(model parameters), one fit per line of Figure 1.

Forms, fitted by least squares to the seed-level points (each seed's score at each size):

- ``line``: y = intercept + slope * x (2 parameters);
- ``logistic``: y = floor + (ceiling - floor) / (1 + exp(-rate * (x - mid))), with
  0 <= floor <= ceiling <= 100 (4 parameters): a score that saturates between chance-like and
  perfect. Fitted by variable projection: for fixed (mid, rate) the curve is linear in (floor,
  ceiling), solved exactly under the bounds; (mid, rate) by a coarse-to-fine grid search over
  mid in [min x - 2, max x + 2] and rate in [0.05, 50] per decade (deterministic, no optimizer).

Selection: the smallest AICc (Hurvich & Tsai 1989; Burnham & Anderson 2002) with Gaussian
errors, AICc = n ln(RSS / n) + 2k + 2k(k + 1) / (n - k - 1), k = parameters + 1 (the error
variance). A form competes only with at least as many distinct sizes as parameters and n > k + 1;
the line is always fitted (two sizes suffice) and wins ties.

Uncertainty: a residual bootstrap (Efron & Tibshirani 1993, sec. 9.5; Davison & Hinkley 1997,
sec. 6.2.3): residuals rescaled by sqrt(n / (n - p)) and centred, drawn with replacement onto the
fitted values, the selected form refitted; the band is the pointwise percentile interval of the
refitted curves. The crossing of two lines is the first sign change of their difference within
[largest smallest size, largest measured size + ``extend`` decades]; its interval comes from the
same replicates (replicate i of each line), counting a replicate without a crossing as beyond the
window, and it is marked an extrapolation when it lies outside the sizes both lines measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from promptscale.report.labels import fmt_params

FORMS: tuple[str, ...] = ("line", "logistic")


def _line_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    slope, intercept = np.polyfit(x, y, 1)
    return np.array([intercept, slope])


def _line(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    return p[0] + p[1] * x


def _logistic(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    floor, ceiling, mid, rate = p
    return floor + (ceiling - floor) / (1.0 + np.exp(-rate * (x - mid)))


def _bounded_levels(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares (floor, ceiling) of y ~ floor (1 - s) + ceiling s with 0 <= floor <= ceiling <= 100.

    ``s`` is ``[G, n]`` (one sigmoid per grid point). A convex quadratic on a triangle: its minimum
    is the unconstrained one if feasible, else on an edge, where it is the clipped 1-D minimum.
    Returns floor, ceiling and the residual sum of squares, each ``[G]``.
    """
    u = 1.0 - s
    suu, sus, sss = (u * u).sum(1), (u * s).sum(1), (s * s).sum(1)
    suy, ssy = (u * y).sum(1), (s * y).sum(1)
    det = suu * sss - sus**2
    with np.errstate(divide="ignore", invalid="ignore"):
        free = ((sss * suy - sus * ssy) / det, (suu * ssy - sus * suy) / det)
        edges = [
            (np.zeros_like(suu), np.clip(ssy / sss, 0, 100)),  # floor = 0
            (np.clip((suy - 100 * sus) / suu, 0, 100), np.full_like(suu, 100.0)),  # ceiling = 100
            (np.full_like(suu, np.clip(y.mean(), 0, 100)),) * 2,  # floor = ceiling: a constant
        ]
    ok = (np.abs(det) > 1e-12) & (free[0] >= 0) & (free[0] <= free[1]) & (free[1] <= 100)
    candidates = [(np.where(ok, free[0], 0.0), np.where(ok, free[1], 0.0)), *edges]
    rss = [np.where(np.isfinite(f) & np.isfinite(c), ((y - f[:, None] * u - c[:, None] * s) ** 2).sum(1), np.inf)
           for f, c in candidates]  # fmt: skip
    rss[0] = np.where(ok, rss[0], np.inf)
    best = np.argmin(np.stack(rss), axis=0)
    pick = np.arange(len(best))
    floors, ceilings = (np.stack([c[i] for c in candidates])[best, pick] for i in (0, 1))
    return floors, ceilings, np.stack(rss)[best, pick]


def _logistic_fit(x: np.ndarray, y: np.ndarray, coarse: int = 61, fine: int = 21, zooms: int = 7) -> np.ndarray:
    """Variable projection: grid over (mid, log rate), zoomed around the best point ``zooms`` times."""
    mid_lo, mid_hi = x.min() - 2.0, x.max() + 2.0
    rate_lo, rate_hi = math.log(0.05), math.log(50.0)
    best = None
    for step in range(zooms + 1):
        n = coarse if step == 0 else fine
        mids, rates = np.meshgrid(np.linspace(mid_lo, mid_hi, n), np.exp(np.linspace(rate_lo, rate_hi, n)))
        mids, rates = mids.ravel(), rates.ravel()
        s = 1.0 / (1.0 + np.exp(-rates[:, None] * (x[None, :] - mids[:, None])))  # [G, n]
        floors, ceilings, rss = _bounded_levels(s, y)
        i = int(np.argmin(rss))
        best = np.array([floors[i], ceilings[i], mids[i], rates[i]])
        mid_span, rate_span = (mid_hi - mid_lo) / 8, (rate_hi - rate_lo) / 8  # the next grid: a quarter as wide
        mid_lo, mid_hi = mids[i] - mid_span, mids[i] + mid_span
        rate_lo, rate_hi = math.log(rates[i]) - rate_span, math.log(rates[i]) + rate_span
    return best


@dataclass(frozen=True)
class Form:
    """A curve family: its parameter names, its least-squares fit and its prediction."""

    names: tuple[str, ...]
    fit: Callable[[np.ndarray, np.ndarray], np.ndarray]
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray]


FORM_SPECS: dict[str, Form] = {
    "line": Form(("intercept", "slope"), _line_fit, _line),
    "logistic": Form(("floor", "ceiling", "mid", "rate"), _logistic_fit, _logistic),
}


def aicc(rss: float, n: int, n_params: int) -> float:
    """AICc of a least-squares fit with Gaussian errors (k counts the error variance); NaN where undefined."""
    k = n_params + 1
    if n - k - 1 <= 0:
        return math.nan
    return n * math.log(max(rss, 1e-12 * n) / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


@dataclass(frozen=True)
class Fit:
    """A fitted scaling curve.

    Attributes:
        form: ``"line"`` or ``"logistic"``.
        params: The parameter vector, in ``FORM_SPECS[form].names`` order.
        x: log10 parameters of the points fitted.
        y: Their scores (percent).
        aicc: AICc of every form tried (NaN: not eligible).
    """

    form: str
    params: np.ndarray
    x: np.ndarray
    y: np.ndarray
    aicc: dict[str, float] = field(default_factory=dict)

    def predict(self, x) -> np.ndarray:
        return FORM_SPECS[self.form].predict(self.params, np.asarray(x, float))

    @property
    def named(self) -> dict[str, float]:
        return dict(zip(FORM_SPECS[self.form].names, map(float, self.params)))

    @property
    def rss(self) -> float:
        return float(((self.y - self.predict(self.x)) ** 2).sum())

    def describe(self) -> str:
        """E.g. ``"line: intercept=-20.1, slope=10.3"``."""
        return f"{self.form}: " + ", ".join(f"{k}={v:.3g}" for k, v in self.named.items())


def fit_scaling(x, y, forms: tuple[str, ...] = FORMS) -> Fit:
    """Fits each eligible form to the points and keeps the one with the smallest AICc (module docstring).

    Args:
        x: log10 model parameters, one per point (a size repeats once per seed).
        y: Scores in percent.
        forms: Forms to try (``"line"`` is always fitted).

    Raises:
        ValueError: Fewer than two distinct sizes, or an unknown form.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    distinct = len(np.unique(x))
    if distinct < 2:
        raise ValueError(f"a scaling fit needs at least two model sizes, got {distinct}")
    unknown = set(forms) - set(FORM_SPECS)
    if unknown:
        raise ValueError(f"unknown fit form(s) {sorted(unknown)}; choose from {', '.join(FORM_SPECS)}")
    fits, scores = {}, {}
    for name in dict.fromkeys(("line", *forms)):
        n_params = len(FORM_SPECS[name].names)
        if name != "line" and (distinct < n_params or len(x) <= n_params + 2):
            scores[name] = math.nan
            continue
        params = FORM_SPECS[name].fit(x, y)
        fits[name] = params
        scores[name] = aicc(float(((y - FORM_SPECS[name].predict(params, x)) ** 2).sum()), len(x), n_params)
    finite = {k: v for k, v in scores.items() if k in fits and not math.isnan(v)}
    form = min(finite, key=lambda k: (finite[k], k != "line")) if finite else "line"
    return Fit(form, fits[form], x, y, scores)


def bootstrap_params(fit: Fit, n_boot: int = 500, seed: int = 0) -> np.ndarray:
    """Residual-bootstrap refits of ``fit``'s form: ``[n_boot, p]`` (NaN rows: no residual degrees of freedom)."""
    spec = FORM_SPECS[fit.form]
    n, p = len(fit.x), len(spec.names)
    if n <= p:
        return np.full((n_boot, p), np.nan)
    fitted = fit.predict(fit.x)
    residuals = (fit.y - fitted) * math.sqrt(n / (n - p))
    residuals -= residuals.mean()
    rng = np.random.default_rng(seed)
    return np.stack([spec.fit(fit.x, fitted + rng.choice(residuals, size=n)) for _ in range(n_boot)])


def band(fit: Fit, replicates: np.ndarray, grid, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The pointwise percentile band of the refitted curves on ``grid`` (log10 parameters)."""
    grid = np.asarray(grid, float)
    curves = np.stack([FORM_SPECS[fit.form].predict(p, grid) for p in replicates])  # [B, G]
    alpha = 1.0 - confidence
    low, high = np.quantile(curves, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high


def first_crossing(diff: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, points: int = 4001) -> float:
    """The smallest x in [lo, hi] where ``diff`` changes sign (linear interpolation); inf if none."""
    grid = np.linspace(lo, hi, points)
    d = diff(grid)
    if d[0] == 0:
        return float(grid[0])
    change = np.nonzero(np.sign(d[:-1]) * np.sign(d[1:]) <= 0)[0]
    if not len(change):
        return math.inf
    i = int(change[0])
    return float(grid[i] - d[i] * (grid[i + 1] - grid[i]) / (d[i + 1] - d[i]))


@dataclass(frozen=True)
class Crossing:
    """Where the fitted curve of ``method`` meets ``base``'s, in log10 parameters.

    Attributes:
        estimate: The crossing of the two fits (inf: none within the window).
        low: Lower end of the interval.
        high: Upper end (inf: beyond the window).
        share: Share of bootstrap replicates that cross within the window.
        window: The x range searched.
        measured: The x range both lines measured.
    """

    estimate: float
    low: float
    high: float
    share: float
    window: tuple[float, float]
    measured: tuple[float, float]

    @property
    def extrapolated(self) -> bool:
        """Whether the estimate or its interval leaves the sizes both lines measured."""
        lo, hi = self.measured
        return not (lo <= self.low and self.high <= hi and lo <= self.estimate <= hi)

    def describe(self, confidence: float = 0.95) -> str:
        """One sentence: the crossing, its interval, the share of replicates crossing, extrapolation."""
        end = _params(self.window[1])
        if math.isinf(self.estimate):
            text = f"the fits do not cross below {end} parameters ({self.share:.0%} of replicates do)"
        else:
            text = f"fitted crossing at {_params(self.estimate)} parameters ({confidence:.0%} CI "
            text += f"{_params(self.low, self.window)} to {_params(self.high, self.window)}; "
            text += f"{self.share:.0%} of replicates cross below {end})"
        lo, hi = self.measured
        if math.isfinite(self.estimate) and not lo <= self.estimate <= hi:
            text += f", an extrapolation beyond the measured sizes ({_params(lo)} to {_params(hi)})"
        elif math.isfinite(self.estimate) and self.extrapolated:
            text += f"; the interval reaches beyond the measured sizes ({_params(lo)} to {_params(hi)})"
        return text


def _params(x: float, window: tuple[float, float] | None = None) -> str:
    """A log10 parameter count as text, e.g. ``"11.1B"``; an infinite end: ``"> <window end>"``."""
    if math.isinf(x) and window is not None:
        return f"> {fmt_params(10 ** window[1])}"
    return "n/a" if not math.isfinite(x) else fmt_params(10**x)


def crossing(
    base: Fit, method: Fit, *, n_boot: int = 500, seed: int = 0, confidence: float = 0.95, extend: float = 2.0
) -> Crossing:
    """The crossing of two fitted lines and its bootstrap interval (module docstring)."""
    measured = (max(base.x.min(), method.x.min()), min(base.x.max(), method.x.max()))
    window = (measured[0], max(base.x.max(), method.x.max()) + extend)
    estimate = first_crossing(lambda g: method.predict(g) - base.predict(g), *window)
    pairs = zip(bootstrap_params(base, n_boot, seed), bootstrap_params(method, n_boot, seed + 1))
    found = np.array([
        first_crossing(lambda g, a=a, b=b: FORM_SPECS[method.form].predict(b, g) - FORM_SPECS[base.form].predict(a, g),
                       *window, points=801)
        if not (np.isnan(a).any() or np.isnan(b).any()) else np.nan
        for a, b in pairs
    ])  # fmt: skip
    found = found[~np.isnan(found)]
    if not len(found):
        return Crossing(estimate, math.nan, math.nan, math.nan, window, measured)
    alpha = 1.0 - confidence
    low, high = np.quantile(found, [alpha / 2, 1 - alpha / 2], method="inverted_cdf")  # inf stays inf
    return Crossing(estimate, float(low), float(high), float(np.isfinite(found).mean()), window, measured)
