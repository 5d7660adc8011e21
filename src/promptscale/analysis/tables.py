"""Tables as text and files: any frame as markdown / LaTeX / csv / parquet, and the CI table.

pandas' own ``to_markdown`` / ``Styler.to_latex`` need optional packages (tabulate, jinja2), so
the two renderings are written here, as plain as the per-task tables of ``report.tables``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from promptscale.analysis.compare import Comparison, size_text
from promptscale.analysis.scaling import Crossing
from promptscale.report.labels import fmt_params
from promptscale.report.tables import latex_escape

FORMATS: dict[str, str] = {".csv": "csv", ".parquet": "parquet", ".md": "markdown", ".tex": "latex"}
"""File suffix -> export format."""


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.2f}"
    return "" if value is None else str(value)


def _numeric(df: pd.DataFrame) -> list[bool]:
    return [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]


def frame_markdown(df: pd.DataFrame) -> str:
    """A GitHub markdown table (numbers right-aligned, floats to two decimals)."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in _numeric(df)) + "|"
    body = ["| " + " | ".join(_cell(v).replace("|", "\\|") for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def frame_latex(df: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A LaTeX ``booktabs`` table (``\\usepackage{booktabs}``)."""
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{" + "".join("r" if n else "l" for n in _numeric(df)) + "}", r"\toprule",
             " & ".join(latex_escape(c) for c in df.columns) + r" \\", r"\midrule"]  # fmt: skip
    lines += [" & ".join(latex_escape(_cell(v)) for v in r) + r" \\" for r in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\caption{{{latex_escape(caption)}}}"] if caption else []
    lines += [rf"\label{{{label}}}"] if label else []
    return "\n".join([*lines, r"\end{table}"]) + "\n"


def parquet_ready(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns of mixed types (seeds as int and text, values and None) as text, so Arrow takes them."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object and len({type(v) for v in out[c] if v is not None}) > 1:
            out[c] = [None if v is None else str(v) for v in out[c]]
    return out


def export(df: pd.DataFrame, fmt: str, path: str | Path | None = None, caption: str = "") -> str | None:
    """Writes ``df`` as ``fmt`` (csv, parquet, markdown, latex) to ``path``, or returns the text if no path.

    Raises:
        ValueError: An unknown format, or parquet without a path.
    """
    if fmt == "parquet":
        if path is None:
            raise ValueError("parquet is binary: give --out FILE.parquet")
        parquet_ready(df).to_parquet(path, index=False)
        return None
    renderers = {"csv": lambda: df.to_csv(index=False), "markdown": lambda: frame_markdown(df),
                 "latex": lambda: frame_latex(df, caption)}  # fmt: skip
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r}; choose from csv, parquet, markdown, latex")
    text = renderers[fmt]()
    if path is None:
        return text
    Path(path).write_text(text, encoding="utf-8")
    return None


def ci_table(comparison: Comparison) -> pd.DataFrame:
    """The CI table: per size, both means, the difference and its interval, whether the gap is closed there."""
    sizes = comparison.sizes
    pct = f"{comparison.confidence:.0%} CI"
    table = pd.DataFrame(
        {
            "Model": [
                size_text((f, m, p), family=sizes["family"].nunique() > 1)
                for f, m, p in zip(sizes["family"], sizes["model"], sizes["total_params"])
            ],
            "Seeds": [f"{a} / {b}" for a, b in zip(sizes["n_seeds_base"], sizes["n_seeds_method"])],
            comparison.base.label: sizes["base_mean"],
            comparison.method.label: sizes["method_mean"],
            "Difference": sizes["diff"],
            pct: [f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(sizes["low"], sizes["high"])],
            "CI contains 0 or above": ["yes" if c else "no" for c in sizes["closed"]],
        }
    )
    return table


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def ci_caption(comparison: Comparison, crossings: Mapping[str, Crossing] | None = None) -> str:
    """What the CI table shows, the procedure in one line, the "gap closed at" entry and any fitted crossing."""
    text = (
        f"{comparison.method.label} minus {comparison.base.label}, SuperGLUE dev score (points, "
        f"{comparison.protocol} protocol). Interval: {comparison.confidence:.0%} paired bootstrap over dev examples "
        f"(MultiRC questions, ReCoRD queries) with seeds resampled per method, {comparison.n_boot} replicates, "
        f"seed {comparison.seed}. {_sentence(comparison.closed_text())}."
    )
    for family, found in (crossings or {}).items():
        prefix = f"{family}: " if len(crossings) > 1 else ""
        text += f" {prefix}{_sentence(found.describe(comparison.confidence))}."
    return text


def ci_markdown(comparison: Comparison, crossings: Mapping[str, Crossing] | None = None) -> str:
    """The CI table as markdown, headed by its caption and followed by the per-task differences."""
    tasks = comparison.tasks
    per_task = pd.DataFrame(
        {
            "Model": [f"{m} ({fmt_params(p)})" for m, p in zip(tasks["model"], tasks["total_params"])],
            "Task": tasks["task"],
            "Examples": tasks["units"],
            "Difference": tasks["diff"],
            "CI": [f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(tasks["low"], tasks["high"])],
        }
    )
    head = f"# {comparison.method.label} vs. {comparison.base.label}\n\n{ci_caption(comparison, crossings)}\n\n"
    return head + frame_markdown(ci_table(comparison)) + "\n## Per task\n\n" + frame_markdown(per_task)
