"""Per-task tables (markdown and LaTeX booktabs): one row per method x (setting x) model x protocol.

Columns: the tasks present, the SuperGLUE score, and "Invalid %" (the mean over the scored
tasks of the share of generated outputs that were no valid label) where the rows carry it.
When the rows hold both protocols, each cell's ``generate`` and ``rank`` rows sit on adjacent
lines, so the cost of the paper's protocol reads off one table.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from promptscale.data.tasks import TASKS
from promptscale.report.labels import fmt_params, method_key, method_label, setting_key, task_key
from promptscale.report.scores import invalid_table, score_description, score_table, task_table
from promptscale.report.selection import PROTOCOLS

Cell = tuple[float, float] | None
"""(mean, std) over seeds, or ``None`` where the line has no value."""


@dataclass
class Line:
    """One table line: a cell (method, model, total_params, setting) under one protocol."""

    key: tuple  # (method, model, total_params, setting, protocol)
    tasks: dict[str, Cell] = field(default_factory=dict)
    score: Cell = None
    invalid: Cell = None
    n_seeds: int = 0

    def labels(self, by_setting: bool) -> list[str]:
        method, model, params, setting, protocol = self.key
        head = [method_label(method), *([setting] if by_setting else [])]
        return head + [str(model), fmt_params(params), str(self.n_seeds), protocol]

    def sort_key(self) -> tuple:
        method, model, params, setting, protocol = self.key
        order = PROTOCOLS.index(protocol) if protocol in PROTOCOLS else len(PROTOCOLS)
        return (method_key(method), setting_key(setting), params, str(model), order)


@dataclass
class TaskGrid:
    """What both renderings print: the task columns, the lines, and what each score averages."""

    tasks: list[str]
    lines: list[Line]
    descriptions: dict[str, str]  # protocol choice -> which tasks its SuperGLUE score averages

    @property
    def has_invalid(self) -> bool:
        return any(line.invalid for line in self.lines)

    def values(self, line: Line) -> list[Cell]:
        """The value cells of a line: tasks, the SuperGLUE score, the invalid % (if any line has one)."""
        return [line.tasks.get(t) for t in self.tasks] + [line.score] + ([line.invalid] if self.has_invalid else [])


def _fmt(cell: Cell) -> str:
    return f"{cell[0]:.1f} ± {cell[1]:.1f}" if cell else ""


def _protocol_lines(rows: list[dict], protocol: str, by_setting: bool) -> tuple[dict[tuple, Line], str]:
    """One protocol choice's lines by key, and which tasks its score averages."""
    scores = score_table(rows, by_setting, protocol)

    def key(r) -> tuple:
        return (r.method, r.model, r.total_params, r.setting if by_setting else "")

    try:
        bad = {key(r): (r.mean, r.std) for r in invalid_table(rows, by_setting, scores.attrs["tasks"]).itertuples()}
    except ValueError:  # no generate rows with invalid rates (e.g. an old, rank-only store): no column
        bad = {}
    lines: dict[tuple, Line] = {}
    # Cells with task rows but no SuperGLUE score (e.g. only AX tasks) still get a line.
    for r in task_table(rows, by_setting, protocol).itertuples():
        line = lines.setdefault((*key(r), r.protocol), Line((*key(r), r.protocol)))
        line.tasks[r.task] = (r.mean, r.std)
        line.n_seeds = max(line.n_seeds, int(r.n_seeds))
    for r in scores.itertuples():
        line = lines.setdefault((*key(r), r.protocol), Line((*key(r), r.protocol)))
        line.score, line.n_seeds = (r.mean, r.std), int(r.n_seeds)
        line.invalid = bad.get(key(r)) if r.protocol == "generate" else None
    return lines, score_description(scores)


def task_grid(rows: list[dict], protocols: Sequence[str] = ("paper",), by_setting: bool = False) -> TaskGrid:
    """The per-task table's content under each protocol choice in ``protocols``, merged and sorted.

    Raises:
        ValueError: No usable rows under one of the protocols.
    """
    lines: dict[tuple, Line] = {}
    descriptions = {}
    for protocol in protocols:
        found, descriptions[protocol] = _protocol_lines(rows, protocol, by_setting)
        lines.update(found)  # "paper" and "generate" share their generate lines
    tasks = sorted({t for line in lines.values() for t in line.tasks}, key=task_key)
    return TaskGrid(tasks, sorted(lines.values(), key=Line.sort_key), descriptions)


