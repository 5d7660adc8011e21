"""Each speed lever on the recipe workload: the defaults against the defaults with one lever switched.

The issue asks that every lever be measured and that one which does not win stay off by default.
Arms are prompt-tuning jobs of one seed at the first size, built through the job seam, each with
one override: ``speed.attention=sdpa``, ``speed.fused=false``, ``speed.dropout=bits``,
``speed.checkpoint=true``, ``data.bucket_by_length=false`` (the same items, random batches: its
own workload) and ``32-true`` instead of bf16-mixed (where bf16 is the default). They take the same
steps of the same tasks, alternating, so ``defaults / arm`` > 1 means the default is faster.
``speed.compile`` has a section of its own (``--sections compile``: it compiles for minutes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from promptscale.bench.core import Settings, alternate, build_method, load
from promptscale.bench.training import ours_lightning, totals
from promptscale.bench.workload import Workload, balanced_schedule

# arm -> (job overrides, what the default does instead)
LEVERS = {
    "attention=sdpa": (["speed.attention=sdpa"], "speed.attention=direct"),
    "fused=false": (["speed.fused=false"], "speed.fused=true"),
    "dropout=bits": (["speed.dropout=bits"], "speed.dropout=torch"),
    "checkpoint=true": (["speed.checkpoint=true"], "speed.checkpoint=false"),
    "bucket_by_length=false": (["data.bucket_by_length=false"], "data.bucket_by_length=true"),
    "precision=32-true": ([], "bf16-mixed"),  # a Trainer setting: the arm's Settings differ
}
TASKS = ("multirc", "boolq", "rte", "cb", "wic", "copa")  # long and short, split over the repeats


def run(settings: Settings, log: Callable[[str], None]) -> dict:
    size, method = settings.sizes[0], "prompt_tuning"
    tasks = settings.tasks if settings.tiny else tuple(t for t in TASKS if t in settings.tasks)
    schedule = balanced_schedule(tasks, 1 if settings.tiny else 2)
    log(f"levers @ {size}: building {len(LEVERS) + 1} prompt-tuning jobs")
    arms, workloads = {}, {}
    for name, overrides in [("defaults", []), *((n, o) for n, (o, _) in LEVERS.items())]:
        if name == "precision=32-true" and settings.precision == "32-true":
            continue  # nothing to compare against
        module, job_spec = build_method(size, method, settings.seed, threads=settings.threads, overrides=overrides)
        bucketed = bool(job_spec.cfg.data.get("bucket_by_length"))
        if bucketed not in workloads:  # the same items either way (same seed); batches differ
            workloads[bucketed] = Workload.build(
                module.tokenizer, job_spec.cfg.data, settings.batch_size, schedule, settings.seed,
                settings.accumulate.get(size, 1),
            )  # fmt: skip
        arm_settings = dataclasses.replace(settings, precision="32-true") if name == "precision=32-true" else settings
        arms[name] = ours_lightning(module, workloads[bucketed], module.spec, arm_settings, arm=name)
    results = alternate(arms, len(schedule), log, with_repeat=True)
    rows = {name: {**totals(runs), "repeats": runs} for name, runs in results.items()}
    base = rows["defaults"].get("examples_per_s")
    for name, row in rows.items():
        row["defaults_over_arm"] = base / row["examples_per_s"] if base and row.get("examples_per_s") else None
        row["default_instead"] = LEVERS.get(name, (None, None))[1]
    return {
        "what": __doc__.split("\n\n")[0],
        "size": size,
        "method": method,
        "schedule": [list(s) for s in schedule],
        "precision": settings.precision,
        "arms": rows,
        "load": load(),
    }
