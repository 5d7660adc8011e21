"""Results store (or W&B) -> Lester et al. 2021 Figure 1 and Figure 3, and per-task tables.

Figure 1: SuperGLUE score vs model size, one line per method. Figure 3: four ablation panels
((a) prompt length, (b) prompt initialisation, (c) pre-training method, (d) LM adaptation
steps), each one experiment's rows, one line per ``setting`` (see :mod:`promptscale.grouping`).

Reads only result rows (see :mod:`promptscale.store.results`). The score of one run is the mean over
SuperGLUE tasks of each task's mean metric (CB, MultiRC and ReCoRD average their two metrics
first; AX-b / AX-g are not scored), in percent. Lines show the mean over seeds, bands +-1
standard deviation (population std, ``ddof=0``, so a single seed has std 0).

Command line::

    promptscale-figure [--figure 1|3] [--results outputs/results.jsonl] [--out outputs/figures]
                       [--experiment NAME] [--panel a=EXPERIMENT] [--no-reference]
    promptscale-figure --source wandb --entity E --project P [--group G] [--figure 1|3] --out DIR
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import warnings
import zlib
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from hydra.experimental.callback import Callback
from matplotlib.figure import Figure  # no pyplot: never touches the global backend (Agg)
from matplotlib.ticker import LogLocator, NullFormatter, NullLocator

from promptscale.data.tasks import SCORED_TASKS, TASKS
from promptscale.grouping import parse_setting
from promptscale.reference import GPT3_FEW_SHOT, LESTER_FIG1, T5_PARAMS
from promptscale.store.results import ResultsStore

log = logging.getLogger(__name__)

METHOD_ORDER: tuple[str, ...] = (
    "model_tuning",
    "multitask_model_tuning",
    "prompt_tuning",
    "prefix_tuning",
    "lora",
    "prompt_design",
)

METHOD_COLORS: dict[str, str] = {
    "model_tuning": "#ff7f0e",  # orange
    "multitask_model_tuning": "#d62728",  # red
    "prompt_tuning": "#2ca02c",  # green
    "prefix_tuning": "#9467bd",  # purple
    "prompt_design": "#1f77b4",  # blue
    "lora": "#8c564b",  # brown
}
_FALLBACK_COLORS = ("#e377c2", "#bcbd22", "#17becf", "#7f7f7f", "#393b79", "#637939", "#843c39")

METHOD_NAMES: dict[str, str] = {
    "model_tuning": "Model Tuning",
    "multitask_model_tuning": "Model Tuning (Multi-task)",
    "prompt_tuning": "Prompt Tuning",
    "prefix_tuning": "Prefix Tuning",
    "prompt_design": "Prompt Design",
    "lora": "LoRA",
}

T5_LABELS: dict[str, str] = {"small": "Small", "base": "Base", "large": "Large", "xl": "XL", "xxl": "XXL"}

FIGURE_FILES = ("figure1.png", "figure1.pdf", "figure1.csv", "tasks.md", "tasks.tex", "tasks.csv")


def method_color(method: str) -> str:
    """Stable colour of a method: fixed for known methods, a name hash for others."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _FALLBACK_COLORS[zlib.crc32(method.encode()) % len(_FALLBACK_COLORS)]


def method_name(method: str) -> str:
    """Legend name of a method, e.g. ``"Prompt Tuning"``."""
    return METHOD_NAMES.get(method, method.replace("_", " ").title())


