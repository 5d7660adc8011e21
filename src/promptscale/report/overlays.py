"""The scaling-fit overlay of Figure 1: each line's fitted curve (dash-dot) and its bootstrap band.

The fits are :mod:`promptscale.analysis.fits`' (a line or a saturating logistic in
log10(parameters), chosen by AICc, fitted to the seed-level scores); the band is the pointwise 95%
residual-bootstrap interval. Curves are drawn over the measured sizes only: Figure 1 shows no
extrapolation (the gap figure reports the fitted crossing, marked when it is one).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from promptscale.analysis.fits import LineKey
from promptscale.analysis.scaling import Fit, band, bootstrap_params

FIT_NOTE = "Dash-dot: scaling fit (line or logistic in log-size, by AICc),\nband: 95% residual bootstrap"


def draw_fits(
    ax,
    fits: dict[LineKey, Fit],
    keys: list[str],
    style: Callable[[tuple], tuple],
    *,
    n_boot: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
) -> None:
    """Draws every fit in its line's colour.

    Args:
        ax: Matplotlib axes with a log parameter axis.
        fits: ``analysis.fits.fit_lines`` output.
        keys: Figure 1's line keys (``["method"]`` or ``["method", "family"]``).
        style: Line key -> ``(colour, label[, marker])``, the score lines' own.
        n_boot: Bootstrap replicates of each band.
        seed: Seed of the bootstrap draws.
        confidence: Band coverage.
    """
    for (method, family, _setting), fit in fits.items():
        color, label, *_ = style((method, family) if len(keys) == 2 else (method,))
        grid = np.linspace(fit.x.min(), fit.x.max(), 120)
        params = 10**grid
        ax.plot(params, fit.predict(grid), "-.", color=color, lw=1.3, alpha=0.9, zorder=2.5,
                label=f"{label}: {fit.form} fit")  # fmt: skip
        replicates = bootstrap_params(fit, n_boot, seed)
        if not np.isnan(replicates).any():
            low, high = band(fit, replicates, grid, confidence)
            ax.fill_between(params, low, high, color=color, alpha=0.08, lw=0, zorder=1.5)
