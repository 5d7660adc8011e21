"""Peak memory of prompt vs model tuning per (size, task), each configuration in a fresh subprocess.

The worker (``python -m promptscale.bench.memory --size base --method prompt_tuning --task rte``)
builds the workload's batches for one task at the recipe batch (``workload.py``), records its
RSS (``baseline``: interpreter + libraries + data), builds our module, resets the kernel's RSS
high-water mark (``/proc/self/clear_refs``), runs a warm-up step and two steps of that task with
the Lightning Trainer exactly as the throughput benchmark does, and reports:

* ``train_peak_mb``: peak RSS during ``fit`` (VmHWM after the reset), set-up included: frozen
  methods still hold the fp32 backbone when ``setup()`` stores its Linear weights in bf16;
* ``steady_peak_mb``: peak RSS over the training steps after the first (reset again then): what
  a long run holds;
* ``process_peak_mb``: peak RSS over the whole process (includes building the fp32 backbone);
* ``above_baseline_mb`` / ``steady_above_baseline_mb``: those peaks minus ``baseline``, what the
  model and its training cost;
* on GPU, ``cuda_max_allocated_mb`` (``torch.cuda.max_memory_allocated`` during training).

glibc's mmap threshold is pinned (``MALLOC_MMAP_THRESHOLD_``) so freed tensors leave RSS instead
of staying in the allocator's cache, which would make peaks depend on allocation history.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from promptscale.bench.core import Settings, method_names, method_trains

MMAP_THRESHOLD = str(64 * 1024)
# The target compares prompt with model tuning; the third row is prompt tuning with its activations
# recomputed in the backward pass (speed.checkpoint=true), the lever that memory needs at this batch.
MEMORY_METHODS = {"model_tuning": (), "prompt_tuning": (), "prompt_tuning+checkpoint": ("speed.checkpoint=true",)}


def status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


class SteadyPeak:
    """Lightning callback: after the first training step, records the peak so far and resets it."""

    def __new__(cls):
        import lightning as L

        class _SteadyPeak(L.Callback):
            first_step_peak: float | None = None

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                if batch_idx == 0:
                    self.first_step_peak = status_mb("VmHWM")
                    reset_peak()

        return _SteadyPeak()


def worker(args: argparse.Namespace) -> dict:
    """Runs in the subprocess: one (size, method, task) configuration."""
    import torch

    from promptscale.bench.core import compose_config, quiet
    from promptscale.bench.training import ours_lightning
    from promptscale.bench.workload import Workload
    from promptscale.job import JobSpec, build_job, model_spec

    quiet()
    torch.set_num_threads(args.threads)
    settings = Settings(device=args.device, precision=args.precision, seed=args.seed, threads=args.threads)
    cfg = compose_config(args.size, args.method, seed=args.seed, threads=args.threads, overrides=args.override)
    spec = model_spec(cfg)
    schedule = [(args.task,) * (args.steps - 1)]  # after the warm-up step: steps - 1 batches of the task
    workload = Workload.build(spec.build_tokenizer(), cfg.data, args.batch_size, schedule, args.seed)
    gc.collect()
    baseline = status_mb("VmRSS")  # interpreter, libraries, data: no model yet
    module = build_job(JobSpec.from_config(cfg)).method  # as build_method builds it
    if not module.trains:
        return {"skipped": "has no training step"}
    after_build = status_mb("VmRSS")
    build_peak = status_mb("VmHWM")  # before the reset: includes building the fp32 backbone
    reset = reset_peak()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    steady = SteadyPeak()
    stats = ours_lightning(module, workload, spec, settings, (steady,))(0)
    out = {
        "task": args.task,
        "batch_size": args.batch_size,
        "padded_input_per_step": stats["padded_input_per_step"],
        "baseline_mb": baseline,
        "after_build_mb": after_build,
        "train_peak_mb": status_mb("VmHWM") if reset else None,
        # ru_maxrss would report the parent's size (Linux keeps it across fork + exec)
        "process_peak_mb": max(x for x in (build_peak, status_mb("VmHWM")) if x is not None),
        "trainable_params": module.parameter_counts()["trainable_params"],
        "param_bytes_mb": sum(p.numel() * p.element_size() for p in module.parameters()) / 2**20,
    }
    if out["train_peak_mb"] is not None:
        out["train_peak_mb"] = max(out["train_peak_mb"], steady.first_step_peak or 0.0)
        out["steady_peak_mb"] = status_mb("VmHWM")
        out["above_baseline_mb"] = out["train_peak_mb"] - baseline
        out["steady_above_baseline_mb"] = out["steady_peak_mb"] - baseline
    if args.device == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_one(settings: Settings, size: str, label: str, task: str) -> dict:
    method = label.split("+")[0]
    overrides = [f"--override={o}" for o in MEMORY_METHODS[label]]
    cmd = [sys.executable, "-m", "promptscale.bench.memory", "--size", size, "--method", method, "--task", task,
           *overrides,
           "--batch-size", str(settings.batch_size), "--device", settings.device, "--precision", settings.precision,
           "--steps", str(3 if not settings.tiny else 2), "--seed", str(settings.seed),
           "--threads", str(settings.threads or 1)]  # fmt: skip
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return {"error": tail[0][:300] if tail else f"exit {proc.returncode}"}
    return json.loads(lines[-1])


def run(settings: Settings, log: Callable[[str], None]) -> dict:
    methods = [m for m in MEMORY_METHODS if m.split("+")[0] in method_names() and method_trains(m.split("+")[0])]
    jobs = [(size, method, task) for size, task in settings.memory_jobs for method in methods]
    log(f"memory: {len(jobs)} subprocesses, one at a time")
    found = [run_one(settings, *job) for job in jobs]
    out: dict = {
        "what": __doc__.replace("\n", " ").strip(),
        "precision": settings.precision,
        "batch_size": settings.batch_size,
        "shapes": {},
    }
    for (size, method, task), row in zip(jobs, found):
        out["shapes"].setdefault(f"{size} @ {task}", {})[method] = row
    key = "cuda_max_allocated_mb" if settings.device == "cuda" else "above_baseline_mb"
    out["key"] = key
    for rows in out["shapes"].values():
        for field, name in (
            (key, "vs_model_tuning"),
            ("steady_above_baseline_mb", "steady_vs_model_tuning"),
            ("process_peak_mb", "process_vs_model_tuning"),
        ):
            reference = rows.get("model_tuning", {}).get(field)
            for row in rows.values():
                if reference and row.get(field) is not None:
                    row[name] = row[field] / reference
    baselines = [
        row["baseline_mb"] for rows in out["shapes"].values() for row in rows.values() if row.get("baseline_mb")
    ]
    out["baseline_mb"] = round(sum(baselines) / len(baselines)) if baselines else None
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--override", action="append", default=[], help="a config override (repeatable)")
    parser.add_argument("--task", default="rte", help="task of the workload whose batches train (workload.py)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--steps", type=int, default=3, help="training steps, the first one a warm-up")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        result = worker(args)
    except Exception as err:
        result = {"error": f"{type(err).__name__}: {err}"[:300]}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