def _method_key(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def _task_key(task: str) -> tuple[int, str]:
    names = list(TASKS)
    return (names.index(task) if task in names else len(names), task)


# ---------------------------------------------------------------------- tables


def _setting(row: dict) -> str:
    return str(row.get("setting") or "")


def _seed_task_scores(rows: list[dict], by_setting: bool = False) -> dict[tuple, dict[str, float]]:
    """Task scores per (method, model, total_params, seed, setting): ``{cell_seed: {task: score}}``.

    Uses rows with status ``"ok"`` and split ``"val"``. A task's score is the mean of its
    metrics listed in its ``TaskSpec`` (all metrics present for an unknown task). When one
    measurement appears more than once (a rerun), the latest row by timestamp wins. The
    setting (result rows' ``setting`` column, Figure 3) is ``""`` unless ``by_setting``.
    """
    latest: dict[tuple, dict] = {}
    dup = 0
    ok = [r for r in rows if r.get("status") == "ok" and r.get("split") == "val"]
    # Stable sort: equal timestamps keep file order, so the later-appended row wins.
    for r in sorted(ok, key=lambda r: str(r.get("timestamp") or "")):
        key = (
            r["method"],
            r["model"],
            r["total_params"],
            r["seed"],
            _setting(r) if by_setting else "",
            r["task"],
            r["metric"],
        )
        dup += key in latest
        latest[key] = r
    if dup:
        warnings.warn(
            f"{dup} measurement(s) appear in more than one row (same method, model, seed, task, "
            "metric); keeping the latest. Filter by experiment if these are different runs.",
            stacklevel=3,
        )
    metrics: dict[tuple, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for (method, model, params, seed, setting, task, metric), r in latest.items():
        metrics[(method, model, params, seed, setting)][task][metric] = float(r["value"])
    out: dict[tuple, dict[str, float]] = {}
    for group, per_task in metrics.items():
        scores = {}
        for task, vals in per_task.items():
            wanted = TASKS[task].metrics if task in TASKS else tuple(vals)
            have = [m for m in wanted if m in vals]
            if not have:
                continue  # only non-score metrics (e.g. loss) recorded for this task
            if len(have) < len(wanted):
                warnings.warn(
                    f"{group[0]}/{group[1]}{' ' + group[4] if group[4] else ''} seed {group[3]}: "
                    f"task {task} lacks metric(s) "
                    f"{sorted(set(wanted) - set(have))}; its score averages {have} only",
                    stacklevel=3,
                )
            scores[task] = sum(vals[m] for m in have) / len(have)
        if scores:
            out[group] = scores
    return out


def _mean_std(xs: list[float]) -> tuple[float, float]:
    mean = sum(xs) / len(xs)
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))  # ddof=0


def _seed_sort_key(seed: Any) -> tuple[int, str]:
    return (0, f"{seed:>20}") if isinstance(seed, int) else (1, str(seed))


_KNOWN_VALUES: tuple[str, ...] = (
    # Paper order of Figure 3's categorical settings.
    "random_uniform",
    "sampled_vocab",
    "class_label",
    "span_corruption",
    "lm_adaptation",
    "false",
    "true",
)


def setting_key(setting: str) -> tuple:
    """Sort key of a setting label: known values in paper order, numbers numerically."""
    key = []
    for part in str(setting or "").split(", "):
        name, _, value = part.partition("=")
        if value in _KNOWN_VALUES:
            key.append((name, 0, _KNOWN_VALUES.index(value), ""))
        else:
            try:
                key.append((name, 1, float(value), ""))
            except ValueError:
                key.append((name, 2, 0.0, value))
    return tuple(key)


def score_table(rows: list[dict], by_setting: bool = False) -> pd.DataFrame:
    """SuperGLUE score per (method, model, total_params): mean and std over seeds.

    Each seed's score is the mean over the scored SuperGLUE tasks (AX-b / AX-g excluded) of
    the task scores. If runs cover different task sets, every run is scored over the tasks
    common to all runs (with a warning), so the lines are comparable.

    Args:
        rows: Result rows (``ResultsStore.rows()``); only status ``"ok"``, split ``"val"``
            rows are used.
        by_setting: Also group by the rows' ``setting`` (Figure 3: one line per setting) and
            add a ``setting`` column after ``total_params``.

    Returns:
        Columns ``method, model, total_params, mean, std, n_seeds, seeds, tasks`` (``tasks``
        comma-joined), sorted by method then size. ``attrs["tasks"]``: the scored tasks;
        ``attrs["restricted"]``: whether runs had more tasks than were scored.

    Raises:
        ValueError: No usable rows, or no scored task common to all runs.
    """
    per_seed = _seed_task_scores(rows, by_setting)
    scored = {g: {t: s for t, s in sc.items() if t in SCORED_TASKS} for g, sc in per_seed.items()}
    scored = {g: sc for g, sc in scored.items() if sc}
    if not scored:
        raise ValueError(
            f"no status 'ok', split 'val' rows of a scored SuperGLUE task ({', '.join(SCORED_TASKS)}) to plot"
        )
    common = set.intersection(*(set(sc) for sc in scored.values()))
    union = set().union(*(set(sc) for sc in scored.values()))
    if not common:
        raise ValueError(
            "no SuperGLUE task is common to all (method, model, seed) runs; filter the rows "
            "(e.g. --experiment). Tasks per run: "
            + "; ".join(f"{g[0]}/{g[1]}/seed {g[3]}: {','.join(sorted(sc))}" for g, sc in scored.items())
        )
    tasks = sorted(common, key=_task_key)
    restricted = common != union
    if restricted:
        extra = {
            f"{g[0]}/{g[1]}": sorted(set(sc) - common, key=_task_key) for g, sc in scored.items() if set(sc) - common
        }
        warnings.warn(
            f"runs cover different SuperGLUE tasks; scoring every run over the {len(tasks)} "
            f"task(s) common to all ({', '.join(tasks)}). Left out: "
            + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(extra.items())),
            stacklevel=2,
        )
    cells: dict[tuple, list[tuple[Any, float]]] = defaultdict(list)
    for (method, model, params, seed, setting), sc in scored.items():
        cells[(method, model, params, setting)].append((seed, sum(sc[t] for t in tasks) / len(tasks)))
    records = []
    for (method, model, params, setting), seed_scores in cells.items():
        seed_scores.sort(key=lambda x: _seed_sort_key(x[0]))
        mean, std = _mean_std([s for _, s in seed_scores])
        records.append(
            {
                "method": method,
                "model": model,
                "total_params": params,
                "setting": setting,
                "mean": mean,
                "std": std,
                "n_seeds": len(seed_scores),
                "seeds": ",".join(str(s) for s, _ in seed_scores),
                "tasks": ",".join(tasks),
            }
        )
    records.sort(
        key=lambda r: (_method_key(r["method"]), setting_key(r["setting"]), r["total_params"], str(r["model"]))
    )
    columns = [
        "method",
        "model",
        "total_params",
        *(["setting"] if by_setting else []),
        "mean",
        "std",
        "n_seeds",
        "seeds",
        "tasks",
    ]
    df = pd.DataFrame.from_records(records, columns=columns)
    df.attrs["tasks"] = tasks
    df.attrs["restricted"] = restricted
    return df