def _caption(grid: TaskGrid) -> str:
    """Which protocol(s) and tasks the SuperGLUE score column means."""
    texts = set(grid.descriptions.values())
    if len(texts) == 1:
        return f"SuperGLUE score {texts.pop()}"
    return "SuperGLUE score " + "; ".join(f"{p}: {d}" for p, d in grid.descriptions.items())


_PROTOCOL_NOTE = (
    "Protocol: generate = greedy generation with T5's postprocessing, an invalid output counts as wrong "
    "(Lester et al. 2021); rank = rank classification."
)
_INVALID_NOTE = "Invalid %: generated outputs that were no valid label, mean over the scored tasks."


def _header(grid: TaskGrid, by_setting: bool, task_names: list[str], score: str) -> list[str]:
    head = ["Method", *(["Setting"] if by_setting else []), "Model", "Params", "Seeds", "Protocol"]
    return head + task_names + [score] + (["Invalid %"] if grid.has_invalid else [])


def tasks_markdown(
    rows: list[dict],
    protocols: Sequence[str] = ("paper",),
    by_setting: bool = False,
    title: str = "Per-task SuperGLUE dev scores",
) -> str:
    """Markdown table: one line per method x (setting x) model x protocol; tasks, score, invalid %.

    Args:
        rows: Result rows.
        protocols: Protocol choices to show (e.g. ``("generate", "rank")`` for both, adjacent).
        by_setting: Add a ``Setting`` column (Figure 3).
        title: Heading.
    """
    grid = task_grid(rows, protocols, by_setting)
    header = _header(grid, by_setting, grid.tasks, "SuperGLUE score")
    n_values = len(grid.tasks) + 1 + grid.has_invalid
    notes = f"{_PROTOCOL_NOTE} {_INVALID_NOTE}" if grid.has_invalid else _PROTOCOL_NOTE
    lines = [
        f"# {title}",
        "",
        f"Cells: mean ± std over seeds (percent). {_caption(grid)}. {notes}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * (len(header) - n_values) + ["---:"] * n_values) + "|",
    ]
    for line in grid.lines:
        lines.append("| " + " | ".join(line.labels(by_setting) + [_fmt(v) for v in grid.values(line)]) + " |")
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
    protocols: Sequence[str] = ("paper",),
    by_setting: bool = False,
    caption: str | None = None,
    label: str = "tab:tasks",
) -> str:
    """The per-task table as a LaTeX ``booktabs`` table (``\\usepackage{booktabs}``).

    Same lines and cells as :func:`tasks_markdown`; mean $\\pm$ std over seeds in percent.
    """
    grid = task_grid(rows, protocols, by_setting)
    names = [TASKS[t].folder if t in TASKS else t for t in grid.tasks]
    header = _header(grid, by_setting, names, "SuperGLUE")
    n_values = len(grid.tasks) + 1 + grid.has_invalid
    if caption is None:
        caption = (
            f"SuperGLUE dev scores per task, mean $\\pm$ std over seeds (percent). "
            f"{latex_escape(_caption(grid))}. {latex_escape(_PROTOCOL_NOTE)}"
        )
    # Label columns left-aligned, except Seeds (a count); values right-aligned.
    align = "l" * (len(header) - n_values - 2) + "rl" + "r" * n_values
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{" + align + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    for line in grid.lines:
        cells = [latex_escape(c) for c in line.labels(by_setting)]
        cells += [f"{v[0]:.1f} $\\pm$ {v[1]:.1f}" if v else "--" for v in grid.values(line)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}", rf"\label{{{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def tasks_frame(rows: list[dict], protocols: Sequence[str] = ("paper",), by_setting: bool = False) -> pd.DataFrame:
    """The long per-task table (:func:`~promptscale.report.scores.task_table`) of every protocol shown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the score tables issued them already
        frames = [task_table(rows, by_setting, p) for p in protocols]
    return pd.concat(frames, ignore_index=True).drop_duplicates(ignore_index=True)
