"""Training throughput on the recipe workload: ours under the Lightning Trainer vs PEFT + Seq2SeqTrainer.

"Ours" is what ``promptscale-train`` runs: ``Trainer.fit`` on our module (built through the job
seam, so every default of the config applies: precision, ``speed.*``, the data module's length
bucketing, the vectorised Adafactor), on batches from the job's data module for each task, timed
by a callback from the end of the warm-up step to the end of the last step, so batch fetching and
collation count. "Theirs" is PEFT on the same backbone under ``Seq2SeqTrainer`` (``peft_arm.py``).
Both take one step per task of the workload (``workload.py``: recipe batch, SuperGLUE's input
lengths), the tasks split over the repeats, the arms alternating, with a matmul peak measured
in every repeat as the utilisation denominator. Throughputs are totals over all repeats (the
workload's mix); paired per-repeat ratios are reported next to them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

import lightning as L
import torch

from promptscale.bench.core import (
    PEAK_DTYPE,
    Extras,
    Settings,
    alternate,
    build_method,
    load,
    matmul_peak,
    median,
    method_extras,
    rates,
    step_stats,
    sync,
)
from promptscale.bench.peft_arm import PEFT_ARMS, peft_model, theirs
from promptscale.bench.workload import Workload, balanced_schedule

TOTALS = ("seconds", "cpu_seconds", "steps", "examples", "real_tokens", "computed_tokens", "flops")


class LightningClock(L.Callback):
    """Timestamps (wall, process CPU) the end of every training step and keeps its batch's masks
    (their shapes and real tokens are counted after ``fit``, outside the timed steps)."""

    def __init__(self, device: str, accumulate: int = 1) -> None:
        self.device, self.accumulate = device, accumulate
        self.ends: list[tuple[float, float]] = []  # per optimizer step
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []  # per (micro-)batch: attention_mask, labels

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % self.accumulate == 0:  # the optimizer stepped
            sync(self.device)
            self.ends.append((time.perf_counter(), time.process_time()))
        self.batches.append((batch["attention_mask"], batch["labels"]))  # [B, T], [B, L]

    def shapes(self) -> list[tuple[int, int, int, int]]:
        """``(batch, padded input, padded target, real tokens)`` of every (micro-)batch."""
        return [(mask.shape[0], mask.shape[1], labels.shape[1], int(mask.sum()) + int((labels >= 0).sum()))
                for mask, labels in self.batches]  # fmt: skip


class Steps:
    """The batches Lightning iterates in one repeat: the warm-up batch, then one per scheduled task."""

    def __init__(self, workload: Workload, repeat: int, arm: str) -> None:
        self.workload, self.repeat, self.arm = workload, repeat, arm

    def __iter__(self):
        return self.workload.ours(self.repeat, self.arm)

    def __len__(self) -> int:
        return (1 + len(self.workload.schedule[self.repeat])) * self.workload.accumulate


def ours_lightning(
    module, workload: Workload, spec, settings: Settings, callbacks: tuple = (), arm: str = "ours"
) -> Callable[[int], dict]:
    """An arm: one ``Trainer.fit`` per repeat, as ``promptscale-train`` runs it (``arm``: whose loaders)."""
    extras = method_extras(module)

    def run(repeat: int) -> dict:
        clock = LightningClock(settings.device, workload.accumulate)
        steps = Steps(workload, repeat, arm)
        trainer = L.Trainer(
            accelerator="gpu" if settings.device == "cuda" else "cpu",
            devices=1,
            precision=settings.precision,
            max_steps=1 + len(workload.schedule[repeat]),
            accumulate_grad_batches=workload.accumulate,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            log_every_n_steps=10,
            callbacks=[clock, *callbacks],
            default_root_dir=tempfile.gettempdir(),
        )
        trainer.fit(module, train_dataloaders=steps)
        module.zero_grad(set_to_none=True)
        return step_stats(clock.ends, clock.shapes(), spec, extras, not module.frozen_backbone, workload.accumulate)

    return run


def run(settings: Settings, log: Callable[[str], None]) -> dict:
    """Training throughput and utilisation at every size of ``settings``."""
    out: dict = {"what": __doc__.split("\n\n")[1].replace("\n", " "), "sizes": {}}
    for size in settings.sizes:
        out["sizes"][size] = run_size(settings, size, log)
    # The utilisation denominator: the best matmul rate measured anywhere in this run (a loaded
    # moment's rate would flatter the MFU); each size also keeps its own median.
    peaks = [
        r.get("flop_per_s") for block in out["sizes"].values() for r in block.get("matmul_peak", {}).get("repeats", [])
    ]
    peak = max((p for p in peaks if p), default=None)
    out["matmul_peak_flop_per_s"] = peak
    for block in out["sizes"].values():
        for row in block.get("arms", {}).values():
            row["mfu"] = row["flop_per_s"] / peak if row.get("flop_per_s") and peak else None
    return out


def build_arms(settings: Settings, size: str, log: Callable[[str], None]):
    """Our modules and PEFT's models at ``size``, their workload and the arms that time them."""
    modules, skipped = {}, {}
    for name in settings.methods_at(size):
        try:
            modules[name] = build_method(size, name, settings.seed, threads=settings.threads)
        except Exception as err:
            skipped[name] = f"does not build: {type(err).__name__}: {err}"[:300]
    if not modules:
        return {}, {}, skipped, None
    first_module, first_spec = next(iter(modules.values()))
    schedule = balanced_schedule(settings.tasks, settings.repeats_at(size))
    accumulate = settings.accumulate.get(size, 1)
    workload = Workload.build(
        first_module.tokenizer, first_spec.cfg.data, settings.batch_size, schedule, settings.seed, accumulate
    )
    spec = first_module.spec
    arms, info = {}, {}
    for name, (module, _) in modules.items():
        arms[name] = ours_lightning(module, workload, spec, settings, arm=name)
        info[name] = {"side": "ours", "method": name, "runner": "lightning.Trainer.fit",
                      "trainable_params": module.parameter_counts()["trainable_params"],
                      "extras": vars(method_extras(module))}  # fmt: skip
    for arm, (mirrors, kind) in PEFT_ARMS.items():
        if mirrors not in modules:
            continue
        module, job_spec = modules[mirrors]
        prompt_length = method_extras(module).encoder_prompt or 100
        try:
            model, tokenizer = peft_model(kind, size, settings, prompt_length, dict(job_spec.cfg.method))
        except Exception as err:
            skipped[arm] = f"does not build: {type(err).__name__}: {err}"[:300]
            continue
        extras = Extras(encoder_prompt=prompt_length if kind != "lora" else 0)
        optimizer = job_spec.recipe.optimizer
        optim = "adafactor" if optimizer.name == "adafactor" else "adamw_torch"
        arms[arm] = theirs(model, tokenizer, workload, spec, settings, extras, optim, optimizer.lr)
        info[arm] = {"side": "theirs", "method": mirrors, "runner": "peft + transformers.Seq2SeqTrainer",
                     "peft_config": kind, "optim": optim, "extras": vars(extras),
                     "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}  # fmt: skip
    log(f"training @ {size}: {len(arms)} arms, schedule {schedule}")
    return arms, info, skipped, workload


def run_size(settings: Settings, size: str, log: Callable[[str], None]) -> dict:
    log(f"training @ {size}: building methods and the workload")
    arms, info, skipped, workload = build_arms(settings, size, log)
    if workload is None:
        return {"skipped": skipped}
    dtype = PEAK_DTYPE.get(settings.precision, torch.float32)
    arms["matmul_peak"] = lambda r: matmul_peak(settings.device, dtype, settings.peak_n)
    load_before = load()
    results = alternate(arms, len(workload.schedule), log, with_repeat=True)
    peak = median([r.get("flop_per_s") for r in results["matmul_peak"]])
    rows = {
        arm: {**info[arm], **totals(runs), "repeats": runs} for arm, runs in results.items() if arm != "matmul_peak"
    }
    ratios, paired = {}, {}
    pairs = [(mirrors, arm) for arm, (mirrors, _) in PEFT_ARMS.items()]
    pairs += [(arm, "model_tuning") for arm in rows if rows[arm]["side"] == "ours" and arm != "model_tuning"]
    for a, b in pairs:
        if rows.get(a, {}).get("examples_per_s") and rows.get(b, {}).get("examples_per_s"):
            ratios[f"{a} / {b}"] = rows[a]["examples_per_s"] / rows[b]["examples_per_s"]
            cpu_a, cpu_b = rows[a].get("cpu_examples_per_s"), rows[b].get("cpu_examples_per_s")
            paired[f"{a} / {b}"] = {
                "cpu_time": cpu_a / cpu_b if cpu_a and cpu_b else None,
                "per_repeat": [x["examples_per_s"] / y["examples_per_s"] for x, y in zip(results[a], results[b])
                               if x.get("examples_per_s") and y.get("examples_per_s")],
            }  # fmt: skip
    return {
        "batch_size": workload.batch_size,
        "micro_batch": workload.micro_batch,
        "precision": settings.precision,
        "schedule": [list(s) for s in workload.schedule],
        "lengths": workload.fits(),
        "data_bucket_by_length": bool(workload.data_config.get("bucket_by_length")),
        "matmul_peak": {
            "n": settings.peak_n,
            "dtype": str(dtype),
            "flop_per_s": peak,
            "repeats": results["matmul_peak"],
        },
        "arms": rows,
        "ratios": ratios,
        "ratio_details": paired,
        "skipped": skipped,
        "load_before": load_before,
        "load_after": load(),
    }


def totals(runs: list[dict]) -> dict:
    """An arm's workload totals over its repeats and the throughputs they give (errors reported)."""
    ok = [r for r in runs if "error" not in r]
    out: dict = {"errors": [r["error"] for r in runs if "error" in r]}
    if not ok:
        return out
    total = {key: sum(r[key] for r in ok) for key in TOTALS}
    out.update(total)
    out.update(rates(total, computed=True))
    out.update({
        "padded_input_per_step": sum(r["padded_input_per_step"] * r["steps"] for r in ok) / total["steps"],
        "padding_share": 1 - total["real_tokens"] / total["computed_tokens"],
    })  # fmt: skip
    return out
