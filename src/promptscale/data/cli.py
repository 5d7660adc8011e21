"""``promptscale-data``: check a SuperGLUE copy and look at what the model will see.

* ``promptscale-data validate DIR`` validates every file of the official layout found under
  ``DIR`` and prints ``{task: {split: units}}`` as one JSON object, so a downloaded release can
  be checked before a sweep is launched on it. A task folder without ``train.jsonl`` or
  ``val.jsonl`` gets a warning line on stderr, not an error (zero-shot prompt design needs no
  train split).
* ``promptscale-data show TASK`` prints the formatted input/target pairs of the first records,
  the quickest way to see the exact text a format version produces.

Exit codes: 0 ok, 1 malformed data (the message names file, line and field) or an empty split
file, 2 usage errors (missing directory, unknown task).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from promptscale.data.formats import format_examples
from promptscale.data.sources import DataFileError, DataSource, load_records, missing_splits, validate_dir
from promptscale.data.tasks import TASKS, get_task

_PROG = "promptscale-data"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (the console script exits with it)."""
    args = _parser().parse_args(argv)
    return args.func(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=_PROG, description="SuperGLUE data tools for promptscale.")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="validate a copy of the official SuperGLUE release")
    validate.add_argument("dir", metavar="DIR", help="root holding BoolQ/ CB/ ... (any subset)")
    validate.set_defaults(func=_validate)

    show = commands.add_parser("show", help="print formatted input/target pairs of a task")
    show.add_argument("task", metavar="TASK", help=f"one of: {', '.join(TASKS)}")
    show.add_argument("--data-dir", default=None, help="official-layout root, or 'hub' (default: embedded sample)")
    show.add_argument("-n", type=int, default=5, help="number of records (default 5)")
    show.add_argument("--split", default=None, help="train, val or test (default val; test for AX-b/AX-g)")
    show.add_argument("--no-prefix", action="store_true", help="drop the task-name prefix, as prompt tuning does")
    show.add_argument("--train", action="store_true", help="format as for training (default: evaluation)")
    show.set_defaults(func=_show)
    return parser


def _error(message: object) -> None:
    print(f"{_PROG}: error: {message}", file=sys.stderr)


def _validate(args: argparse.Namespace) -> int:
    try:
        report = validate_dir(args.dir)
    except FileNotFoundError as e:
        _error(e)
        return 2
    except DataFileError as e:  # a malformed record, or a split file without records
        _error(e)
        return 1
    print(json.dumps(report, indent=2))
    for rel in missing_splits(args.dir):
        note = "a run that needs this split fails; zero-shot prompt design needs no train split"
        print(f"{_PROG}: warning: {rel} not found ({note})", file=sys.stderr)
    if not report:  # most likely the parent or a child of the release root
        _error(f"no SuperGLUE files found under {args.dir} (expected e.g. {args.dir}/CB/val.jsonl)")
        return 1
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        spec = get_task(args.task)
        split = args.split or ("val" if "val" in spec.splits else spec.splits[0])
        records = load_records(spec.name, split, DataSource.from_dir(args.data_dir))
    except (KeyError, FileNotFoundError) as e:
        _error(e.args[0] if isinstance(e, KeyError) else e)
        return 2
    except (ValueError, RuntimeError) as e:  # DataFileError, bad split, Hub unreachable
        _error(e)
        return 1
    for i, record in enumerate(records[: args.n]):
        for example in format_examples(spec.name, record, prefix=not args.no_prefix, train=args.train):
            print(f"--- {spec.name}/{split} record {i}  id={example.id}  group={example.group}  label={example.label}")
            print(f"inputs:  {example.inputs}")
            print(f"targets: {example.targets}")
            if example.choices:
                print(f"choices: {list(example.choices)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
