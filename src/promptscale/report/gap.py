"""The gap figure: how far one method trails another at each model size, with its uncertainty.

y = method - base in SuperGLUE dev score (points; default prompt tuning - model tuning), x = the
frozen model's parameters (log scale). The band is the 95% paired-bootstrap interval of
:mod:`promptscale.analysis.compare` (dev examples shared by both methods, seeds resampled within
each); the solid zero line is "no gap"; the dashed line is the paper's gap (Lester et al. 2021,
as re-tabulated in SPoT Table 4) where both methods are published. The title names the size the
gap closed at (the smallest size from which on every interval reaches 0). Beside the figure: the
CI table (``gap.md`` / ``gap.tex``: both means, the difference, its interval, per task too) and
the data (``gap.csv``, ``gap_tasks.csv``).
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Mapping
from pathlib import Path

from matplotlib.figure import Figure

from promptscale.analysis.compare import Comparison, reference_gap, size_text
from promptscale.analysis.scaling import Crossing
from promptscale.analysis.tables import ci_caption, ci_markdown, ci_table, frame_latex
from promptscale.report.figures import family_marker, method_color, reissued, save_figure, size_axes
from promptscale.report.labels import family_label
from promptscale.report.registry import FIGURES, DrawOptions
from promptscale.report.selection import filter_experiment
from promptscale.store.results import ResultsStore

GAP_FILES = FIGURES["gap"].files


def plot_gap(
    comparison: Comparison,
    *,
    reference: bool = True,
    crossings: Mapping[str, Crossing] | None = None,
    title: str | None = None,
) -> Figure:
    """Draws the difference per size with its interval band, the zero line and the paper's gap."""
    sizes = comparison.sizes
    fig = Figure(figsize=(10.5, 5.4), dpi=200)
    ax = fig.add_subplot(1, 1, 1)
    fs = 11
    color = method_color(comparison.method.method)
    families = sorted(set(sizes["family"]))
    for family, t in sizes.groupby("family", sort=False):
        t = t.sort_values("total_params")
        x = t["total_params"].to_numpy(float)
        label = "this repo" + (f", {family_label(family)}" if len(families) > 1 else "")
        ax.plot(x, t["diff"], "-" + family_marker(family, families), color=color, lw=2.2, ms=6, label=label, zorder=3)
        if len(t) > 1:
            ax.fill_between(x, t["low"], t["high"], color=color, alpha=0.22, lw=0, zorder=2)
        ax.errorbar(x, t["diff"], yerr=[t["diff"] - t["low"], t["high"] - t["diff"]], fmt="none", ecolor=color,
                    capsize=4, lw=1.2, zorder=2)  # fmt: skip
    ax.axhline(0.0, color="0.15", lw=1.0, zorder=1, label="no gap")
    published = reference_gap(comparison.base, comparison.method) if reference else []
    if published:
        xs, ys = zip(*published)
        ax.plot(xs, ys, "--o", color="0.35", lw=1.4, ms=4, mfc="white", zorder=1,
                label="Lester et al. 2021 (SPoT Table 4), ref.")  # fmt: skip
    size_axes(ax, fs, "Model parameters (top: T5 1.1 size)", "Difference in SuperGLUE score (points)")
    if title is None:
        title = f"{comparison.method.label} − {comparison.base.label} ({comparison.protocol} protocol); " + (
            comparison.closed_text()
        )
    ax.set_title(title, fontsize=fs + 1, pad=10)
    note = (
        f"Band: {comparison.confidence:.0%} paired bootstrap CI,\nexamples shared, seeds resampled "
        f"({comparison.n_boot} replicates)"
    )
    for family, found in (crossings or {}).items():  # long sentences wrap rather than widen the figure
        sentence = found.describe(comparison.confidence)
        prefix = f"{family_label(family)}: " if len(crossings) > 1 else ""
        note += "\n" + textwrap.fill(prefix + sentence, 58)
    leg = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=fs - 2, frameon=False, title=note,
                    title_fontsize=fs - 3)  # fmt: skip
    leg._legend_box.align = "left"
    fig.tight_layout()
    return fig


def draw_gap(
    rows: list[dict],
    store_dir: str | Path,
    out_dir: str | Path,
    *,
    base: str = "model_tuning",
    method: str = "prompt_tuning",
    protocol: str = "paper",
    reference: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    fit: bool = False,
    title: str | None = None,
) -> dict[str, Path]:
    """Compares, then writes the gap figure and its tables (:data:`GAP_FILES`).

    ``gap.csv`` is the comparison per size (``analysis.compare.Comparison.sizes`` plus
    ``closed_at``); ``gap_tasks.csv`` per size x task; ``gap.md`` / ``gap.tex`` the CI table with
    its caption ("gap closed at", the procedure, and with ``fit`` the fitted crossing).

    Raises:
        ComparisonError: Nothing to compare (the message names the missing sizes, tasks or examples).
        PredictionsError: A run's predictions file is missing or not the one its rows describe.
    """
    from promptscale.analysis.fits import compare_and_fit

    options = {"protocol": protocol, "seed": seed, "confidence": confidence}
    result, crossings, why = reissued(
        lambda: compare_and_fit(rows, store_dir, base, method, fit=fit, n_boot=n_boot, **options)
    )
    if why:  # fewer than two sizes: no fit, the figure still shows the gap
        warnings.warn(f"no fitted crossing: {why}", stacklevel=2)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in GAP_FILES}
    save_figure(plot_gap(result, reference=reference, crossings=crossings, title=title), paths, "gap")
    closed = result.closed_at()
    sizes = result.sizes.assign(
        base=str(result.base), method=str(result.method), protocol=result.protocol,
        closed_at=[size_text(closed[f], family=False) if closed[f] else "not closed" for f in result.sizes["family"]],
    )  # fmt: skip
    sizes.to_csv(paths["gap.csv"], index=False)
    result.tasks.to_csv(paths["gap_tasks.csv"], index=False)
    paths["gap.md"].write_text(ci_markdown(result, crossings), encoding="utf-8")
    paths["gap.tex"].write_text(frame_latex(ci_table(result), ci_caption(result, crossings), "tab:gap"), "utf-8")
    return paths


def gap(rows: list[dict], out_dir: Path, options: DrawOptions) -> dict[str, Path]:
    """Registry entry ``gap``: ``options.compare`` (default prompt tuning - model tuning) on the
    experiment's rows, predictions read beside ``options.results``."""
    if options.results is None:
        raise ValueError(
            "the gap figure reads per-example predictions from a results store: draw it from the store "
            "(--results), not from W&B rows"
        )
    rows = filter_experiment(rows, options.experiment, "the rows")
    base, method = options.compare
    return draw_gap(
        rows, ResultsStore(options.results).dir, out_dir, base=base, method=method, protocol=options.protocol,
        reference=options.reference, n_boot=options.bootstrap, seed=options.seed, confidence=options.confidence,
        fit=options.fit, title=options.title,
    )  # fmt: skip