def task_table(rows: list[dict], by_setting: bool = False) -> pd.DataFrame:
    """Task score per (method, model, total_params, task): mean and std over seeds.

    Includes every task present (also AX-b / AX-g and tasks outside the score).

    Args:
        rows: Result rows.
        by_setting: Also group by the rows' ``setting`` (adds a ``setting`` column).

    Returns:
        Columns ``method, model, total_params, task, mean, std, n_seeds``, sorted by method,
        size and task order.
    """
    cells: dict[tuple, list[float]] = defaultdict(list)
    for (method, model, params, _seed, setting), sc in _seed_task_scores(rows, by_setting).items():
        for task, s in sc.items():
            cells[(method, model, params, setting, task)].append(s)
    records = []
    for (method, model, params, setting, task), xs in cells.items():
        mean, std = _mean_std(xs)
        records.append(
            {
                "method": method,
                "model": model,
                "total_params": params,
                "setting": setting,
                "task": task,
                "mean": mean,
                "std": std,
                "n_seeds": len(xs),
            }
        )
    records.sort(
        key=lambda r: (
            _method_key(r["method"]),
            setting_key(r["setting"]),
            r["total_params"],
            str(r["model"]),
            _task_key(r["task"]),
        )
    )
    columns = [
        "method",
        "model",
        "total_params",
        *(["setting"] if by_setting else []),
        "task",
        "mean",
        "std",
        "n_seeds",
    ]
    return pd.DataFrame.from_records(records, columns=columns)


def score_description(table: pd.DataFrame) -> str:
    """Says which tasks a score table averages, e.g. ``"over 2 of 8 tasks (cb, rte)"``."""
    tasks = table.attrs.get("tasks") or sorted(set(",".join(table["tasks"]).split(",")), key=_task_key)
    n = len(SCORED_TASKS)
    if set(tasks) == set(SCORED_TASKS):
        text = f"over all {n} tasks"
    else:
        text = f"over {len(tasks)} of {n} tasks ({', '.join(tasks)})"
    if table.attrs.get("restricted"):
        text += ", the tasks common to all runs"
    return text


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.1f} ± {std:.1f}"


def _fmt_params(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))


def _task_grid(
    rows: list[dict], scores: pd.DataFrame | None, by_setting: bool
) -> tuple[list[str], list[tuple[list[str], list[tuple[float, float] | None]]], pd.DataFrame]:
    """Rows of the per-task table: (label cells, [(mean, std) per task, then the score]), tasks."""
    scores = score_table(rows, by_setting) if scores is None else scores
    per_task = task_table(rows, by_setting)
    tasks = sorted(per_task["task"].unique(), key=_task_key)

    def key(r) -> tuple:
        return (r.method, r.model, r.total_params, r.setting if by_setting else "")

    cells = {(*key(r), r.task): (r.mean, r.std) for r in per_task.itertuples()}
    n_seeds: dict[tuple, int] = defaultdict(int)
    for r in per_task.itertuples():
        n_seeds[key(r)] = max(n_seeds[key(r)], int(r.n_seeds))

    def labels(k: tuple, n: int) -> list[str]:
        out = [method_name(k[0])] + ([k[3]] if by_setting else [])
        return out + [str(k[1]), _fmt_params(k[2]), str(n)]

    grid = []
    for r in scores.itertuples():
        k = key(r)
        grid.append((labels(k, r.n_seeds), [cells.get((*k, t)) for t in tasks] + [(r.mean, r.std)]))
    # Cells with task rows but no SuperGLUE score (e.g. only AX tasks) still get a row.
    scored_cells = {key(r) for r in scores.itertuples()}
    for k in dict.fromkeys(key(r) for r in per_task.itertuples()):
        if k not in scored_cells:
            grid.append((labels(k, n_seeds[k]), [cells.get((*k, t)) for t in tasks] + [None]))
    return tasks, grid, scores


