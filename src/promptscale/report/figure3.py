"""Lester et al. 2021 Figure 3: the prompt-tuning ablations, one panel per experiment.

Panels: (a) prompt length, (b) prompt initialisation, (c) pre-training method, (d) LM adaptation
steps; each reads its experiment's rows and draws one line per ``setting`` (see
:mod:`promptscale.grouping`). With ``invalid``, each panel gets a neighbour drawing the
invalid-output % of the same lines: under the paper's protocol the span-corruption collapse of
panel (c) is a frozen model emitting text that is no label, and this panel measures it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from promptscale.reference import LESTER_FIG1
from promptscale.report.figures import (
    invalid_axes,
    invalid_or_none,
    placeholder,
    plot_lines,
    reference_line,
    reissued,
    save_figure,
    seeds_text,
    size_axes,
)
from promptscale.report.labels import method_label, setting_name
from promptscale.report.registry import FIGURES, DrawOptions
from promptscale.report.scores import score_description, score_table, table_protocols
from promptscale.report.selection import describe_protocol, protocol_rows
from promptscale.report.tables import latex_escape, tasks_frame, tasks_latex, tasks_markdown

FIGURE3_FILES = FIGURES["figure3"].files


@dataclass(frozen=True)
class Panel:
    """One panel of Figure 3: the experiment whose rows it plots, one line per ``setting``.

    Attributes:
        letter: Panel letter (``"a"`` ... ``"d"``), ``""`` for a lone panel.
        experiment: ``experiment_name`` of its rows.
        title: Panel title, e.g. ``"Prompt length"``.
        legend: Legend title (what the lines differ in).
        missing: What the panel says when the store has no rows of its experiment.
    """

    letter: str
    experiment: str
    title: str
    legend: str = "Setting"
    missing: str = ""

    @property
    def heading(self) -> str:
        return f"({self.letter}) {self.title}" if self.letter else self.title


FIGURE3_PANELS: tuple[Panel, ...] = (
    Panel(
        "a",
        "ablation_prompt_length",
        "Prompt length",
        "Prompt length",
        "promptscale-train experiment=ablation_prompt_length",
    ),
    Panel(
        "b",
        "ablation_prompt_init",
        "Prompt initialization",
        "Initialization",
        "promptscale-train experiment=ablation_prompt_init",
    ),
    Panel(
        "c",
        "ablation_objective",
        "Pre-training method",
        "Pre-training",
        "promptscale-train experiment=ablation_objective",
    ),
    Panel(
        "d",
        "ablation_lm_adaptation",
        "LM adaptation steps",
        "Adaptation steps",
        "Only the 100K-step LM-adapted checkpoints are public\n(google/t5-*-lm-adapt); rows with "
        "experiment=ablation_lm_adaptation\nand a step-count setting would be drawn here.",
    ),
)
"""Lester et al. 2021, Figure 3: (a) prompt length, (b) prompt initialisation, (c) pre-training
method, (d) LM adaptation steps. Each panel: prompt tuning's SuperGLUE score vs model size."""


def panels_for(experiment: str | None) -> tuple[Panel, ...]:
    """Figure 3's panels when ``experiment`` is one of them (or ``None``), else one lone panel."""
    if experiment is None or experiment in {p.experiment for p in FIGURE3_PANELS}:
        return FIGURE3_PANELS
    return (Panel("", experiment, experiment.replace("_", " ").capitalize()),)


def parse_panels(specs: list[str] | tuple[str, ...] | None) -> tuple[Panel, ...]:
    """``["a=my_lengths", ...]`` -> Figure 3's panels with those experiments swapped in."""
    panels = {p.letter: p for p in FIGURE3_PANELS}
    for spec in specs or []:
        letter, sep, experiment = spec.partition("=")
        if not sep or letter not in panels or not experiment:
            raise ValueError(f"--panel {spec!r}: expected LETTER=EXPERIMENT with LETTER in {', '.join(panels)}")
        panels[letter] = replace(panels[letter], experiment=experiment)
    return tuple(panels.values())


