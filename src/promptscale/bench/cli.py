"""``promptscale-bench [--tiny] [--out DIR]``: runs the sections, writes bench.json and bench.md."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import sys
import time
from pathlib import Path

SECTIONS = ("training", "evaluation", "padding", "memory")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="promptscale-bench", description=__doc__)
    parser.add_argument(
        "--tiny", action="store_true", help="tiny shapes, one repeat: a smoke run (numbers mean nothing)"
    )
    parser.add_argument("--out", default="outputs/bench", help="folder of bench.json and bench.md")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--repeats", type=int, default=None, help="alternating repeats (default 3, tiny 1)")
    parser.add_argument("--precision", default="bf16-mixed", choices=("bf16-mixed", "32-true"))
    parser.add_argument("--sizes", default=None, help="comma-separated conf/model names (default small,base)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default on CPU: 1, see below; on GPU: torch's choice)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    import lightning
    import peft
    import torch
    import transformers

    from promptscale.bench import evaluation, memory, padding, report, training
    from promptscale.bench.core import Settings, load, quiet, resolve_device

    quiet()
    device = resolve_device(args.device)
    # One thread on CPU by default: on a shared machine (other jobs on the cores) OpenMP threads
    # stall at every barrier while a sibling is descheduled; measured here under load ~8 on 2
    # cores, a T5 Small step took 10-36 s with 2 threads and 0.7-2.7 s with 1. It also leaves the
    # other core to whoever else is working.
    threads = args.threads or (1 if device == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    settings = Settings.tiny_run(device) if args.tiny else Settings(device=device)
    if device == "cuda" and not args.tiny:  # a GPU needs bigger matmuls to show its rate
        settings.batch_size, settings.eval_batch_size, settings.peak_n, settings.memory_parallel = 32, 32, 8192, 1
    settings.precision = args.precision
    if args.repeats:
        settings.repeats = args.repeats
    if args.sizes:
        sizes = tuple(s.strip() for s in args.sizes.split(",") if s.strip())
        settings.sizes, settings.memory_sizes, settings.eval_sizes = sizes, sizes, sizes[:1]
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    device_name = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())
    result: dict = {
        "meta": {
            "date": dt.date.today().isoformat(),
            "command": "promptscale-bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "mode": "tiny" if args.tiny else "full",
            "device": device,
            "device_name": f"{device_name} ({device})",
            "cpu_count": __import__("os").cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "lightning": lightning.__version__,
            "precision": settings.precision,
            "load_start": load(),
        }
    }
    modules = {"training": training, "evaluation": evaluation, "padding": padding}
    for name in sections:
        if name == "memory":
            result["memory"] = memory.run(settings, log)
        else:
            result[name] = modules[name].run(settings, log)
    result["meta"]["load_end"] = load()
    result["meta"]["seconds"] = time.perf_counter() - started
    result["targets"] = report.targets(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    text = report.markdown(result)
    (out / "bench.md").write_text(text)
    print(text)
    log(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")
    return result
