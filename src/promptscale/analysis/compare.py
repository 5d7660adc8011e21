"""Paired comparisons of two methods (or two settings) at each model size, from per-example predictions.

For each size both methods were run at, the SuperGLUE score difference ``method - base`` (and each
task's) with a confidence interval from the two-level paired bootstrap of
:mod:`promptscale.analysis.bootstrap`: dev examples resampled once for both methods, seeds
resampled within each method. Reads the result rows under a protocol choice (as the figures do)
and each run's predictions file, refused when its SHA-256 is not the one its rows record.

"Gap closed at" is the smallest size from which on the interval's upper end is >= 0 at that size
and at every larger one: the method is no longer measurably behind the base (an interval that
contains 0, or lies above it once the method overtakes). A gap that closes and opens again is not
closed; where it never reopens this is the smallest size whose interval contains 0.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from promptscale.analysis.bootstrap import Interval, PairedDifference, paired_difference
from promptscale.analysis.units import TaskUnits, task_units
from promptscale.data.tasks import SCORED_TASKS
from promptscale.report.labels import fmt_params, method_label, setting_name, task_key
from promptscale.report.selection import INVALID, method_protocol, protocol_rows
from promptscale.store.predictions import read_predictions

SizeKey = tuple[str, str, int]
"""(family, model, total_params): one point on the x axis of one family's line."""


class ComparisonError(ValueError):
    """Two sides with nothing to compare; the message says what is missing (sizes, tasks, examples)."""


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a method, optionally one of its settings (``figure.group_by`` values).

    Written ``METHOD`` or ``METHOD@SETTING``, e.g. ``prompt_tuning@prompt_length=20``.
    """

    method: str
    setting: str | None = None

    @classmethod
    def of(cls, value: str | Side) -> Side:
        if isinstance(value, Side):
            return value
        method, sep, setting = str(value).partition("@")
        return cls(method, setting if sep else None)

    def __str__(self) -> str:
        return self.method + (f"@{self.setting}" if self.setting is not None else "")

    @property
    def label(self) -> str:
        return method_label(self.method) + (f" ({setting_name(self.setting)})" if self.setting else "")


def size_key(row: dict) -> SizeKey:
    return (str(row.get("family") or ""), str(row["model"]), int(row["total_params"]))


def size_text(key: SizeKey, family: bool = True) -> str:
    """``"tiny_s (181K)"``, with the family in front where there is one (and ``family``)."""
    name, model, params = key
    return f"{name + ' ' if name and family else ''}{model} ({fmt_params(params)})"


def side_runs(rows: list[dict], side: Side) -> dict[SizeKey, dict[Any, dict[str, dict]]]:
    """Per size, per seed, per scored task: the latest run's row of that task (it names the predictions).

    Args:
        rows: Rows under one protocol choice (``selection.protocol_rows``).
        side: The method (and setting).

    Raises:
        ComparisonError: No rows of the side, or several settings and none named.
    """
    mine = [r for r in rows if r["method"] == side.method]
    if side.setting is not None:
        mine = [r for r in mine if str(r.get("setting") or "") == side.setting]
    if not mine:
        present = sorted({str(Side(r["method"], r.get("setting") or None)) for r in rows})
        raise ComparisonError(f"no finished runs of {side} to compare; present: {', '.join(present) or 'none'}")
    settings = sorted({str(r.get("setting") or "") for r in mine})
    if side.setting is None and len(settings) > 1:
        raise ComparisonError(
            f"{side.method} has runs of {len(settings)} settings ({'; '.join(settings)}): name one as "
            f"{side.method}@SETTING"
        )
    latest: dict[tuple, dict] = {}
    for r in sorted(mine, key=lambda r: str(r.get("timestamp") or "")):  # stable: the later row wins
        if r["task"] in SCORED_TASKS and r["metric"] != INVALID:
            latest[(size_key(r), r["seed"], r["task"])] = r
    out: dict[SizeKey, dict[Any, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for (size, seed, task), r in latest.items():
        out[size][seed][task] = r
    return out


def common_sizes(a: dict, b: dict, base: Side, method: Side) -> list[SizeKey]:
    """The sizes both sides have, smallest first; sizes of one side only are named in a warning."""
    common = sorted(set(a) & set(b), key=lambda k: (k[0], k[2], k[1]))
    if not common:
        raise ComparisonError(
            f"{base} and {method} have no model size in common: {base} has "
            f"{', '.join(map(size_text, sorted(a, key=lambda k: k[2])))}; {method} has "
            f"{', '.join(map(size_text, sorted(b, key=lambda k: k[2])))}"
        )
    for side, own in ((base, a), (method, b)):
        alone = sorted(set(own) - set(common), key=lambda k: k[2])
        if alone:
            warnings.warn(f"only {side} has size(s) {', '.join(map(size_text, alone))}: not compared", stacklevel=3)
    return common


def common_tasks(runs: list[dict[Any, dict[str, dict]]], sizes: list[SizeKey], base: Side, method: Side) -> list[str]:
    """The scored tasks every seed of both sides has at every compared size (as Figure 1 scores them)."""
    have = {
        (str(side), size, seed): set(tasks)
        for side, side_run in zip((base, method), runs)
        for size in sizes
        for seed, tasks in side_run[size].items()
    }
    common = set.intersection(*have.values())
    if not common:
        raise ComparisonError(
            f"{base} and {method} have no SuperGLUE task in common at size(s) {', '.join(map(size_text, sizes))}: "
            + "; ".join(f"{s} {size_text(z)} seed {seed}: {', '.join(sorted(t))}" for (s, z, seed), t in have.items())
        )
    left = sorted(set().union(*have.values()) - common, key=task_key)
    if left:
        warnings.warn(f"comparing over the tasks every run has ({', '.join(sorted(common, key=task_key))}); "
                      f"left out: {', '.join(left)}", stacklevel=3)  # fmt: skip
    return sorted(common, key=task_key)


@dataclass
class UnitsLoader:
    """Reads each predictions file once (checking its hash) and checks it reproduces its rows' metrics."""

    store_dir: Path
    all_rows: list[dict]
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    recorded: dict[tuple, dict[str, float]] | None = None  # (run, config, task, protocol) -> {metric: value}

    def units(self, row: dict, protocol: str) -> TaskUnits:
        path = str(row.get("predictions") or "")
        if path not in self.frames:
            self.frames[path] = read_predictions(self.store_dir, row)
        units = task_units(self.frames[path], row["task"], protocol)
        self._check(row, protocol, units)
        return units

    def _check(self, row: dict, protocol: str, units: TaskUnits) -> None:
        if self.recorded is None:  # indexed once: the check runs per run x task x size
            self.recorded = defaultdict(dict)
            for r in self.all_rows:
                if r.get("value") is None:  # a failed run's row records no value
                    continue
                key = (r["run_id"], r["config_hash"], r["task"], r.get("protocol", "rank"))
                self.recorded[key][r["metric"]] = float(r["value"])
        recorded = self.recorded.get((row["run_id"], row["config_hash"], row["task"], protocol), {})
        for metric, value in units.metrics().items():
            if metric in recorded and abs(float(value) - recorded[metric]) > 1e-6:
                warnings.warn(
                    f"{self.store_dir / row['predictions']}: {row['task']} {metric} from the predictions is "
                    f"{float(value):.4f}, its rows record {recorded[metric]:.4f} (run {row['run_id']})",
                    stacklevel=4,
                )


