"""Padding: encoder tokens computed per epoch by static, dynamic and length-bucketed batching.

Training items get the workload's input lengths (``workload.py``: log-normal through each
SuperGLUE dev set's median and 95th percentile, cut at 512) and the official training-set sizes
x ``scale``. The batches are the ones ``SuperGlueDataModule.train_dataloader()`` really yields
(``MixtureSampler``, and with ``bucket_by_length=True`` the ``BucketBatchSampler``): counting is
exact, nothing is timed. Settings: the eight tasks' examples-proportional mixture (multi-task
model tuning; training sizes x ``scale``) and each task alone (the per-task jobs of prompt tuning,
model tuning, ...; up to ``per_task_cap`` examples).

* ``static``: every batch padded to ``max_input_length`` (512);
* ``dynamic``: each batch padded to its longest input (what the collate function does);
* ``bucketed``: dynamic padding over length-bucketed batches.

``forward_flops_*`` weighs the same batches by T5 Small's forward matmul FLOPs, where attention
grows with the square of the padded length.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from promptscale.bench.core import Settings, build_spec, t5_forward_flops
from promptscale.bench.workload import DEV_LENGTHS, MAX_INPUT, TRAIN_SIZES, sample_lengths
from promptscale.data.datamodule import Item, SuperGlueDataModule
from promptscale.data.example import Example

SETTINGS = {"superglue_mixture": tuple(DEV_LENGTHS), **{task: (task,) for task in DEV_LENGTHS}}


def items_for(tasks: tuple[str, ...], scale: float, seed: int, cap: int) -> tuple[list[Item], list[int]]:
    """Items of ``tasks`` with the workload's lengths: ``scale`` x the training-set sizes (a mixture
    keeps their proportions), at most ``cap`` per task (two bucketing chunks show a task's effect)."""
    rng = random.Random(seed)
    items, sizes = [], []
    for task in tasks:
        n = max(min(int(TRAIN_SIZES[task] * scale), cap), 1)
        for i, length in enumerate(sample_lengths(task, n, rng)):
            ex = Example(task=task, inputs="", targets="", choices=(), label=-1, group=str(i), answers=())
            items.append(Item(ex, [5] * length, [1]))
        sizes.append(n)
    return items, sizes


def epoch_batches(items: list[Item], sizes: list[int], batch_size: int, bucket: bool, seed: int) -> list[list[int]]:
    data = SuperGlueDataModule(tasks=["rte"], batch_size=batch_size, seed=seed, bucket_by_length=bucket)
    data.train_items, data.task_sizes = items, sizes
    loader = data.train_dataloader()
    loader.batch_sampler.set_epoch(0)
    return [list(b) for b in loader.batch_sampler]


def run(settings: Settings, log: Callable[[str], None]) -> dict:
    scale, cap = (0.01, 100) if settings.tiny else (0.15, 3200)
    batch_size = 8 if settings.tiny else 32  # prompt tuning's recipe batch
    spec = build_spec(settings.sizes[0])
    out: dict = {
        "what": __doc__.replace("\n", " ").strip(),
        "batch_size": batch_size,
        "scale": scale,
        "per_task_cap": cap,
        "max_input_length": MAX_INPUT,
        "flops_model": settings.sizes[0],
        "settings": {},
    }
    for name, tasks in SETTINGS.items():
        log(f"padding: {name}")
        items, sizes = items_for(tasks, scale if len(tasks) > 1 else 1.0, settings.seed, cap)
        lengths = [len(it.input_ids) for it in items]
        row: dict = {"examples": len(items), "real_tokens": sum(lengths)}
        drawn = {}
        for mode, bucket in (("dynamic", False), ("bucketed", True)):
            batches = epoch_batches(items, sizes, batch_size, bucket, settings.seed)
            drawn[mode] = Counter(i for b in batches for i in b)
            row[f"tokens_{mode}"] = sum(len(b) * max(lengths[i] for i in b) for b in batches)
            row[f"forward_flops_{mode}"] = sum(
                sum(t5_forward_flops(spec, len(b), max(lengths[i] for i in b), 3)) for b in batches
            )
            row["batches"] = len(batches)
        row["tokens_static"] = len(items) * MAX_INPUT
        row["forward_flops_static"] = sum(t5_forward_flops(spec, len(items), MAX_INPUT, 3))
        row["same_examples_drawn"] = drawn["dynamic"] == drawn["bucketed"]
        for mode in ("static", "dynamic", "bucketed"):
            row[f"efficiency_{mode}"] = row["real_tokens"] / row[f"tokens_{mode}"]
        row["ratio_static_vs_bucketed"] = row["tokens_static"] / row["tokens_bucketed"]
        row["ratio_dynamic_vs_bucketed"] = row["tokens_dynamic"] / row["tokens_bucketed"]
        row["flops_ratio_static_vs_bucketed"] = row["forward_flops_static"] / row["forward_flops_bucketed"]
        row["flops_ratio_dynamic_vs_bucketed"] = row["forward_flops_dynamic"] / row["forward_flops_bucketed"]
        out["settings"][name] = row

    # Per-task jobs train every task for the same number of steps: average the per-step cost.
    def per_step(key: str) -> float:
        return sum(out["settings"][t][key] / out["settings"][t]["batches"] for t in DEV_LENGTHS)

    out["per_task_jobs"] = {
        "ratio_dynamic_vs_bucketed": per_step("tokens_dynamic") / per_step("tokens_bucketed"),
        "flops_ratio_dynamic_vs_bucketed": per_step("forward_flops_dynamic") / per_step("forward_flops_bucketed"),
    }
    return out
