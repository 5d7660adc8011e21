"""From runs to conclusions: paired comparisons with confidence intervals, scaling fits, the results command.

- :mod:`~promptscale.analysis.units`: per-example predictions -> resampling units whose additive
  statistics reproduce every task metric exactly (MultiRC questions and ReCoRD queries whole);
- :mod:`~promptscale.analysis.bootstrap`: the two-level paired bootstrap of a score difference
  (dev examples shared by both methods, seeds resampled within each);
- :mod:`~promptscale.analysis.compare`: two methods (or settings) at every common size, the
  "gap closed at" size, and errors that name what is missing;
- :mod:`~promptscale.analysis.scaling`, :mod:`~promptscale.analysis.fits`: score vs
  log10(parameters) fits (line or saturating logistic, by AICc), bootstrap bands, crossings;
- :mod:`~promptscale.analysis.missing`: the configs an experiment's sweep expects and the store lacks;
- :mod:`~promptscale.analysis.tables`, :mod:`~promptscale.analysis.cli`: tables as text or files,
  ``promptscale-results``.

Reads the store (``promptscale.store``) and the figures' aggregation (``promptscale.report.scores``);
the gap figure (``report.gap``) and the W&B summary read this package, never the other way.
"""

from promptscale.analysis.bootstrap import Interval, PairedDifference, paired_difference
from promptscale.analysis.compare import Comparison, ComparisonError, Side, closed_at, compare, reference_gap
from promptscale.analysis.fits import fit_lines, fit_table, fitted_crossings
from promptscale.analysis.scaling import Crossing, Fit, crossing, fit_scaling
from promptscale.analysis.units import TaskUnits, task_units, units_from_predictions

__all__ = [
    "Comparison",
    "ComparisonError",
    "Crossing",
    "Fit",
    "Interval",
    "PairedDifference",
    "Side",
    "TaskUnits",
    "closed_at",
    "compare",
    "crossing",
    "fit_lines",
    "fit_scaling",
    "fit_table",
    "fitted_crossings",
    "paired_difference",
    "reference_gap",
    "task_units",
    "units_from_predictions",
]
