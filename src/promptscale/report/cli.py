"""``promptscale-figure``: draw a registered figure and its tables from the results store or W&B.

::

    promptscale-figure [--figure figure1|figure3|gap|NAME] [--protocol paper|generate|rank] [--invalid]
                       [--results outputs/results.jsonl] [--out outputs/figures]
                       [--experiment NAME] [--panel a=EXPERIMENT] [--no-reference] [--title T] [--fit]
                       [--compare BASE METHOD] [--bootstrap N] [--seed S] [--confidence C]
    promptscale-figure --source wandb --entity E --project P [--group G] [--figure NAME] --out DIR
    promptscale-figure --list

``--figure`` takes any name of :data:`promptscale.report.registry.FIGURES` (and the old ``1``,
``3``). Exit code 0 on success, 1 with a one-line error on bad input or missing rows.
"""

from __future__ import annotations

import argparse
import sys

from promptscale.report.registry import FIGURE_ALIASES, FIGURES, DrawOptions, draw
from promptscale.report.selection import PROTOCOL_CHOICES, check_protocol, filter_experiment
from promptscale.store.results import ResultsStore


def _parser() -> argparse.ArgumentParser:
    """Built per call, so the help lists figures registered after import."""
    aliases = ", ".join(f"{a}={n}" for a, n in FIGURE_ALIASES.items())
    parser = argparse.ArgumentParser(
        prog="promptscale-figure",
        description="Draw a registered figure (Lester et al. 2021 Fig. 1, the Fig. 3 ablations, ...) and its "
        "per-task tables from a results store or from W&B runs.",
    )
    parser.add_argument(
        "--figure", default="figure1", metavar="NAME", help=f"{', '.join(FIGURES)} (old names: {aliases})"
    )
    parser.add_argument("--list", action="store_true", help="print the registered figures and exit")
    parser.add_argument(
        "--protocol",
        default="paper",
        metavar="{" + ",".join(PROTOCOL_CHOICES) + "}",
        help="paper (default) = generation (invalid output = wrong) for every method but "
        "prompt design, which ranks choices as GPT-3 did; old stores hold only rank rows",
    )
    parser.add_argument(
        "--invalid",
        action="store_true",
        help="add the invalid-output panel: the %% of generated outputs that are no valid label",
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
        help="figure1: only rows of this experiment; figure3: draw it as a lone panel unless it is an ablation",
    )
    parser.add_argument(
        "--panel",
        action="append",
        metavar="LETTER=EXPERIMENT",
        help="figure3: draw panel LETTER (a-d) from another experiment (repeatable)",
    )
    parser.add_argument("--no-reference", action="store_true", help="omit the published curves")
    parser.add_argument("--title", default=None, help="figure title (default: names the scored tasks and protocol)")
    parser.add_argument(
        "--fit", action="store_true", help="figure1: overlay scaling fits and bands; gap: add the fitted crossing"
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        default=("model_tuning", "prompt_tuning"),
        metavar=("BASE", "METHOD"),
        help="gap: draw METHOD - BASE (METHOD or METHOD@SETTING; default model_tuning prompt_tuning)",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="gap: bootstrap replicates (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="gap: seed of the bootstrap draws")
    parser.add_argument("--confidence", type=float, default=0.95, help="gap: interval coverage (default 0.95)")
    return parser


def _rows(args: argparse.Namespace) -> tuple[list[dict], str]:
    """The source's rows and a phrase naming it for error messages."""
    if args.source == "wandb":
        from promptscale.report.wandb_rows import fetch_rows

        where = f"W&B project {args.entity + '/' if args.entity else ''}{args.project}"
        rows = fetch_rows(args.project, entity=args.entity, group=args.group)
        return rows, where + (f", group {args.group}" if args.group else "")
    return ResultsStore(args.results).rows(), str(args.results)


def main(argv: list[str] | None = None) -> int:
    """Console script ``promptscale-figure``; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.list:
        for name, spec in FIGURES.items():
            print(f"{name}\t{spec.description}")
        return 0
    try:
        check_protocol(args.protocol)
        rows, where = _rows(args)
        filter_experiment(rows, args.experiment, where)  # fail here, naming the source
        options = DrawOptions(
            experiment=args.experiment,
            protocol=args.protocol,
            reference=not args.no_reference,
            invalid=args.invalid,
            title=args.title,
            panels=tuple(args.panel or ()),
            fit=args.fit,
            compare=tuple(args.compare),
            bootstrap=args.bootstrap,
            seed=args.seed,
            confidence=args.confidence,
            results=args.results if args.source == "store" else None,
        )
        paths = draw(args.figure, rows, args.out, options)
    except ValueError as e:
        print(f"promptscale-figure: error: {e}", file=sys.stderr)
        return 1
    for p in paths.values():
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
