"""Results store -> Lester et al. 2021 Figure 1 (SuperGLUE score vs model size) and tables.

Reads only result rows (see :mod:`promptscale.results`). The score of one run is the mean over
SuperGLUE tasks of each task's mean metric (CB, MultiRC and ReCoRD average their two metrics
first; AX-b / AX-g are not scored), in percent. Lines show the mean over seeds, bands +-1
standard deviation (population std, ``ddof=0``, so a single seed has std 0).

Command line::

    promptscale-figure [--results outputs/results.jsonl] [--out outputs/figures]
                       [--experiment NAME] [--no-reference]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import warnings
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from matplotlib.figure import Figure  # no pyplot: never touches the global backend (Agg)
from matplotlib.ticker import LogLocator, NullFormatter, NullLocator

from promptscale.data.tasks import SCORED_TASKS, TASKS
from promptscale.reference import GPT3_FEW_SHOT, LESTER_FIG1, T5_PARAMS
from promptscale.results import ResultsStore

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

FIGURE_FILES = ("figure1.png", "figure1.pdf", "figure1.csv", "tasks.md", "tasks.csv")


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


def _seed_task_scores(rows: list[dict]) -> dict[tuple, dict[str, float]]:
    """Task scores per (method, model, total_params, seed): ``{cell_seed: {task: score}}``.

    Uses rows with status ``"ok"`` and split ``"val"``. A task's score is the mean of its
    metrics listed in its ``TaskSpec`` (all metrics present for an unknown task). When one
    measurement appears more than once (a rerun), the latest row by timestamp wins.
    """
    latest: dict[tuple, dict] = {}
    dup = 0
    ok = [r for r in rows if r.get("status") == "ok" and r.get("split") == "val"]
    # Stable sort: equal timestamps keep file order, so the later-appended row wins.
    for r in sorted(ok, key=lambda r: str(r.get("timestamp") or "")):
        key = (r["method"], r["model"], r["total_params"], r["seed"], r["task"], r["metric"])
        dup += key in latest
        latest[key] = r
    if dup:
        warnings.warn(
            f"{dup} measurement(s) appear in more than one row (same method, model, seed, task, "
            "metric); keeping the latest. Filter by experiment if these are different runs.",
            stacklevel=3,
        )
    metrics: dict[tuple, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for (method, model, params, seed, task, metric), r in latest.items():
        metrics[(method, model, params, seed)][task][metric] = float(r["value"])
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
                    f"{group[0]}/{group[1]} seed {group[3]}: task {task} lacks metric(s) "
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


def score_table(rows: list[dict]) -> pd.DataFrame:
    """SuperGLUE score per (method, model, total_params): mean and std over seeds.

    Each seed's score is the mean over the scored SuperGLUE tasks (AX-b / AX-g excluded) of
    the task scores. If runs cover different task sets, every run is scored over the tasks
    common to all runs (with a warning), so the lines are comparable.

    Args:
        rows: Result rows (``ResultsStore.rows()``); only status ``"ok"``, split ``"val"``
            rows are used.

    Returns:
        Columns ``method, model, total_params, mean, std, n_seeds, seeds, tasks`` (``tasks``
        comma-joined), sorted by method then size. ``attrs["tasks"]``: the scored tasks;
        ``attrs["restricted"]``: whether runs had more tasks than were scored.

    Raises:
        ValueError: No usable rows, or no scored task common to all runs.
    """
    per_seed = _seed_task_scores(rows)
    scored = {g: {t: s for t, s in sc.items() if t in SCORED_TASKS} for g, sc in per_seed.items()}
    scored = {g: sc for g, sc in scored.items() if sc}
    if not scored:
        raise ValueError(
            "no status 'ok', split 'val' rows of a scored SuperGLUE task "
            f"({', '.join(SCORED_TASKS)}) to plot"
        )
    common = set.intersection(*(set(sc) for sc in scored.values()))
    union = set().union(*(set(sc) for sc in scored.values()))
    if not common:
        raise ValueError(
            "no SuperGLUE task is common to all (method, model, seed) runs; filter the rows "
            f"(e.g. --experiment). Tasks per run: "
            + "; ".join(
                f"{g[0]}/{g[1]}/seed {g[3]}: {','.join(sorted(sc))}" for g, sc in scored.items()
            )
        )
    tasks = sorted(common, key=_task_key)
    restricted = common != union
    if restricted:
        extra = {
            f"{g[0]}/{g[1]}": sorted(set(sc) - common, key=_task_key)
            for g, sc in scored.items()
            if set(sc) - common
        }
        warnings.warn(
            f"runs cover different SuperGLUE tasks; scoring every run over the {len(tasks)} "
            f"task(s) common to all ({', '.join(tasks)}). Left out: "
            + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(extra.items())),
            stacklevel=2,
        )
    cells: dict[tuple, list[tuple[Any, float]]] = defaultdict(list)
    for (method, model, params, seed), sc in scored.items():
        cells[(method, model, params)].append((seed, sum(sc[t] for t in tasks) / len(tasks)))
    records = []
    for (method, model, params), seed_scores in cells.items():
        seed_scores.sort(key=lambda x: _seed_sort_key(x[0]))
        mean, std = _mean_std([s for _, s in seed_scores])
        records.append({
            "method": method,
            "model": model,
            "total_params": params,
            "mean": mean,
            "std": std,
            "n_seeds": len(seed_scores),
            "seeds": ",".join(str(s) for s, _ in seed_scores),
            "tasks": ",".join(tasks),
        })
    records.sort(key=lambda r: (_method_key(r["method"]), r["total_params"], str(r["model"])))
    columns = ["method", "model", "total_params", "mean", "std", "n_seeds", "seeds", "tasks"]
    df = pd.DataFrame.from_records(records, columns=columns)
    df.attrs["tasks"] = tasks
    df.attrs["restricted"] = restricted
    return df


def task_table(rows: list[dict]) -> pd.DataFrame:
    """Task score per (method, model, total_params, task): mean and std over seeds.

    Includes every task present (also AX-b / AX-g and tasks outside the score).

    Returns:
        Columns ``method, model, total_params, task, mean, std, n_seeds``, sorted by method,
        size and task order.
    """
    cells: dict[tuple, list[float]] = defaultdict(list)
    for (method, model, params, _seed), sc in _seed_task_scores(rows).items():
        for task, s in sc.items():
            cells[(method, model, params, task)].append(s)
    records = []
    for (method, model, params, task), xs in cells.items():
        mean, std = _mean_std(xs)
        records.append({"method": method, "model": model, "total_params": params, "task": task,
                        "mean": mean, "std": std, "n_seeds": len(xs)})
    records.sort(key=lambda r: (
        _method_key(r["method"]), r["total_params"], str(r["model"]), _task_key(r["task"])
    ))
    columns = ["method", "model", "total_params", "task", "mean", "std", "n_seeds"]
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


def tasks_markdown(rows: list[dict], scores: pd.DataFrame | None = None) -> str:
    """Markdown table: one row per method x model, columns tasks + SuperGLUE score."""
    scores = score_table(rows) if scores is None else scores
    per_task = task_table(rows)
    tasks = sorted(per_task["task"].unique(), key=_task_key)
    cells = {(r.method, r.model, r.total_params, r.task): _fmt(r.mean, r.std) for r in per_task.itertuples()}
    header = ["Method", "Model", "Params", "Seeds", *tasks, "SuperGLUE score"]
    lines = [
        "# Per-task SuperGLUE dev scores",
        "",
        f"Cells: mean ± std over seeds (percent). SuperGLUE score {score_description(scores)}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 4 + ["---:"] * (len(tasks) + 1)) + "|",
    ]
    for r in scores.itertuples():
        row = [method_name(r.method), str(r.model), _fmt_params(r.total_params), str(r.n_seeds)]
        row += [cells.get((r.method, r.model, r.total_params, t), "") for t in tasks]
        row.append(_fmt(r.mean, r.std))
        lines.append("| " + " | ".join(row) + " |")
    # Cells with task rows but no SuperGLUE score (e.g. only AX tasks) still get a row.
    scored_cells = {(r.method, r.model, r.total_params) for r in scores.itertuples()}
    for key in dict.fromkeys((r.method, r.model, r.total_params) for r in per_task.itertuples()):
        if key not in scored_cells:
            n = int(per_task[(per_task.method == key[0]) & (per_task.model == key[1])]["n_seeds"].max())
            row = [method_name(key[0]), str(key[1]), _fmt_params(key[2]), str(n)]
            row += [cells.get((*key, t), "") for t in tasks] + [""]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- figure


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
                [p.params for p in points], [p.mean for p in points], "--o",
                color=method_color(method), lw=1.4, ms=4, mfc="white", alpha=0.8, zorder=1,
                label=f"{method_name(method)} (Lester et al. 2021, ref.)",
            )
        ax.plot(
            [p.params for p in GPT3_FEW_SHOT], [p.mean for p in GPT3_FEW_SHOT], ":s",
            color="0.45", lw=1.6, ms=3.5, zorder=1,
            label="GPT-3 few-shot prompt design (Brown et al. 2020, ref.)",
        )

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10))))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("Model parameters (top: T5 1.1 size)", fontsize=fs + 1)
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

    n_seeds = sorted(set(table["n_seeds"]))
    seeds = f"{n_seeds[0]}" if len(n_seeds) == 1 else f"{n_seeds[0]}-{n_seeds[-1]}"
    if title is None:
        title = f"SuperGLUE dev score vs. model size {score_description(table)}"
    ax.set_title(title, fontsize=fs + 2, pad=10)
    leg = ax.legend(
        loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=fs - 2, frameon=False,
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
    ``tasks.md`` (per-task markdown table) and ``tasks.csv`` (the :func:`task_table`).

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
    paths = {name: out / name for name in FIGURE_FILES}
    fig.savefig(paths["figure1.png"], dpi=200, bbox_inches="tight")
    fig.savefig(paths["figure1.pdf"], bbox_inches="tight")
    scores.to_csv(paths["figure1.csv"], index=False)
    paths["tasks.md"].write_text(md, encoding="utf-8")
    per_task.to_csv(paths["tasks.csv"], index=False)
    return paths


def load_rows(results: str | Path, experiment: str | None = None) -> list[dict]:
    """Rows of a results store, optionally of one experiment.

    Raises:
        ValueError: The store holds no rows (for that experiment).
    """
    rows = ResultsStore(results).rows()
    if not rows:
        raise ValueError(f"no result rows in {results}; run promptscale-train first")
    if experiment is not None:
        present = sorted({str(r.get("experiment")) for r in rows})
        rows = [r for r in rows if r.get("experiment") == experiment]
        if not rows:
            raise ValueError(
                f"no result rows of experiment {experiment!r} in {results} "
                f"(experiments present: {', '.join(present)})"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Console script ``promptscale-figure``: draw Figure 1 and tables from a results store."""
    parser = argparse.ArgumentParser(
        prog="promptscale-figure",
        description="Draw SuperGLUE score vs model size (Lester et al. 2021, Fig. 1) from a results store.",
    )
    parser.add_argument("--results", default="outputs/results.jsonl", help="results store (JSON lines)")
    parser.add_argument("--out", default="outputs/figures", help="output folder")
    parser.add_argument("--experiment", default=None, help="only rows of this experiment")
    parser.add_argument("--no-reference", action="store_true", help="omit the published curves")
    parser.add_argument("--title", default=None, help="figure title (default: names the scored tasks)")
    args = parser.parse_args(argv)
    try:
        rows = load_rows(args.results, args.experiment)
        paths = draw_figure(rows, args.out, reference=not args.no_reference, title=args.title)
    except ValueError as e:
        print(f"promptscale-figure: error: {e}", file=sys.stderr)
        return 1
    for p in paths.values():
        print(p)
    return 0


class FigureCallback(Callback):
    """Hydra callback: redraw the figure from the results store when a multirun ends.

    A drawing problem is logged loudly but never fails the sweep.

    Args:
        results: Results store path.
        out_dir: Output folder for the figure and tables.
        experiment: Only rows of this experiment (all rows if ``None``).
    """

    def __init__(self, results: str, out_dir: str, experiment: str | None = None) -> None:
        self.results = str(results)
        self.out_dir = str(out_dir)
        self.experiment = experiment

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        try:
            rows = load_rows(self.results, self.experiment)
            paths = draw_figure(rows, self.out_dir)
        except Exception:  # noqa: BLE001 - the sweep's results are safe in the store
            log.exception(
                "FIGURE NOT DRAWN: drawing the figure from %s failed (the sweep's results are "
                "saved; rerun `promptscale-figure --results %s --out %s%s`)",
                self.results, self.results, self.out_dir,
                f" --experiment {self.experiment}" if self.experiment else "",
            )
            return
        log.info("Figure and tables written: %s", ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    raise SystemExit(main())
