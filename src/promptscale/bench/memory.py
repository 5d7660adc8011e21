"""Peak memory per method and size, each configuration in a fresh subprocess.

The worker (``python -m promptscale.bench.memory --size base --method prompt_tuning ...``)
builds the synthetic batches, records its RSS (``baseline``: interpreter + libraries), builds our
module, resets the kernel's RSS high-water mark (``/proc/self/clear_refs``), runs the training
steps with the Lightning Trainer exactly as the throughput benchmark does, and reports:

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from promptscale.bench.core import Settings, method_names, method_trains

MMAP_THRESHOLD = str(64 * 1024)


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
    """Runs in the subprocess: one (size, method) configuration."""
    import torch
    from torch.utils.data import DataLoader

    from promptscale.bench.core import build_method, build_spec, collator, quiet, train_items
    from promptscale.bench.training import ours_lightning

    quiet()
    torch.set_num_threads(args.threads)
    settings = Settings(
        warmup_steps=1,
        measure_steps=args.steps - 1,
        batch_size=args.batch_size,
        input_range=(args.min_len, args.max_len),
        device=args.device,
        precision=args.precision,
        seed=args.seed,
    )
    tokenizer = build_spec(args.size).build_tokenizer()
    items = train_items(tokenizer, settings.steps * settings.batch_size, settings.input_range, args.seed)
    loader = DataLoader(items, batch_size=settings.batch_size, collate_fn=collator(tokenizer).collate_train)
    gc.collect()
    baseline = status_mb("VmRSS")  # interpreter, libraries, data: no model yet
    module, _ = build_method(args.size, args.method, args.seed)
    if not module.trains:
        return {"skipped": "has no training step"}
    after_build = status_mb("VmRSS")
    build_peak = status_mb("VmHWM")  # before the reset: includes building the fp32 backbone
    reset = reset_peak()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    steady = SteadyPeak()
    ours_lightning(module, loader, settings, {"examples": 1, "real": 1, "computed": 1}, (steady,))()
    out = {
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


def run_one(settings: Settings, size: str, method: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "promptscale.bench.memory",
        "--size",
        size,
        "--method",
        method,
        "--batch-size",
        str(settings.batch_size),
        "--min-len",
        str(settings.input_range[0]),
        "--max-len",
        str(settings.input_range[1]),
        "--device",
        settings.device,
        "--precision",
        settings.precision,
        "--steps",
        str(settings.steps),
        "--seed",
        str(settings.seed),
    ]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {
            "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:][0][:300]
            if (proc.stderr or proc.stdout)
            else f"exit {proc.returncode}"
        }
    return json.loads(lines[-1])


def run(settings: Settings, log: Callable[[str], None]) -> dict:
    methods = [
        m
        for m in method_names()
        if (settings.memory_methods is None or m in settings.memory_methods) and method_trains(m)
    ]
    jobs = [(size, method) for size in settings.memory_sizes for method in methods]
    log(f"memory: {len(jobs)} subprocesses, {settings.memory_parallel} at a time")
    with ThreadPoolExecutor(max_workers=settings.memory_parallel) as pool:
        found = list(pool.map(lambda job: run_one(settings, *job), jobs))
    out: dict = {
        "what": __doc__.replace("\n", " ").strip(),
        "precision": settings.precision,
        "batch_size": settings.batch_size,
        "sizes": {},
    }
    for (size, method), row in zip(jobs, found):
        out["sizes"].setdefault(size, {})[method] = row
    key = "cuda_max_allocated_mb" if settings.device == "cuda" else "above_baseline_mb"
    out["key"] = key
    for rows in out["sizes"].values():
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
        row["baseline_mb"] for rows in out["sizes"].values() for row in rows.values() if row.get("baseline_mb")
    ]
    out["baseline_mb"] = round(sum(baselines) / len(baselines)) if baselines else None
    sizes = settings.memory_sizes
    if len(sizes) > 1:
        out["growth"] = {}
        for method in methods:
            first, last = out["sizes"][sizes[0]].get(method, {}), out["sizes"][sizes[-1]].get(method, {})
            if first.get(key) and last.get(key) is not None:
                out["growth"][method] = {"from": sizes[0], "to": sizes[-1], "ratio": last[key] / first[key]}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--min-len", type=int, default=40)
    parser.add_argument("--max-len", type=int, default=80)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--steps", type=int, default=2)
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
