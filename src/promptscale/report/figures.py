"""Drawing: Lester et al. 2021 Figure 1 (score vs model size, one line per method, or per method x
model family when the rows hold several families) and the pieces every figure shares (colours,
family markers, the log-size axis, mean lines with std bands, the invalid panel). ``fit`` overlays
each line's scaling fit (:mod:`promptscale.report.overlays`).

Drawing only: scores come from :mod:`promptscale.report.scores`, tables from
:mod:`promptscale.report.tables`; figures are registered by name in
:mod:`promptscale.report.registry` (Figure 3 lives in :mod:`promptscale.report.figure3`). Uses
``matplotlib.figure.Figure`` directly, never pyplot, so no global backend state is touched.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, NullLocator

from promptscale.reference import GPT3_FEW_SHOT, LESTER_FIG1, T5_PARAMS
from promptscale.report.labels import T5_LABELS, family_label, method_label
from promptscale.report.overlays import FIT_NOTE
from promptscale.report.registry import FIGURES, DrawOptions
from promptscale.report.scores import invalid_table, score_description, score_table, table_protocols
from promptscale.report.selection import describe_protocol, filter_experiment
from promptscale.report.tables import tasks_frame, tasks_latex, tasks_markdown

T = TypeVar("T")

METHOD_COLORS: dict[str, str] = {
    "model_tuning": "#ff7f0e",  # orange
    "multitask_model_tuning": "#d62728",  # red
    "prompt_tuning": "#2ca02c",  # green
    "prefix_tuning": "#9467bd",  # purple
    "prompt_design": "#1f77b4",  # blue
    "lora": "#8c564b",  # brown
}
_FALLBACK_COLORS = ("#e377c2", "#bcbd22", "#17becf", "#7f7f7f", "#393b79", "#637939", "#843c39")

FIGURE1_FILES = FIGURES["figure1"].files
INVALID_LABEL = "Invalid outputs (%)"


def method_color(method: str) -> str:
    """Stable colour of a method: fixed for known methods, a name hash for others."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _FALLBACK_COLORS[zlib.crc32(method.encode()) % len(_FALLBACK_COLORS)]


def reissued(compute: Callable[[], T]) -> T:
    """Runs ``compute``, then re-issues each warning once from the caller's caller.

    The plot recomputes the tables it draws; computing them once here first, with warnings
    collected, lets the plot run silenced without hiding a warning from the user.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compute()
    for w in caught:
        warnings.warn(str(w.message), w.category, stacklevel=3)
    return result


def size_axes(ax, fs: int, xlabel: str, ylabel: str = "SuperGLUE score (%)") -> None:
    """Log-scale parameter axis with T5 size names along the top, a percent axis."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10))))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel, fontsize=fs + 1)
    ax.set_ylabel(ylabel, fontsize=fs + 1)
    ax.tick_params(labelsize=fs)
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.12)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    # T5 size names along the top, at the frozen-model parameter counts.
    lo, hi = ax.get_xlim()
    top = ax.secondary_xaxis("top")
    sizes = [(s, n) for s, n in T5_PARAMS.items() if lo <= n <= hi]
    top.set_xticks([n for _, n in sizes], labels=[T5_LABELS[s] for s, _ in sizes], fontsize=fs - 2)
    top.xaxis.set_minor_locator(NullLocator())
    top.tick_params(length=3, colors="0.35")
    top.spines["top"].set_visible(False)


def plot_lines(ax, table: pd.DataFrame, keys: list[str], style: Callable[[tuple], tuple], *, lw: float = 2.0) -> None:
    """One line per distinct ``keys`` value of a score-like table: mean vs size, +-1 std band.

    Args:
        ax: Matplotlib axes.
        table: Columns ``total_params, mean, std`` and ``keys`` (rows in drawing order).
        keys: Columns whose values make a line, e.g. ``["method"]``.
        style: Line key (a tuple) -> ``(colour, label)`` or ``(colour, label, marker)``.
        lw: Line width.
    """
    for key, t in table.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        t = t.sort_values("total_params")
        x, m, sd = (t[c].to_numpy(float) for c in ("total_params", "mean", "std"))
        color, label, *marker = style(key)
        ax.plot(x, m, "-" + (marker[0] if marker else "o"), color=color, lw=lw, ms=2.5 * lw, label=label, zorder=3)
        if len(t) > 1:
            ax.fill_between(x, m - sd, m + sd, color=color, alpha=0.2, lw=0, zorder=2)
        elif sd[0] > 0:
            ax.errorbar(x, m, yerr=sd, fmt="none", ecolor=color, capsize=4, lw=0.7 * lw, zorder=2)


def seeds_text(table: pd.DataFrame) -> str:
    """``"3"`` or ``"1-3"``: how many seeds the lines average."""
    n = sorted(set(table["n_seeds"]))
    return f"{n[0]}" if len(n) == 1 else f"{n[0]}-{n[-1]}"


