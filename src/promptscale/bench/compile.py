"""``speed.compile``: eager vs ``torch.compile``d training on the recipe workload (opt-in section).

Two prompt-tuning modules of the same seed, one with ``speed.compile=true``, take the same
workload steps (``workload.py``), alternating. The compiled arm's first repeat includes
compiling (reported as ``compile_seconds``: its first repeat minus the eager one's); later
repeats give the steady ratio (new input lengths may still recompile: the bucketed batches of
different tasks have different shapes, as a real job's do). Off by default in the full run: at
Small it compiles for minutes on this project's 2-core CPU (``--sections compile`` runs it).
"""

from __future__ import annotations

from collections.abc import Callable

from promptscale.bench.core import Settings, alternate, build_method, load
from promptscale.bench.training import ours_lightning, totals
from promptscale.bench.workload import Workload


def run(settings: Settings, log: Callable[[str], None]) -> dict:
    size = settings.sizes[0]
    repeats = 1 + max(2, settings.repeats_at(size))  # the first one compiles
    log(f"compile @ {size}: building eager and compiled prompt tuning")
    eager, job_spec = build_method(size, "prompt_tuning", settings.seed, threads=settings.threads)
    compiled, _ = build_method(
        size, "prompt_tuning", settings.seed, threads=settings.threads, overrides=["speed.compile=true"]
    )
    tasks = settings.tasks[: 2 if settings.tiny else 4]
    schedule = [tuple(tasks)] * repeats  # the same tasks every repeat: later repeats see known lengths
    workload = Workload.build(eager.tokenizer, job_spec.cfg.data, settings.batch_size, schedule, settings.seed)
    arms = {
        "eager": ours_lightning(eager, workload, eager.spec, settings, arm="eager"),
        "compiled": ours_lightning(compiled, workload, compiled.spec, settings, arm="compiled"),
    }
    results = alternate(arms, repeats, log, with_repeat=True)
    first = {name: runs[0].get("seconds") for name, runs in results.items()}
    later = {name: totals(runs[1:]) for name, runs in results.items()}  # None where a later repeat broke
    steady = {name: None if t["errors"] else t.get("examples_per_s") for name, t in later.items()}
    return {
        "what": __doc__.replace("\n", " ").strip(),
        "size": size,
        "tasks": list(tasks),
        "repeats": repeats,
        "compile_seconds": first["compiled"] - first["eager"] if None not in first.values() else None,
        "steady_examples_per_s": steady,
        "steady_ratio_compiled_vs_eager": steady["compiled"] / steady["eager"] if None not in steady.values() else None,
        "errors": {name: r["error"] for name, runs in results.items() for r in runs if "error" in r},
        "repeats_detail": results,
        "load": load(),
    }