def figure3_tables(
    rows: list[dict], panels: tuple[Panel, ...] = FIGURE3_PANELS, protocol: str = "paper"
) -> dict[str, tuple[Panel, list[dict], pd.DataFrame | None]]:
    """Per panel letter: (panel, its rows, its score table by setting or ``None`` if no rows).

    Raises:
        ValueError: The panels' rows have none under ``protocol`` (names the protocols present).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # left-out runs: each panel's table warns
        protocol_rows([r for r in rows if r.get("experiment") in {p.experiment for p in panels}], protocol)
    out = {}
    for panel in panels:
        prow = [r for r in rows if r.get("experiment") == panel.experiment]
        try:
            table = score_table(prow, by_setting=True, protocol=protocol) if prow else None
        except ValueError as err:  # rows, but nothing scorable: the panel says so
            warnings.warn(f"Figure 3 panel {panel.letter or panel.experiment}: {err}", stacklevel=2)
            table = None
        out[panel.letter] = (panel, prow, table)
    return out


def _line_styles(table: pd.DataFrame) -> dict[tuple, tuple[str, str]]:
    """(method, setting) -> (colour, legend label); colours spread over viridis in drawing order."""
    lines = list(dict.fromkeys(zip(table["method"], table["setting"])))
    methods = {m for m, _ in lines}
    cmap = matplotlib.colormaps["viridis"]
    styles = {}
    for j, (method, setting) in enumerate(lines):
        label = setting_name(setting) or method_label(method)
        if len(methods) > 1:
            label = f"{method_label(method)}: {label}"
        styles[(method, setting)] = (cmap(0.85 * j / max(1, len(lines) - 1)), label)
    return styles


def _missing(panel: Panel, prow: list[dict]) -> str:
    """Why a panel is empty: no runs of its experiment, or none that scores."""
    return f"no scorable rows of experiment {panel.experiment}" if prow else f"no runs of experiment {panel.experiment}"


def _score_panel(ax, panel: Panel, prow: list[dict], table, protocol: str, reference: bool, fs: int) -> None:
    """One ablation: score vs size, a line per setting, or a placeholder saying what is missing."""
    ax.set_title(panel.heading, fontsize=fs + 2, loc="left")
    if table is None or table.empty:
        placeholder(ax, f"{_missing(panel, prow)}\n\n{panel.missing}", fs)
        return
    styles = _line_styles(table)
    plot_lines(ax, table, ["method", "setting"], lambda k: styles[k])
    if reference:
        label = "Prompt Tuning, Fig. 1 (Lester et al. 2021, ref.)"
        reference_line(ax, LESTER_FIG1["prompt_tuning"], "--", label, color="0.55", lw=1.2)
    size_axes(ax, fs, "Model parameters")
    protocol_text = describe_protocol(protocol, list(table["method"].unique()))
    leg = ax.legend(
        loc="lower right",
        fontsize=fs - 2,
        framealpha=0.8,
        title_fontsize=fs - 3,
        title=f"{panel.legend}\n(score {score_description(table)};\nmean ± std over {seeds_text(table)} seed(s);"
        f"\n{protocol_text})",
    )
    leg._legend_box.align = "left"


def _invalid_panel(ax, panel: Panel, prow: list[dict], table, fs: int, like) -> None:
    """The invalid-output % of one ablation's lines, coloured as in its score panel (axes ``like``)."""
    ax.set_title(f"{panel.heading}: invalid outputs", fontsize=fs + 2, loc="left")
    if table is None or table.empty:
        placeholder(ax, _missing(panel, prow), fs)
        return
    styles = _line_styles(table)
    bad = invalid_or_none(prow, True, table.attrs["tasks"])
    invalid_axes(ax, bad, ["method", "setting"], lambda k: styles.get(k, ("0.5", setting_name(k[1]))), fs, like)


def plot_figure3(
    rows: list[dict],
    panels: tuple[Panel, ...] = FIGURE3_PANELS,
    *,
    protocol: str = "paper",
    reference: bool = True,
    invalid: bool = False,
    title: str | None = None,
) -> Figure:
    """Builds Figure 3: one panel per ablation, score vs size, one line per setting.

    A panel without rows says so (``no runs``) instead of failing, so a partial set of
    ablations still draws.

    Args:
        rows: Result rows (all experiments; each panel picks its own).
        panels: The panels, in drawing order (2 x 2 for four; a row per panel with ``invalid``).
        protocol: ``"paper"``, ``"generate"`` or ``"rank"``; each panel's legend says which.
        reference: Overlay Lester et al. 2021's prompt tuning curve (their default setting) in
            each panel, dashed.
        invalid: Next to each panel, its lines' invalid-output % (generate rows).
        title: Figure title.
    """
    tables = figure3_tables(rows, panels, protocol)
    ncols = 2 if len(panels) > 1 or invalid else 1
    nrows = len(panels) if invalid else math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(7.2 * ncols, 5.2 * nrows), dpi=200)
    fs = 10
    for i, panel in enumerate(panels):
        _, prow, table = tables[panel.letter]
        at = 2 * i + 1 if invalid else i + 1
        ax = fig.add_subplot(nrows, ncols, at)
        _score_panel(ax, panel, prow, table, protocol, reference, fs)
        if invalid:
            _invalid_panel(fig.add_subplot(nrows, ncols, at + 1), panel, prow, table, fs, like=ax)
    if title is None:
        title = (
            "Prompt tuning ablations (Lester et al. 2021, Fig. 3): SuperGLUE dev score vs. model size "
            f"({protocol} protocol)"
        )
    fig.suptitle(title, fontsize=fs + 3)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (5.2 * nrows)))  # half an inch for the title
    return fig