def invalid_axes(
    ax, table: pd.DataFrame | None, keys: list[str], style: Callable[[tuple], tuple], fs: int, like=None
) -> None:
    """The invalid-output panel: % of generated outputs that were no valid label, vs size.

    Args:
        ax: Matplotlib axes.
        table: An :func:`~promptscale.report.scores.invalid_table` (``None``: no such rows, and
            the panel says so).
        keys: Columns whose values make a line (as in the score panel).
        style: Line key -> ``(colour, label)``, the score panel's, so a line keeps its colour.
        fs: Font size.
        like: The score panel's axes, whose size range this panel shares.
    """
    if table is None or table.empty:
        placeholder(ax, "no generate rows with an invalid-output rate", fs)
        return
    plot_lines(ax, table, keys, style, lw=1.8)
    if like is not None:
        ax.set_xscale("log")
        ax.set_xlim(like.get_xlim())
    size_axes(ax, fs, "Model parameters", INVALID_LABEL)
    ax.set_ylim(bottom=0)
    tasks = ", ".join(sorted(set(",".join(table["tasks"]).split(","))))
    ax.legend(loc="upper right", fontsize=fs - 2, framealpha=0.8, title=f"mean over {tasks}", title_fontsize=fs - 2)


def placeholder(ax, text: str, fs: int) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=fs - 1, color="0.35", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_color("0.8")


def save_figure(fig: Figure, paths: dict[str, Path], stem: str) -> None:
    """Writes ``<stem>.png`` (200 dpi) and ``<stem>.pdf``."""
    fig.savefig(paths[f"{stem}.png"], dpi=200, bbox_inches="tight")
    fig.savefig(paths[f"{stem}.pdf"], bbox_inches="tight")


def invalid_or_none(rows: list[dict], by_setting: bool, tasks: list[str]) -> pd.DataFrame | None:
    """The invalid table, or ``None`` when the rows carry no invalid rates (the panel says so)."""
    try:
        return invalid_table(rows, by_setting, tasks)
    except ValueError:
        return None


# ---------------------------------------------------------------------- figure 1


def reference_line(ax, points, fmt: str, label: str, **style) -> None:
    """One published curve (``reference.RefPoint`` s), behind this repo's lines."""
    ax.plot([p.params for p in points], [p.mean for p in points], fmt, zorder=1, label=label, **style)


def _reference_curves(ax) -> None:
    """Lester et al. 2021's curves (SPoT Table 4) dashed, GPT-3 few-shot dotted."""
    for method, points in LESTER_FIG1.items():
        label = f"{method_label(method)} (Lester et al. 2021, ref.)"
        reference_line(ax, points, "--o", label, color=method_color(method), lw=1.4, ms=4, mfc="white", alpha=0.8)
    label = "GPT-3 few-shot prompt design (Brown et al. 2020, ref.)"
    reference_line(ax, GPT3_FEW_SHOT, ":s", label, color="0.45", lw=1.6, ms=3.5)


def _method_style(key: tuple) -> tuple[str, str]:
    return method_color(key[0]), method_label(key[0])


FAMILY_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def family_marker(family: str, families: list[str]) -> str:
    """The marker of a family's lines: by its position among the families drawn."""
    return FAMILY_MARKERS[families.index(family) % len(FAMILY_MARKERS)] if family in families else "o"


def line_keys(table: pd.DataFrame) -> tuple[list[str], Callable[[tuple], tuple]]:
    """Figure 1's line keys and style: a line per method, or per method x family when rows name several
    families (colour: the method; marker and label: the family)."""
    families = sorted(set(table["family"])) if "family" in table else []
    if len(families) < 2:
        return ["method"], _method_style

    def style(key: tuple) -> tuple[str, str, str]:
        method, family = key
        return method_color(method), f"{method_label(method)} · {family_label(family)}", family_marker(family, families)

    return ["method", "family"], style


