"""``promptscale-bench [--tiny] [--out DIR]``: runs the sections, writes bench.json and bench.md.

Exits 0 when the run completes (targets met or not: they are results, not errors).

GPU (prepared for one A100/H100-class GPU within 8 minutes; not yet run, no GPU was available):
``promptscale-bench --device cuda --sizes small,base,large --out outputs/bench-gpu``
(batch 32 without micro-batching, bf16-mixed, torch's threads, prompt tuning, LoRA and model
tuning with their PEFT arms at every size, 2 repeats per size; memory of model tuning, prompt
tuning and prompt tuning with ``speed.checkpoint`` at Large on MultiRC lengths; evaluation at
Small; MFU against an 8192^3 bf16 matmul). If building the Large models takes too long there,
``--sections training,memory`` keeps the numbers the README asks for.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

SECTIONS = ("training", "evaluation", "padding", "memory", "adafactor", "levers")
OPTIONAL = ("compile",)  # minutes of compiling on a CPU: run on request only


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="promptscale-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tiny", action="store_true", help="tiny shapes, one repeat: a smoke run (numbers mean nothing)"
    )
    parser.add_argument("--out", default="outputs/bench", help="folder of bench.json and bench.md")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS + OPTIONAL}"
    )
    parser.add_argument("--repeats", type=int, default=None, help="repeats per size (the tasks are split over them)")
    parser.add_argument("--precision", default="bf16-mixed", choices=("bf16-mixed", "32-true"))
    parser.add_argument("--sizes", default=None, help="comma-separated conf/model names (default small,base)")
    parser.add_argument(
        "--methods", default=None, help="our methods to time at every size (default: prompt tuning; LoRA at Small)"
    )
    parser.add_argument(
        "--memory", default=None, help="memory shapes as size@task,... (default base@rte; GPU: every size @ multirc)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default on CPU: 1, see below; on GPU: torch's choice)"
    )
    return parser.parse_args(argv)


def settings_for(args: argparse.Namespace, device: str):
    """The run's ``Settings`` from the command line (GPU: bigger matmul peak, memory per size)."""
    from promptscale.bench.core import Settings

    settings = Settings.tiny_run(device) if args.tiny else Settings(device=device)
    # One thread on CPU by default: on a shared machine (other jobs on the cores) OpenMP threads
    # stall at every barrier while a sibling is descheduled; measured here under load ~8 on 2
    # cores, a T5 Small step took 10-36 s with 2 threads and 0.7-2.7 s with 1. It also leaves the
    # other core to whoever else is working.
    settings.threads = args.threads or (1 if device == "cpu" else None)
    settings.precision = args.precision
    if args.sizes:
        sizes = tuple(s.strip() for s in args.sizes.split(",") if s.strip())
        settings.sizes, settings.eval_sizes = sizes, sizes[:1]
        settings.model_tuning_sizes = sizes[:1]
        settings.memory_jobs = tuple((size, "multirc" if device == "cuda" else "rte") for size in sizes)
    if device == "cuda" and not args.tiny:  # a GPU needs bigger matmuls to show its rate; time is cheap there
        settings.peak_n, settings.accumulate = 8192, {}
        settings.memory_jobs = ((settings.sizes[-1], "multirc"),)  # the largest size: the 8-minute budget
        settings.model_tuning_sizes = settings.sizes
        settings.more_methods = dict.fromkeys(settings.sizes, ("lora",))
        settings.repeats = dict.fromkeys(settings.sizes, 2)
    if args.repeats:
        settings.repeats = dict.fromkeys(settings.sizes, args.repeats)
    if args.memory:
        settings.memory_jobs = tuple(tuple(job.strip().split("@", 1)) for job in args.memory.split(",") if job.strip())
    if args.methods:
        settings.methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        settings.more_methods = {}
    return settings


def run(argv: list[str] | None = None) -> dict:
    """Runs the benchmark; returns its result (also written to ``--out``)."""
    args = parse(argv)
    import lightning
    import peft
    import torch
    import transformers

    from promptscale.bench import adafactor, compile, evaluation, levers, memory, padding, report, training
    from promptscale.bench.core import load, quiet, resolve_device

    quiet()
    device = resolve_device(args.device)
    settings = settings_for(args, device)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS + OPTIONAL)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS + OPTIONAL}")
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
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "lightning": lightning.__version__,
            "precision": settings.precision,
            "batch_size": settings.batch_size,
            "load_start": load(),
        }
    }
    modules = {"training": training, "evaluation": evaluation, "padding": padding, "memory": memory,
               "adafactor": adafactor, "levers": levers, "compile": compile}  # fmt: skip
    for name in sections:
        log(f"section {name} (load {load()})")
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


def main(argv: list[str] | None = None) -> int:
    """The console script: the exit status is 0 once the run completes (the result is in ``--out``)."""
    run(argv)
    return 0