def align(sides: list[list[dict[str, TaskUnits]]], size: SizeKey, names: tuple[Side, Side]) -> list[list[dict]]:
    """Every run restricted to the dev units all runs have, per task (a warning says what is left out).

    Raises:
        ComparisonError: A task with no unit common to all runs (the message gives each run's count).
    """
    runs = [(name, i, run) for name, side in zip(names, sides) for i, run in enumerate(side)]
    common: dict[str, list[str]] = {}
    for task in runs[0][2]:
        sets = [set(run[task].units) for *_, run in runs]
        common[task] = sorted(set.intersection(*sets))
        counts = "; ".join(f"{name} run {i + 1}: {len(run[task].units)}" for name, i, run in runs)
        if not common[task]:
            raise ComparisonError(f"no {task} dev example is common to every run at {size_text(size)} ({counts})")
        if any(len(s) != len(common[task]) for s in sets):
            extra = sorted(set().union(*sets) - set(common[task]))
            warnings.warn(
                f"{size_text(size)} {task}: paired on the {len(common[task])} dev examples every run has ({counts}); "
                f"left out: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}",
                stacklevel=3,
            )
    return [[{t: run[t].restrict(common[t]) for t in run} for run in side] for side in sides]


@dataclass
class Comparison:
    """A paired comparison at every common size.

    Attributes:
        base: The side subtracted.
        method: The other side (difference = method - base).
        protocol: The protocol choice the rows were read under.
        confidence: Interval coverage.
        n_boot: Bootstrap replicates.
        seed: Seed of the bootstrap draws.
        sizes: One row per size: ``family, model, total_params, n_seeds_base, n_seeds_method,
            base_mean, method_mean, diff, low, high, closed, tasks, units``.
        tasks: One row per size x task: ``family, model, total_params, task, diff, low, high, units``.
        results: The bootstrap results per size.
    """

    base: Side
    method: Side
    protocol: str
    confidence: float
    n_boot: int
    seed: int
    sizes: pd.DataFrame
    tasks: pd.DataFrame
    results: dict[SizeKey, PairedDifference]

    def closed_at(self) -> dict[str, SizeKey | None]:
        """Per family, the size the gap closed at (see the module docstring), ``None``: not closed."""
        return closed_at(self.sizes)

    def closed_text(self) -> str:
        """``"gap closed at: tiny_m (1.2M)"`` or ``"gap closed at: not closed"`` (per family if several)."""
        closed = self.closed_at()
        parts = [
            (f"{family}: " if len(closed) > 1 else "") + (size_text(key, family=False) if key else "not closed")
            for family, key in closed.items()
        ]
        return "gap closed at: " + "; ".join(parts)