def _panel_tables(panel: Panel, prow: list[dict], table: pd.DataFrame, protocol: str) -> tuple[str, str, list]:
    """One panel's markdown and LaTeX per-task tables and its csv frames (scores, per task)."""
    shown = table_protocols(prow, protocol)
    md = tasks_markdown(prow, shown, by_setting=True, title=f"{panel.heading}: experiment {panel.experiment}")
    tex = tasks_latex(
        prow,
        shown,
        by_setting=True,
        label=f"tab:figure3{panel.letter}",
        caption=f"{latex_escape(panel.heading)}: SuperGLUE dev scores per task, mean $\\pm$ "
        f"std over seeds (percent); score {latex_escape(score_description(table))}.",
    )
    front = {"panel": panel.letter, "experiment": panel.experiment}
    per_task = tasks_frame(prow, shown, by_setting=True)
    frames = [table.assign(**front)[[*front, *table.columns]], per_task.assign(**front)[[*front, *per_task.columns]]]
    return md, tex, frames


def draw_figure3(
    rows: list[dict],
    out_dir: str | Path,
    panels: tuple[Panel, ...] = FIGURE3_PANELS,
    *,
    protocol: str = "paper",
    reference: bool = True,
    invalid: bool = False,
    title: str | None = None,
) -> dict[str, Path]:
    """Writes Figure 3 and its tables.

    Files: ``figure3.png``, ``figure3.pdf``, ``figure3.csv`` (per panel the score table by
    setting, with ``panel`` and ``experiment`` columns in front), ``figure3_tasks.md`` /
    ``figure3_tasks.tex`` (per-task tables, one per panel, markdown and LaTeX booktabs, every
    protocol the panel's rows have) and ``figure3_tasks.csv``.

    Raises:
        ValueError: No panel has rows, or none under ``protocol``.
    """
    tables = reissued(lambda: figure3_tables(rows, panels, protocol))
    present = [(panel, prow, table) for panel, prow, table in tables.values() if table is not None]
    if not present:
        raise ValueError(
            "no result rows of any Figure 3 experiment (" + ", ".join(p.experiment for p in panels) + "); run e.g. "
            "`promptscale-train experiment=ablation_prompt_length` first"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in FIGURE3_FILES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # table warnings were just issued
        fig = plot_figure3(rows, panels, protocol=protocol, reference=reference, invalid=invalid, title=title)
        md, tex, scores, per_task = [], [], [], []
        for panel, prow, table in present:
            m, t, (s, p) = _panel_tables(panel, prow, table, protocol)
            md, tex, scores, per_task = md + [m], tex + [t], scores + [s], per_task + [p]
    save_figure(fig, paths, "figure3")
    pd.concat(scores, ignore_index=True).to_csv(paths["figure3.csv"], index=False)
    paths["figure3_tasks.md"].write_text("\n".join(md), encoding="utf-8")
    paths["figure3_tasks.tex"].write_text("% \\usepackage{booktabs}\n" + "\n".join(tex), encoding="utf-8")
    pd.concat(per_task, ignore_index=True).to_csv(paths["figure3_tasks.csv"], index=False)
    return paths


def figure3(rows: list[dict], out_dir: Path, options: DrawOptions) -> dict[str, Path]:
    """Registry entry ``figure3``: the ablation panels (``--panel`` swaps one in; an experiment that
    is no ablation is drawn as a lone panel, e.g. the demo)."""
    panels = parse_panels(options.panels)
    if options.experiment is not None and options.experiment not in {p.experiment for p in panels}:
        panels = panels_for(options.experiment)
    return draw_figure3(rows, out_dir, panels, **options.style())
