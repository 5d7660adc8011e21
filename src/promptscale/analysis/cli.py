"""``promptscale-results``: list, aggregate, compare and export what the results store holds.

::

    promptscale-results list    [--experiment E] [--method M] [--size S] [--task T] [--protocol P] [--status S] [--rows]
    promptscale-results scores  [--experiment E] [--protocol paper|generate|rank] [--by-setting] [--tasks] [--seeds]
    promptscale-results fits    [--experiment E] [--protocol P] [--by-setting]
    promptscale-results missing --experiment E [OVERRIDE ...]      e.g. seed=0 task=cb,rte
    promptscale-results compare BASE METHOD [--experiment E] [--protocol P] [--bootstrap N] [--seed S]
                                [--confidence C] [--fit]          e.g. model_tuning prompt_tuning
    promptscale-results export  rows|runs|scores|tasks|fits|compare --out FILE [--format F] [...]

Every command takes ``--results`` (default ``outputs/results.jsonl``) and prints a table, or
writes it with ``--out FILE`` / ``--format text|csv|parquet|markdown|latex`` (from the suffix by
default). Rows are read only through ``ResultsStore``; aggregation is the figures' own
(``report.scores``). Exit codes: 0 done; 1 a data problem (no rows match, nothing to compare, a
refused predictions file), named on stderr; 2 a usage error (bad arguments, unknown experiment).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from promptscale.analysis.missing import UnknownExperiment, missing_configs
from promptscale.analysis.tables import FORMATS, ci_caption, ci_markdown, ci_table, export
from promptscale.report.labels import task_key
from promptscale.report.selection import PROTOCOL_CHOICES, check_protocol, row_protocol
from promptscale.store.results import ResultsStore

RUN_COLUMNS = ["run_id", "experiment", "method", "model", "size", "seed", "setting", "status", "tasks", "protocols",
               "config_hash", "timestamp", "predictions"]  # fmt: skip
EXPORTS = ("rows", "runs", "scores", "tasks", "fits", "compare")


class UsageError(ValueError):
    """A command line that cannot mean anything (exit code 2)."""


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", help="only rows of this experiment")
    parser.add_argument("--method", action="append", help="only these methods (repeatable)")
    parser.add_argument("--size", action="append", help="only these models, by model or size name (repeatable)")
    parser.add_argument("--task", action="append", help="only these tasks (repeatable)")
    parser.add_argument("--status", choices=("ok", "failed"), help="only finished (ok) or failed runs")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptscale-results",
        description="List, aggregate, compare and export what the results store holds (exit codes: 0 done, "
        "1 a data problem, 2 a usage error).",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--results", default="outputs/results.jsonl", help="results store (JSON lines export path)")
    common.add_argument("--out", help="write the table to FILE (format from its suffix: .csv .parquet .md .tex)")
    common.add_argument("--format", choices=("text", "csv", "parquet", "markdown", "latex"), help="output format")
    common.add_argument("--protocol", default=None, help=f"{', '.join(PROTOCOL_CHOICES)} (scores: default paper)")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", parents=[common], help="runs (or rows) matching filters")
    _filters(listing)
    listing.add_argument("--rows", action="store_true", help="one line per row, not per run")
    scores = sub.add_parser("scores", parents=[common], help="SuperGLUE scores as Figure 1 aggregates them")
    fits = sub.add_parser("fits", parents=[common], help="scaling fit per line of Figure 1")
    for p in (scores, fits):
        _filters(p)
        p.add_argument("--by-setting", action="store_true", help="a line per setting (Figure 3)")
    scores.add_argument("--tasks", action="store_true", help="per-task scores instead")
    scores.add_argument("--seeds", action="store_true", help="each seed's score instead of mean and std")
    missing = sub.add_parser("missing", parents=[common], help="configs an experiment's sweep expects, not finished")
    missing.add_argument("--experiment", required=True, help="conf/experiment/NAME.yaml")
    missing.add_argument("overrides", nargs="*", help="sweep overrides as on the train command (seed=0 task=cb,rte)")
    compare = sub.add_parser("compare", parents=[common], help="paired-bootstrap CI of METHOD - BASE per size")
    _compare_arguments(compare)
    exporter = sub.add_parser("export", parents=[common], help="write a table to a file")
    exporter.add_argument("what", choices=EXPORTS)
    _filters(exporter)
    exporter.add_argument("--by-setting", action="store_true", help="scores/tasks/fits: a line per setting")
    _compare_arguments(exporter, positional=False)
    return parser


def _compare_arguments(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        parser.add_argument("base", help="METHOD or METHOD@SETTING subtracted, e.g. model_tuning")
        parser.add_argument("against", help="METHOD or METHOD@SETTING, e.g. prompt_tuning")
        parser.add_argument("--experiment", help="only rows of this experiment")
    else:
        parser.add_argument("--base", default="model_tuning", help="compare: the side subtracted")
        parser.add_argument("--against", default="prompt_tuning", help="compare: the other side")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval coverage (default 0.95)")
    parser.add_argument("--fit", action="store_true", help="also the fitted crossing of the two scaling curves")


def select(rows: list[dict], args: argparse.Namespace) -> list[dict]:
    """The rows passing every filter given; the filter that leaves none is named with the values present."""
    tests = [
        ("experiment", [args.experiment] if getattr(args, "experiment", None) else None, lambda r: r.get("experiment")),
        ("method", getattr(args, "method", None), lambda r: r.get("method")),
        ("size", getattr(args, "size", None), lambda r: {r.get("model"), r.get("size")}),
        ("task", getattr(args, "task", None), lambda r: r.get("task")),
        ("status", [args.status] if getattr(args, "status", None) else None, lambda r: r.get("status")),
        ("protocol", [args.protocol] if args.command == "list" and args.protocol else None, row_protocol),
    ]
    if not rows:
        raise ValueError(f"no result rows in {args.results}; run promptscale-train first")
    for name, wanted, key in tests:
        if not wanted:
            continue
        kept = [r for r in rows if (key(r) & set(wanted) if isinstance(key(r), set) else key(r) in wanted)]
        if not kept:
            present = sorted({str(v) for r in rows for v in (key(r) if isinstance(key(r), set) else [key(r)]) if v})
            raise ValueError(f"no rows with --{name} {' '.join(wanted)} (present: {', '.join(present)})")
        rows = kept
    return rows


def runs_frame(rows: list[dict]) -> pd.DataFrame:
    """One line per run: its identity, tasks, protocols and whether it has a predictions file."""
    runs: dict[tuple, dict] = {}
    for r in rows:
        run = runs.setdefault((r["run_id"], r["config_hash"]), {c: r.get(c) for c in RUN_COLUMNS} | {"tasks": []})
        run["tasks"] += [r["task"]] if r["task"] not in run["tasks"] else []
        run["protocols"] = ",".join(sorted({*(run["protocols"] or "").split(","), row_protocol(r)} - {""}))
        run["predictions"] = "yes" if r.get("predictions") else "no"
    frame = pd.DataFrame(list(runs.values()), columns=RUN_COLUMNS)
    frame["tasks"] = [",".join(sorted(tasks, key=task_key)) for tasks in frame["tasks"]]
    return frame


def _scores(rows: list[dict], args: argparse.Namespace) -> pd.DataFrame:
    from promptscale.report.scores import score_table, seed_score_table, task_table

    protocol = args.protocol or "paper"
    by_setting = getattr(args, "by_setting", False)
    if getattr(args, "seeds", False):
        return seed_score_table(rows, by_setting, protocol)
    if getattr(args, "tasks", False) or args.command == "export" and args.what == "tasks":
        return task_table(rows, by_setting, protocol)
    return score_table(rows, by_setting, protocol)


def _fits(rows: list[dict], args: argparse.Namespace) -> pd.DataFrame:
    from promptscale.analysis.fits import fit_lines, fit_table

    return fit_table(fit_lines(rows, args.protocol or "paper", getattr(args, "by_setting", False)))


def _compare(rows: list[dict], args: argparse.Namespace):
    from promptscale.analysis.fits import compare_and_fit

    options = {"protocol": args.protocol or "paper", "seed": args.seed, "confidence": args.confidence}
    result, crossings, why = compare_and_fit(
        rows, ResultsStore(args.results).dir, args.base, args.against, fit=args.fit, n_boot=args.bootstrap, **options
    )
    if why:  # fewer than two sizes: the CI table stands alone
        print(f"promptscale-results: no fitted crossing: {why}", file=sys.stderr)
    return result, crossings


def _emit(frame: pd.DataFrame, args: argparse.Namespace, text: str | None = None, caption: str = "") -> None:
    """Prints or writes a table: ``text`` is the human rendering where there is a richer one."""
    fmt = args.format or (FORMATS.get(Path(args.out).suffix) if args.out else None) or "text"
    if fmt == "text":
        out = text if text is not None else (frame.to_string(index=False) + "\n" if len(frame) else "(none)\n")
        if args.out:
            Path(args.out).write_text(out, encoding="utf-8")
        else:
            sys.stdout.write(out)
    else:
        written = export(frame, fmt, args.out, caption)
        if written is not None:
            sys.stdout.write(written)
    if args.out:
        print(args.out)


def _missing(rows: list[dict], args: argparse.Namespace) -> None:
    frame = missing_configs(rows, args.experiment, args.overrides)
    summary = (
        f"{len(frame)} of {frame.attrs['expected']} configs of experiment {args.experiment} not finished "
        f"({frame.attrs['cells']} jobs in the sweep; jobs sharing a config, as multi-task ones over tasks, count once)"
    )
    _emit(frame, args, (frame.to_string(index=False) + "\n" if len(frame) else "") + summary + "\n")


def _comparison(rows: list[dict], args: argparse.Namespace) -> None:
    """The CI table; as data (csv, parquet) the full per-size frame, else the readable table."""
    result, crossings = _compare(rows, args)
    fmt = args.format or (FORMATS.get(Path(args.out).suffix) if args.out else None)
    frame = result.sizes if fmt in ("csv", "parquet") else ci_table(result)
    _emit(frame, args, ci_markdown(result, crossings), ci_caption(result, crossings))


TABLES = {
    "list": lambda rows, args: pd.DataFrame(rows) if args.rows else runs_frame(rows),
    "rows": lambda rows, args: pd.DataFrame(rows),
    "runs": lambda rows, args: runs_frame(rows),
    "scores": _scores,
    "tasks": _scores,
    "fits": _fits,
}
"""Command (or export target) -> its table from the selected rows."""


def run(args: argparse.Namespace) -> None:
    """Runs one command; raises ``UsageError`` / ``ValueError`` (see :func:`main`)."""
    if args.protocol is not None:
        try:
            check_protocol(args.protocol)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if getattr(args, "bootstrap", 1) < 1 or not 0 < getattr(args, "confidence", 0.5) < 1:
        raise UsageError(f"need --bootstrap >= 1 and 0 < --confidence < 1, got {args.bootstrap} and {args.confidence}")
    rows = ResultsStore(args.results).rows()
    if args.command == "missing":
        return _missing(rows, args)
    rows = select(rows, args)
    what = args.what if args.command == "export" else args.command
    if what == "compare":
        return _comparison(rows, args)
    _emit(TABLES[what](rows, args), args)


def main(argv: list[str] | None = None) -> int:
    """Console script ``promptscale-results``; returns the exit code (see the module docstring)."""
    args = _parser().parse_args(argv)  # exits 2 on bad arguments
    try:
        run(args)
    except (UsageError, UnknownExperiment) as err:
        print(f"promptscale-results: usage error: {err}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, OSError) as err:
        print(f"promptscale-results: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