def tasks_markdown(
    rows: list[dict],
    scores: pd.DataFrame | None = None,
    by_setting: bool = False,
    title: str = "Per-task SuperGLUE dev scores",
) -> str:
    """Markdown table: one row per method x (setting x) model, columns tasks + SuperGLUE score."""
    tasks, grid, scores = _task_grid(rows, scores, by_setting)
    header = ["Method", *(["Setting"] if by_setting else []), "Model", "Params", "Seeds", *tasks, "SuperGLUE score"]
    n_label = len(header) - len(tasks) - 1
    lines = [
        f"# {title}",
        "",
        f"Cells: mean ± std over seeds (percent). SuperGLUE score {score_description(scores)}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * n_label + ["---:"] * (len(tasks) + 1)) + "|",
    ]
    for label, values in grid:
        lines.append("| " + " | ".join(label + [_fmt(*v) if v else "" for v in values]) + " |")
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Escapes LaTeX's special characters in plain text."""
    return "".join(_LATEX_ESCAPES.get(c, c) for c in str(text))


def tasks_latex(
    rows: list[dict],
    scores: pd.DataFrame | None = None,
    by_setting: bool = False,
    caption: str | None = None,
    label: str = "tab:tasks",
) -> str:
    """The per-task table as a LaTeX ``booktabs`` table (``\\usepackage{booktabs}``).

    Same rows and cells as :func:`tasks_markdown`; mean $\\pm$ std over seeds in percent.
    """
    tasks, grid, scores = _task_grid(rows, scores, by_setting)
    names = {t: TASKS[t].folder if t in TASKS else t for t in tasks}
    header = [
        "Method",
        *(["Setting"] if by_setting else []),
        "Model",
        "Params",
        "Seeds",
        *(names[t] for t in tasks),
        "SuperGLUE",
    ]
    n_label = len(header) - len(tasks) - 1
    if caption is None:
        caption = (
            f"SuperGLUE dev scores per task, mean $\\pm$ std over seeds (percent). "
            f"SuperGLUE score {latex_escape(score_description(scores))}."
        )
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{" + "l" * (n_label - 1) + "r" + "r" * (len(tasks) + 1) + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    for labels, values in grid:
        cells = [latex_escape(c) for c in labels]
        cells += [f"{v[0]:.1f} $\\pm$ {v[1]:.1f}" if v else "--" for v in values]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}", rf"\label{{{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- figure


def _size_axes(ax, fs: int, xlabel: str) -> None:
    """Log-scale parameter axis with T5 size names along the top, score axis in percent."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10))))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel, fontsize=fs + 1)
    ax.set_ylabel("SuperGLUE score (%)", fontsize=fs + 1)
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


def plot_figure(rows: list[dict], *, reference: bool = True, title: str | None = None) -> Figure:
    """Builds the score-vs-size figure (without saving it).

    Args:
        rows: Result rows.
        reference: Overlay the published curves (dashed) and GPT-3 few-shot (dotted).
        title: Figure title; by default it says which tasks the score averages.

    Returns:
        The matplotlib ``Figure`` (Agg canvas; no pyplot state).
    """
    if not rows:
        raise ValueError("no result rows to plot; run promptscale-train first")
    table = score_table(rows)
    fig = Figure(figsize=(11.5, 5.6), dpi=200)
    ax = fig.add_subplot(1, 1, 1)
    fs = 11

    methods = sorted(table["method"].unique(), key=_method_key)
    for method in methods:
        t = table[table["method"] == method].sort_values("total_params")
        x, m, s = t["total_params"].to_numpy(float), t["mean"].to_numpy(float), t["std"].to_numpy(float)
        color = method_color(method)
        ax.plot(x, m, "-o", color=color, lw=2.2, ms=6, label=method_name(method), zorder=3)
        if len(t) > 1:
            ax.fill_between(x, m - s, m + s, color=color, alpha=0.2, lw=0, zorder=2)
        elif s[0] > 0:
            ax.errorbar(x, m, yerr=s, fmt="none", ecolor=color, capsize=4, lw=1.5, zorder=2)

    if reference:
        for method, points in LESTER_FIG1.items():
            ax.plot(
                [p.params for p in points],
                [p.mean for p in points],
                "--o",
                color=method_color(method),
                lw=1.4,
                ms=4,
                mfc="white",
                alpha=0.8,
                zorder=1,
                label=f"{method_name(method)} (Lester et al. 2021, ref.)",
            )
        ax.plot(
            [p.params for p in GPT3_FEW_SHOT],
            [p.mean for p in GPT3_FEW_SHOT],
            ":s",
            color="0.45",
            lw=1.6,
            ms=3.5,
            zorder=1,
            label="GPT-3 few-shot prompt design (Brown et al. 2020, ref.)",
        )

    _size_axes(ax, fs, "Model parameters (top: T5 1.1 size)")

    n_seeds = sorted(set(table["n_seeds"]))
    seeds = f"{n_seeds[0]}" if len(n_seeds) == 1 else f"{n_seeds[0]}-{n_seeds[-1]}"
    if title is None:
        title = f"SuperGLUE dev score vs. model size {score_description(table)}"
    ax.set_title(title, fontsize=fs + 2, pad=10)
    leg = ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=fs - 2,
        frameon=False,
        title=f"Solid: this repo, mean ± std over {seeds} seed(s)\nDashed/dotted: published, all 8 tasks",
        title_fontsize=fs - 3,
    )
    leg._legend_box.align = "left"
    fig.tight_layout()
    return fig


def draw_figure(
    rows: list[dict], out_dir: str | Path, *, reference: bool = True, title: str | None = None
) -> dict[str, Path]:
    """Writes the figure and tables.

    Files: ``figure1.png``, ``figure1.pdf``, ``figure1.csv`` (the :func:`score_table`),
    ``tasks.md`` / ``tasks.tex`` (per-task table, markdown and LaTeX booktabs) and
    ``tasks.csv`` (the :func:`task_table`).

    Args:
        rows: Result rows (``ResultsStore.rows()``).
        out_dir: Output folder (created).
        reference: Overlay published curves.
        title: Figure title (default: says which tasks the score averages).

    Returns:
        File name (e.g. ``"figure1.png"``) -> written path.

    Raises:
        ValueError: No usable rows.
    """
    if not rows:
        raise ValueError("no result rows to plot; run promptscale-train first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = score_table(rows)
        per_task = task_table(rows)
    for w in caught:  # re-issue once each, from here
        warnings.warn(str(w.message), w.category, stacklevel=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # table warnings were just issued
        fig = plot_figure(rows, reference=reference, title=title)
        md = tasks_markdown(rows, scores)
        tex = tasks_latex(rows, scores, label="tab:figure1-tasks")
    paths = {name: out / name for name in FIGURE_FILES}
    fig.savefig(paths["figure1.png"], dpi=200, bbox_inches="tight")
    fig.savefig(paths["figure1.pdf"], bbox_inches="tight")
    scores.to_csv(paths["figure1.csv"], index=False)
    paths["tasks.md"].write_text(md, encoding="utf-8")
    paths["tasks.tex"].write_text(tex, encoding="utf-8")
    per_task.to_csv(paths["tasks.csv"], index=False)
    return paths


# ---------------------------------------------------------------------- figure 3


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

FIGURE3_FILES = (
    "figure3.png",
    "figure3.pdf",
    "figure3.csv",
    "figure3_tasks.md",
    "figure3_tasks.tex",
    "figure3_tasks.csv",
)

SETTING_NAMES: dict[str, str] = {
    "random_uniform": "Random Uniform",
    "sampled_vocab": "Sampled Vocab",
    "class_label": "Class Label",
    "span_corruption": "Span Corruption",
    "lm_adaptation": "LM Adaptation (100K)",
}


def setting_name(setting: str) -> str:
    """Legend text of a setting: ``"prompt_length=20"`` -> ``"20"``,
    ``"pretraining=span_corruption, target_sentinel=true"`` -> ``"Span Corruption + Sentinel"``."""
    parts = parse_setting(setting)
    if not parts:
        return str(setting or "")
    sentinel = parts.pop("target_sentinel", None) if len(parts) > 1 else None
    words = [SETTING_NAMES.get(v, v if len(parts) == 1 else f"{k}={v}") for k, v in parts.items()]
    if sentinel == "true":
        words.append("+ Sentinel")
    return " ".join(words)


def panels_for(experiment: str | None) -> tuple[Panel, ...]:
    """Figure 3's panels when ``experiment`` is one of them (or ``None``), else one lone panel."""
    if experiment is None or experiment in {p.experiment for p in FIGURE3_PANELS}:
        return FIGURE3_PANELS
    return (Panel("", experiment, experiment.replace("_", " ").capitalize()),)


def parse_panels(specs: list[str] | None) -> tuple[Panel, ...]:
    """``["a=my_lengths", ...]`` -> Figure 3's panels with those experiments swapped in."""
    panels = {p.letter: p for p in FIGURE3_PANELS}
    for spec in specs or []:
        letter, sep, experiment = spec.partition("=")
        if not sep or letter not in panels or not experiment:
            raise ValueError(f"--panel {spec!r}: expected LETTER=EXPERIMENT with LETTER in {', '.join(panels)}")
        panels[letter] = replace(panels[letter], experiment=experiment)
    return tuple(panels.values())


def figure3_tables(
    rows: list[dict], panels: tuple[Panel, ...] = FIGURE3_PANELS
) -> dict[str, tuple[Panel, list[dict], pd.DataFrame | None]]:
    """Per panel letter: (panel, its rows, its score table by setting or ``None`` if no rows)."""
    out = {}
    for panel in panels:
        prow = [r for r in rows if r.get("experiment") == panel.experiment]
        try:
            table = score_table(prow, by_setting=True) if prow else None
        except ValueError as err:  # rows, but nothing scorable: the panel says so
            warnings.warn(f"Figure 3 panel {panel.letter or panel.experiment}: {err}", stacklevel=2)
            table = None
        out[panel.letter] = (panel, prow, table)
    return out


def plot_figure3(
    rows: list[dict], panels: tuple[Panel, ...] = FIGURE3_PANELS, *, reference: bool = True, title: str | None = None
) -> Figure:
    """Builds Figure 3: one panel per ablation, score vs size, one line per setting.

    A panel without rows says so (``no runs``) instead of failing, so a partial set of
    ablations still draws.

    Args:
        rows: Result rows (all experiments; each panel picks its own).
        panels: The panels, in drawing order (2 x 2 for four).
        reference: Overlay Lester et al. 2021's prompt tuning curve (their default setting) in
            each panel, dashed.
        title: Figure title.
    """
    tables = figure3_tables(rows, panels)
    ncols = 2 if len(panels) > 1 else 1
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(7.2 * ncols, 5.2 * nrows), dpi=200)
    fs = 10
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        _, prow, table = tables[panel.letter]
        head = f"({panel.letter}) {panel.title}" if panel.letter else panel.title
        if table is None or table.empty:
            ax.set_title(head, fontsize=fs + 2, loc="left")
            what = (
                f"no scorable rows of experiment {panel.experiment}"
                if prow
                else f"no runs of experiment {panel.experiment}"
            )
            ax.text(
                0.5,
                0.5,
                f"{what}\n\n{panel.missing}",
                ha="center",
                va="center",
                fontsize=fs - 1,
                color="0.35",
                transform=ax.transAxes,
                wrap=True,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_color("0.8")
            continue
        lines = list(dict.fromkeys(zip(table["method"], table["setting"])))
        methods = {m for m, _ in lines}
        cmap = matplotlib.colormaps["viridis"]
        for j, (method, setting) in enumerate(lines):
            t = table[(table["method"] == method) & (table["setting"] == setting)].sort_values("total_params")
            x, m, sd = (t[c].to_numpy(float) for c in ("total_params", "mean", "std"))
            color = cmap(0.85 * j / max(1, len(lines) - 1))
            label = setting_name(setting) or method_name(method)
            if len(methods) > 1:
                label = f"{method_name(method)}: {label}"
            ax.plot(x, m, "-o", color=color, lw=2, ms=5, label=label, zorder=3)
            if len(t) > 1:
                ax.fill_between(x, m - sd, m + sd, color=color, alpha=0.18, lw=0, zorder=2)
            elif sd[0] > 0:
                ax.errorbar(x, m, yerr=sd, fmt="none", ecolor=color, capsize=4, lw=1.2, zorder=2)
        if reference:
            points = LESTER_FIG1["prompt_tuning"]
            ax.plot(
                [p.params for p in points],
                [p.mean for p in points],
                "--",
                color="0.55",
                lw=1.2,
                zorder=1,
                label="Prompt Tuning, Fig. 1 (Lester et al. 2021, ref.)",
            )
        _size_axes(ax, fs, "Model parameters")
        n_seeds = sorted(set(table["n_seeds"]))
        seeds = f"{n_seeds[0]}" if len(n_seeds) == 1 else f"{n_seeds[0]}-{n_seeds[-1]}"
        ax.set_title(head, fontsize=fs + 2, loc="left")
        leg = ax.legend(
            loc="lower right",
            fontsize=fs - 2,
            framealpha=0.8,
            title_fontsize=fs - 3,
            title=f"{panel.legend}\n(score {score_description(table)};\nmean ± std over {seeds} seed(s))",
        )
        leg._legend_box.align = "left"
    if title is None:
        title = "Prompt tuning ablations (Lester et al. 2021, Fig. 3): SuperGLUE dev score vs. model size"
    fig.suptitle(title, fontsize=fs + 3)
    fig.tight_layout()
    return fig


def draw_figure3(
    rows: list[dict],
    out_dir: str | Path,
    panels: tuple[Panel, ...] = FIGURE3_PANELS,
    *,
    reference: bool = True,
    title: str | None = None,
) -> dict[str, Path]:
    """Writes Figure 3 and its tables.

    Files: ``figure3.png``, ``figure3.pdf``, ``figure3.csv`` (per panel the score table by
    setting, with ``panel`` and ``experiment`` columns in front), ``figure3_tasks.md`` /
    ``figure3_tasks.tex`` (per-task tables, one per panel, markdown and LaTeX booktabs) and
    ``figure3_tasks.csv``.

    Raises:
        ValueError: No panel has rows.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tables = figure3_tables(rows, panels)
    for w in caught:
        warnings.warn(str(w.message), w.category, stacklevel=2)
    present = [(panel, prow, table) for panel, prow, table in tables.values() if table is not None]
    if not present:
        raise ValueError(
            "no result rows of any Figure 3 experiment (" + ", ".join(p.experiment for p in panels) + "); run e.g. "
            "`promptscale-train experiment=ablation_prompt_length` first"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in FIGURE3_FILES}
    md, tex, scores, per_task = [], [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # table warnings were just issued
        fig = plot_figure3(rows, panels, reference=reference, title=title)
        for panel, prow, table in present:
            name = f"({panel.letter}) {panel.title}" if panel.letter else panel.title
            md.append(tasks_markdown(prow, table, by_setting=True, title=f"{name}: experiment {panel.experiment}"))
            tex.append(
                tasks_latex(
                    prow,
                    table,
                    by_setting=True,
                    label=f"tab:figure3{panel.letter}",
                    caption=f"{latex_escape(name)}: SuperGLUE dev scores per task, mean $\\pm$ "
                    f"std over seeds (percent); score {latex_escape(score_description(table))}.",
                )
            )
            front = {"panel": panel.letter, "experiment": panel.experiment}
            scores.append(table.assign(**front)[[*front, *table.columns]])
            t = task_table(prow, by_setting=True)
            per_task.append(t.assign(**front)[[*front, *t.columns]])
    fig.savefig(paths["figure3.png"], dpi=200, bbox_inches="tight")
    fig.savefig(paths["figure3.pdf"], bbox_inches="tight")
    pd.concat(scores, ignore_index=True).to_csv(paths["figure3.csv"], index=False)
    paths["figure3_tasks.md"].write_text("\n".join(md), encoding="utf-8")
    paths["figure3_tasks.tex"].write_text("% \\usepackage{booktabs}\n" + "\n".join(tex), encoding="utf-8")
    pd.concat(per_task, ignore_index=True).to_csv(paths["figure3_tasks.csv"], index=False)
    return paths


# ---------------------------------------------------------------------- command line


def load_rows(results: str | Path, experiment: str | None = None) -> list[dict]:
    """Rows of a results store, optionally of one experiment.

    Raises:
        ValueError: The store holds no rows (for that experiment).
    """
    return _filter(ResultsStore(results).rows(), experiment, f"{results}")


def _filter(rows: list[dict], experiment: str | None, where: str) -> list[dict]:
    if not rows:
        raise ValueError(f"no result rows in {where}; run promptscale-train first")
    if experiment is not None:
        present = sorted({str(r.get("experiment")) for r in rows})
        rows = [r for r in rows if r.get("experiment") == experiment]
        if not rows:
            raise ValueError(
                f"no result rows of experiment {experiment!r} in {where} (experiments present: {', '.join(present)})"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Console script ``promptscale-figure``: Figure 1 or Figure 3 and tables, from the store or W&B."""
    parser = argparse.ArgumentParser(
        prog="promptscale-figure",
        description="Draw SuperGLUE score vs model size (Lester et al. 2021, Fig. 1, or the Fig. 3 "
        "ablations) from a results store or from W&B runs.",
    )
    parser.add_argument(
        "--figure",
        choices=("1", "3"),
        default="1",
        help="1: one line per method; 3: four ablation panels, one line per setting",
    )
    parser.add_argument(
        "--source",
        choices=("store", "wandb"),
        default="store",
        help="read rows from the results store (default) or pull runs with wandb.Api",
    )
    parser.add_argument("--results", default="outputs/results.jsonl", help="results store (JSON lines)")
    parser.add_argument("--entity", default=None, help="W&B entity (--source wandb)")
    parser.add_argument("--project", default="promptscale", help="W&B project (--source wandb)")
    parser.add_argument("--group", default=None, help="W&B group = experiment name (--source wandb)")
    parser.add_argument("--out", default="outputs/figures", help="output folder")
    parser.add_argument(
        "--experiment",
        default=None,
        help="Figure 1: only rows of this experiment; Figure 3: draw it as a lone panel "
        "unless it is one of the four ablations",
    )
    parser.add_argument(
        "--panel",
        action="append",
        metavar="LETTER=EXPERIMENT",
        help="Figure 3: draw panel LETTER (a-d) from another experiment (repeatable)",
    )
    parser.add_argument("--no-reference", action="store_true", help="omit the published curves")
    parser.add_argument("--title", default=None, help="figure title (default: names the scored tasks)")
    args = parser.parse_args(argv)
    try:
        if args.source == "wandb":
            from promptscale.wandb_report import fetch_rows

            where = f"W&B project {args.entity + '/' if args.entity else ''}{args.project}"
            rows = fetch_rows(args.project, entity=args.entity, group=args.group)
            if args.group:
                where += f", group {args.group}"
        else:
            where, rows = str(args.results), ResultsStore(args.results).rows()
        if args.figure == "3":
            panels = parse_panels(args.panel)
            if args.experiment is not None and args.experiment not in {p.experiment for p in panels}:
                panels = panels_for(args.experiment)  # e.g. the demo: one panel, a line per method
            paths = draw_figure3(
                _filter(rows, None, where), args.out, panels, reference=not args.no_reference, title=args.title
            )
        else:
            paths = draw_figure(
                _filter(rows, args.experiment, where), args.out, reference=not args.no_reference, title=args.title
            )
    except ValueError as e:
        print(f"promptscale-figure: error: {e}", file=sys.stderr)
        return 1
    for p in paths.values():
        print(p)
    return 0


def _tracker(config: Any):
    """The sweep's ``WandbSettings`` from its ``logger`` node, or ``None`` if it has none."""
    node = config.get("logger") if hasattr(config, "get") else None
    if node is None:
        return None
    from hydra.utils import instantiate

    try:
        return instantiate(node)
    except Exception:  # noqa: BLE001 - a summary run is a nicety, never a failure
        log.exception("W&B settings in `logger` could not be read; no summary run")
        return None


class FigureCallback(Callback):
    """Hydra callback: when a multirun ends, redraw the figure and log the W&B summary run.

    Figure 1 for sweeps whose rows carry no ``setting``; Figure 3 (every panel, from the whole
    store) for sweeps grouped by a setting (``figure.group_by``). With a tracker that is not
    disabled, a ``job_type="summary"`` W&B run logs the results table and score-vs-parameters
    charts (:mod:`promptscale.wandb_report`). A problem is logged loudly but never fails the
    sweep.

    Args:
        results: Results store path.
        out_dir: Output folder for the figure and tables.
        experiment: Only rows of this experiment (all rows if ``None``).

    The W&B settings are read from the sweep's ``logger`` config only when the sweep ends:
    taking them as a constructor argument would make Hydra resolve ``logger.*`` (and any
    ``${oc.env:...}`` secret in it) in place before it saves ``.hydra/config.yaml``.
    """

    def __init__(self, results: str, out_dir: str, experiment: str | None = None) -> None:
        self.results = str(results)
        self.out_dir = str(out_dir)
        self.experiment = experiment
        self.tracker = None

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        self.tracker = _tracker(config)
        try:
            rows = load_rows(self.results, self.experiment)
            if any(_setting(r) for r in rows):
                paths = draw_figure3(ResultsStore(self.results).rows(), self.out_dir, panels_for(self.experiment))
            else:
                paths = draw_figure(rows, self.out_dir)
        except Exception:  # noqa: BLE001 - the sweep's results are safe in the store
            log.exception(
                "FIGURE NOT DRAWN: drawing the figure from %s failed (the sweep's results are "
                "saved; rerun `promptscale-figure --results %s --out %s%s`)",
                self.results,
                self.results,
                self.out_dir,
                f" --experiment {self.experiment}" if self.experiment else "",
            )
            return
        log.info("Figure and tables written: %s", ", ".join(str(p) for p in paths.values()))
        if self.tracker is None or getattr(self.tracker, "mode", "disabled") == "disabled":
            return
        try:
            from promptscale.wandb_report import log_sweep_summary

            run_id = log_sweep_summary(
                rows,
                self.tracker,
                name=f"{self.experiment or 'sweep'}-summary",
                group=self.experiment,
                save_dir=self.out_dir,
            )
            log.info("W&B summary run %s logged (%s)", run_id, self.tracker.mode)
        except Exception:  # noqa: BLE001 - W&B must never fail a sweep
            log.exception("W&B SUMMARY NOT LOGGED for %s (the figure and results are saved)", self.results)


if __name__ == "__main__":
    raise SystemExit(main())