def plot_figure(
    rows: list[dict],
    *,
    protocol: str = "paper",
    reference: bool = True,
    invalid: bool = False,
    title: str | None = None,
    fit: bool = False,
    fits: dict | None = None,
) -> Figure:
    """Builds the score-vs-size figure (without saving it).

    Args:
        rows: Result rows.
        protocol: ``"paper"``, ``"generate"`` or ``"rank"``; the legend (and default title) says which.
        reference: Overlay the published curves (dashed) and GPT-3 few-shot (dotted).
        invalid: Add a panel below: invalid-output % vs size per method (generate rows).
        title: Figure title; by default it says which tasks the score averages and the protocol.
        fit: Overlay each line's scaling fit and its band (:mod:`promptscale.report.overlays`).
        fits: Those fits when the caller has them (``analysis.fits.fit_lines``); else fitted here.

    Returns:
        The matplotlib ``Figure`` (Agg canvas; no pyplot state). Rows naming several model
        families draw a line per method x family (the family's marker, named in the legend).
    """
    if not rows:
        raise ValueError("no result rows to plot; run promptscale-train first")
    table = score_table(rows, protocol=protocol)
    keys, style = line_keys(table)
    fig = Figure(figsize=(11.5, 10.0 if invalid else 5.6), dpi=200)
    ax = fig.add_subplot(2 if invalid else 1, 1, 1)
    fs = 11
    plot_lines(ax, table, keys, style, lw=2.2)
    if fit:
        from promptscale.analysis.fits import fit_lines
        from promptscale.report.overlays import draw_fits

        draw_fits(ax, fit_lines(rows, protocol) if fits is None else fits, keys, style)
    if reference:
        _reference_curves(ax)
    size_axes(ax, fs, "Model parameters (top: T5 1.1 size)")
    protocol_text = describe_protocol(protocol, list(table["method"].unique()))
    if title is None:
        title = f"SuperGLUE dev score vs. model size {score_description(table)} ({protocol} protocol)"
    ax.set_title(title, fontsize=fs + 2, pad=10)
    leg = ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=fs - 2,
        frameon=False,
        title=f"Solid: this repo, mean ± std over {seeds_text(table)} seed(s),\n{protocol_text}"
        + ("\n" + FIT_NOTE if fit else "")
        + "\nDashed/dotted: published, all 8 tasks",
        title_fontsize=fs - 3,
    )
    leg._legend_box.align = "left"
    if invalid:
        ax2 = fig.add_subplot(2, 1, 2)
        bad = invalid_or_none(rows, False, table.attrs["tasks"])
        invalid_axes(ax2, bad, keys, style, fs, like=ax)
        ax2.set_title("Invalid outputs: generated text that is no valid label (generate rows)", fontsize=fs + 1)
    fig.tight_layout()
    return fig


def draw_figure(
    rows: list[dict],
    out_dir: str | Path,
    *,
    protocol: str = "paper",
    reference: bool = True,
    invalid: bool = False,
    title: str | None = None,
    fit: bool = False,
) -> dict[str, Path]:
    """Writes the figure and tables.

    Files: ``figure1.png``, ``figure1.pdf``, ``figure1.csv`` (the :func:`score_table` under
    ``protocol``), ``tasks.md`` / ``tasks.tex`` (per-task table, markdown and LaTeX booktabs,
    every protocol the rows have on adjacent lines) and ``tasks.csv`` (the long per-task table
    of those protocols); with ``fit``, ``figure1_fits.csv`` (each line's fitted form, parameters
    and AICc).

    Args:
        rows: Result rows (``ResultsStore.rows()``).
        out_dir: Output folder (created).
        protocol: ``"paper"`` (default), ``"generate"`` or ``"rank"``.
        reference: Overlay published curves.
        invalid: Add the invalid-output panel.
        title: Figure title (default: says which tasks the score averages, and the protocol).
        fit: Overlay the scaling fits.

    Returns:
        File name (e.g. ``"figure1.png"``) -> written path.

    Raises:
        ValueError: No usable rows, or none under ``protocol`` (the message names those present).
    """
    if not rows:
        raise ValueError("no result rows to plot; run promptscale-train first")
    scores = reissued(lambda: score_table(rows, protocol=protocol))
    shown = table_protocols(rows, protocol)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in FIGURE1_FILES}
    fits = None
    if fit:  # fitted once: the csv and the overlay
        from promptscale.analysis.fits import fit_lines, fit_table

        fits = reissued(lambda: fit_lines(rows, protocol))
        paths["figure1_fits.csv"] = out / "figure1_fits.csv"
        fit_table(fits).to_csv(paths["figure1_fits.csv"], index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the score table's warnings were just issued
        fig = plot_figure(
            rows, protocol=protocol, reference=reference, invalid=invalid, title=title, fit=fit, fits=fits
        )
        paths["tasks.md"].write_text(tasks_markdown(rows, shown), encoding="utf-8")
        paths["tasks.tex"].write_text(tasks_latex(rows, shown, label="tab:figure1-tasks"), encoding="utf-8")
        tasks_frame(rows, shown).to_csv(paths["tasks.csv"], index=False)
    save_figure(fig, paths, "figure1")
    scores.to_csv(paths["figure1.csv"], index=False)
    return paths


def figure1(rows: list[dict], out_dir: Path, options: DrawOptions) -> dict[str, Path]:
    """Registry entry ``figure1``: the options' experiment's rows (all rows if none)."""
    rows = filter_experiment(rows, options.experiment, "the rows")
    return draw_figure(rows, out_dir, **options.style(), fit=options.fit)
