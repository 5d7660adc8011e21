"""Result rows -> scaling fits per line of Figure 1 (method x family x setting), and their crossing.

The points are each seed's SuperGLUE score at each size (``report.scores.seed_score_table``, the
values Figure 1 averages, over the same tasks); the fit and its band are
:mod:`promptscale.analysis.scaling`'s.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from promptscale.analysis.compare import Comparison, Side, compare
from promptscale.analysis.scaling import FORMS, Crossing, Fit, crossing, fit_scaling
from promptscale.report.scores import seed_score_table

LineKey = tuple[str, str, str]
"""(method, family, setting): one line of Figure 1 (family and setting ``""`` when there is one)."""


def line_points(rows: list[dict], protocol: str = "paper", by_setting: bool = False) -> dict[LineKey, pd.DataFrame]:
    """Each line's seed-level points: columns ``total_params, seed, score`` (the scores Figure 1 averages)."""
    seeds = seed_score_table(rows, by_setting=by_setting, protocol=protocol)
    if "family" not in seeds:
        seeds["family"] = ""
    if "setting" not in seeds:
        seeds["setting"] = ""
    return {
        (str(m), str(f), str(s)): t[["total_params", "seed", "score"]].reset_index(drop=True)
        for (m, f, s), t in seeds.groupby(["method", "family", "setting"], sort=False)
    }


def fit_lines(
    rows: list[dict], protocol: str = "paper", by_setting: bool = False, forms: tuple[str, ...] = FORMS
) -> dict[LineKey, Fit]:
    """A scaling fit per line with at least two sizes (lines with one size are skipped with a warning)."""
    fits = {}
    for key, points in line_points(rows, protocol, by_setting).items():
        if points["total_params"].nunique() < 2:
            warnings.warn(f"{'/'.join(k for k in key if k)}: one model size, no scaling fit", stacklevel=2)
            continue
        fits[key] = fit_scaling(np.log10(points["total_params"].to_numpy(float)), points["score"].to_numpy(), forms)
    return fits


def fit_table(fits: dict[LineKey, Fit]) -> pd.DataFrame:
    """One row per fitted line: its form, parameters, points, sizes and each form's AICc."""
    return pd.DataFrame(
        [
            {"method": m, "family": f, "setting": s, "form": fit.form, "parameters": fit.describe().split(": ", 1)[1]}
            | {"points": len(fit.x), "sizes": len(np.unique(fit.x)), "rss": fit.rss}
            | {f"aicc_{form}": fit.aicc.get(form, math.nan) for form in FORMS}
            for (m, f, s), fit in fits.items()
        ],
        columns=["method", "family", "setting", "form", "parameters", "points", "sizes", "rss"]
        + [f"aicc_{form}" for form in FORMS],
    )


def fitted_crossings(
    rows: list[dict], base: str | Side, method: str | Side, protocol: str = "paper", **options
) -> dict[str, Crossing]:
    """Per family, where ``method``'s fitted curve meets ``base``'s: ``{family: scaling.Crossing}``.

    Args:
        rows: Result rows.
        base: ``METHOD`` or ``METHOD@SETTING``.
        method: Likewise.
        protocol: The protocol choice (as Figure 1).
        **options: ``scaling.crossing``'s ``n_boot``, ``seed``, ``confidence``, ``extend``.

    Raises:
        ValueError: A side has no line with two sizes in any family the other has.
    """
    base, method = Side.of(base), Side.of(method)
    by_setting = base.setting is not None or method.setting is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # one-size lines: the comparison says what is missing
        fits = fit_lines(rows, protocol, by_setting)

    def mine(side: Side) -> dict[str, Fit]:
        return {f: fit for (m, f, s), fit in fits.items() if m == side.method and (side.setting in (None, s))}

    a, b = mine(base), mine(method)
    if not set(a) & set(b):
        raise ValueError(f"no scaling fit of both {base} and {method} (each needs two model sizes in one family)")
    return {family: crossing(a[family], b[family], **options) for family in sorted(set(a) & set(b))}


def compare_and_fit(
    rows: list[dict], store_dir, base: str | Side, method: str | Side, *, fit: bool, n_boot: int = 1000, **options
) -> tuple[Comparison, dict[str, Crossing] | None, str | None]:
    """The paired comparison and, with ``fit``, the fitted crossings: ``(comparison, crossings, why_none)``.

    ``why_none`` says why a requested fit is missing (fewer than two sizes: the comparison stands
    alone); each caller reports it its own way. ``options``: ``protocol``, ``seed``, ``confidence``.
    """
    result = compare(rows, store_dir, base, method, n_boot=n_boot, **options)
    if not fit:
        return result, None, None
    try:
        return result, fitted_crossings(rows, base, method, **options), None
    except ValueError as err:
        return result, None, str(err)
