"""The figure registry: every figure ``promptscale-figure --figure NAME`` and the sweep-end hook
can draw, by name.

A figure is one draw function plus one entry here. The entry names the function as
``"module:function"`` text, so this module imports no drawing code (no pandas, no matplotlib):
the config check validates ``figure.draw`` against :data:`FIGURE_NAMES` before any data loads.

A draw function has the signature ``draw(rows, out_dir, options) -> {file name: path}``: ``rows``
are all rows of the source (store or W&B; the function picks what it needs, e.g. one
experiment), ``out_dir`` a ``Path`` (created by the function), ``options`` a :class:`DrawOptions`.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

DrawFunction = Callable[[list[dict], Path, "DrawOptions"], dict[str, Path]]


@dataclass(frozen=True)
class DrawOptions:
    """What the command line (or the hook) asks of any figure.

    Attributes:
        experiment: Only rows of this experiment (Figure 3: its lone panel unless it is an ablation).
        protocol: ``"paper"``, ``"generate"`` or ``"rank"`` (see :mod:`promptscale.report.selection`).
        reference: Overlay the published curves.
        invalid: Add the invalid-output panel(s) (generate rows' ``invalid`` metric).
        title: Figure title (``None``: the figure's default, which names tasks and protocol).
        panels: ``"LETTER=EXPERIMENT"`` panel overrides (Figure 3).
        fit: Overlay each line's scaling fit and its bootstrap band (Figure 1); add the fitted
            crossing to the gap figure.
        compare: ``(base, method)`` of the gap figure, each ``METHOD`` or ``METHOD@SETTING``; the
            difference drawn is method - base.
        bootstrap: Bootstrap replicates of the gap's intervals.
        seed: Seed of the bootstrap draws.
        confidence: Interval coverage.
        results: The results store the rows came from: figures that read per-example predictions
            (the gap) find them beside it (``None``: rows without a store, e.g. from W&B).
    """

    experiment: str | None = None
    protocol: str = "paper"
    reference: bool = True
    invalid: bool = False
    title: str | None = None
    panels: tuple[str, ...] = ()
    fit: bool = False
    compare: tuple[str, str] = ("model_tuning", "prompt_tuning")
    bootstrap: int = 1000
    seed: int = 0
    confidence: float = 0.95
    results: str | None = None

    def style(self) -> dict:
        """The keyword arguments every ``draw_figure*`` function takes: protocol, reference, invalid, title."""
        return {"protocol": self.protocol, "reference": self.reference, "invalid": self.invalid, "title": self.title}


@dataclass(frozen=True)
class FigureSpec:
    """A registered figure.

    Attributes:
        draw: The draw function, or ``"module:function"`` naming it (imported when drawn).
        files: The files it always writes into ``out_dir``.
        description: One line for ``promptscale-figure --list``.
    """

    draw: str | DrawFunction
    files: tuple[str, ...]
    description: str

    def function(self) -> DrawFunction:
        """The draw function (imports its module on first use)."""
        if callable(self.draw):
            return self.draw
        module, _, name = self.draw.partition(":")
        return getattr(importlib.import_module(module), name)


FIGURES: dict[str, FigureSpec] = {
    "figure1": FigureSpec(
        "promptscale.report.figures:figure1",
        ("figure1.png", "figure1.pdf", "figure1.csv", "tasks.md", "tasks.tex", "tasks.csv"),
        "Lester et al. 2021 Fig. 1: SuperGLUE score vs model size, a line per method, published curves dashed",
    ),
    "figure3": FigureSpec(
        "promptscale.report.figure3:figure3",
        ("figure3.png", "figure3.pdf", "figure3.csv", "figure3_tasks.md", "figure3_tasks.tex", "figure3_tasks.csv"),
        "Lester et al. 2021 Fig. 3: ablation panels (prompt length, init, pre-training, LM adaptation), a line per "
        "setting",
    ),
    "gap": FigureSpec(
        "promptscale.report.gap:gap",
        ("gap.png", "gap.pdf", "gap.csv", "gap_tasks.csv", "gap.md", "gap.tex"),
        "The gap: SuperGLUE score difference of two methods (default prompt tuning - model tuning) vs model "
        "size, 95% paired-bootstrap CI band, zero line, the paper's gap dashed; the CI table with 'gap closed at'",
    ),
}
"""Name -> figure. Add a figure by adding an entry (and its draw function)."""

FIGURE_ALIASES: dict[str, str] = {"1": "figure1", "3": "figure3"}
"""Older command-line names."""

FIGURE_NAMES = FIGURES.keys()
"""The registered names, a live view (a figure registered later is in it too)."""


def resolve_figure(name: str) -> str:
    """The registered name of ``name`` (an alias such as ``"1"`` maps to ``"figure1"``).

    Raises:
        ValueError: Unknown name; the message lists the registered ones (and a close match).
    """
    name = FIGURE_ALIASES.get(str(name), str(name))
    if name in FIGURES:
        return name
    close = difflib.get_close_matches(name, list(FIGURES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown figure {name!r}{hint}; registered figures: {', '.join(FIGURES)}")


def check_figure_names(names: Iterable[str], key: str = "figure.draw") -> list[str]:
    """Resolves every name of a config list (e.g. ``figure.draw``); raises ``ValueError`` naming the key."""
    try:
        return [resolve_figure(n) for n in names]
    except ValueError as err:
        raise ValueError(f"{key}: {err}") from None


def draw(name: str, rows: list[dict], out_dir: str | Path, options: DrawOptions | None = None) -> dict[str, Path]:
    """Draws the figure registered as ``name`` (or an alias); returns file name -> written path."""
    return FIGURES[resolve_figure(name)].function()(rows, Path(out_dir), options or DrawOptions())