def _interval(iv: Interval) -> dict[str, float]:
    return {"diff": iv.estimate, "low": iv.low, "high": iv.high}


def closed_at(sizes: pd.DataFrame) -> dict[str, SizeKey | None]:
    """Per family: the smallest size from which on every interval's upper end is >= 0, else ``None``."""
    out: dict[str, SizeKey | None] = {}
    for family, t in sizes.groupby("family", sort=False):
        t = t.sort_values("total_params")
        open_ = list(t["high"] < 0)
        after = len(open_) - open_[::-1].index(True) if True in open_ else 0  # first size after the last open one
        out[str(family)] = (str(family), *t.iloc[after][["model", "total_params"]]) if after < len(t) else None
    return out


def compare(
    rows: list[dict],
    store_dir: str | Path,
    base: str | Side,
    method: str | Side,
    *,
    protocol: str = "paper",
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Comparison:
    """``method - base`` at every size both have, with paired-bootstrap intervals.

    Args:
        rows: Result rows (e.g. one experiment's); only finished dev rows under ``protocol`` count.
        store_dir: The results store's folder (``ResultsStore.dir``), where the predictions live.
        base: The side subtracted, ``METHOD`` or ``METHOD@SETTING`` (e.g. ``model_tuning``).
        method: The other side (e.g. ``prompt_tuning``).
        protocol: ``paper``, ``generate`` or ``rank`` (each method's rows as Figure 1 reads them).
        n_boot: Bootstrap replicates.
        seed: Seed of the bootstrap draws (every size uses its own generator seeded with it).
        confidence: Interval coverage.

    Raises:
        ComparisonError: Nothing to compare; the message names the missing sizes, tasks or examples.
        PredictionsError: A run without a predictions file, or one whose hash differs from its rows'.
    """
    base, method = Side.of(base), Side.of(method)
    usable = protocol_rows(rows, protocol)
    runs = [side_runs(usable, side) for side in (base, method)]
    sizes = common_sizes(*runs, base, method)
    tasks = common_tasks(runs, sizes, base, method)
    loader = UnitsLoader(Path(store_dir), usable)
    size_records, task_records, results = [], [], {}
    for size in sizes:
        sides = []
        for side, side_run in zip((base, method), runs):
            seeds = sorted(side_run[size].items(), key=lambda kv: str(kv[0]))
            used = method_protocol(side.method, protocol)
            sides.append([{t: loader.units(run[t], used) for t in tasks} for _, run in seeds])
        a, b = align(sides, size, (base, method))
        result = paired_difference(a, b, n_boot=n_boot, seed=seed, confidence=confidence)
        results[size] = result
        units = {t: len(a[0][t].units) for t in tasks}
        common = dict(zip(("family", "model", "total_params"), size))
        size_records.append(
            common
            | {"n_seeds_base": len(a), "n_seeds_method": len(b)}
            | {"base_mean": result.base_mean, "method_mean": result.method_mean}
            | _interval(result.score)
            | {"tasks": ",".join(tasks), "units": " ".join(f"{t}:{n}" for t, n in units.items())}
        )
        task_records += [common | {"task": t} | _interval(iv) | {"units": units[t]} for t, iv in result.tasks.items()]
    frame = pd.DataFrame(size_records)
    frame.insert(frame.columns.get_loc("tasks"), "closed", frame["high"] >= 0)
    return Comparison(base, method, protocol, confidence, n_boot, seed, frame, pd.DataFrame(task_records), results)


def reference_gap(base: Side, method: Side) -> list[tuple[int, float]]:
    """Lester et al. 2021's gap (SPoT Table 4 means) between the two methods, where both are published."""
    from promptscale.reference import LESTER_FIG1

    if base.setting or method.setting or base.method not in LESTER_FIG1 or method.method not in LESTER_FIG1:
        return []
    a = {p.size: p for p in LESTER_FIG1[base.method]}
    return [(p.params, p.mean - a[p.size].mean) for p in LESTER_FIG1[method.method] if p.size in a]
