"""Results -> figures, tables and dashboards. Imports point down only:

``cli``, ``hook`` -> ``figures`` / ``figure3`` / ``gap`` (drawing; ``overlays``: Figure 1's fits)
-> ``tables`` (markdown, LaTeX) -> ``scores`` (aggregation) -> ``selection`` (rows, protocols),
``labels`` -> the store. ``gap`` and ``overlays`` also read ``promptscale.analysis`` (paired
comparisons, scaling fits), which reads ``scores`` and the store. ``wandb`` (job and sweep
summaries) imports ``scores``, never the drawing modules: it logs the files they drew;
``wandb_rows`` reads runs back into rows (``--source wandb``).

This package module stays light (no pandas, no matplotlib): the config check imports
:data:`FIGURE_NAMES` to validate ``figure.draw`` before any data loads.
"""

from promptscale.report.registry import (
    FIGURE_ALIASES,
    FIGURE_NAMES,
    FIGURES,
    DrawOptions,
    FigureSpec,
    check_figure_names,
    draw,
    resolve_figure,
)
from promptscale.report.selection import PROTOCOL_CHOICES, PROTOCOLS, check_protocol

__all__ = [
    "FIGURES",
    "FIGURE_ALIASES",
    "FIGURE_NAMES",
    "PROTOCOLS",
    "PROTOCOL_CHOICES",
    "DrawOptions",
    "FigureSpec",
    "check_figure_names",
    "check_protocol",
    "draw",
    "resolve_figure",
]
