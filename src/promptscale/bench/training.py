"""Training throughput: our LightningModules under the Lightning Trainer vs PEFT + Seq2SeqTrainer.

"Ours" is what ``promptscale-train`` runs: ``Trainer.fit`` on our module (training_step, loss
logging, Adafactor/AdamW step, zero_grad, every Lightning hook), timed by a callback from the end
of the last warm-up step to the end of the last step, so batch fetching and collation count.
"Theirs" is PEFT's ``PromptTuning`` / ``LoRA`` on the same backbone, trained by transformers'
``Seq2SeqTrainer`` with the same batches in the same order (a sequential sampler on both sides),
batch size, precision, optimizer and no gradient clipping, timed the same way. A third arm for
prompt tuning, ``ours (loop)``, runs our module's loss + backward + optimizer step in a bare loop:
its ratio to the Lightning arm is the Trainer's overhead. Each repeat alternates all arms,
together with a matmul peak that is the utilisation denominator at that moment's load.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader

from promptscale.bench.core import (
    PEAK_DTYPE,
    Extras,
    Settings,
    alternate,
    autocast,
    batch_tokens,
    build_method,
    build_spec,
    collator,
    load,
    matmul_peak,
    median,
    method_extras,
    method_names,
    method_trains,
    paired_ratio,
    sync,
    train_items,
    training_flops,
)
from promptscale.methods.base import cast_frozen_linears
from promptscale.modules.attention import use_shared_bias_attention

PEFT_ARMS = {  # arm name -> (our method it mirrors, PEFT config kind)
    "peft_prompt_tuning": ("prompt_tuning", "prompt"),
    "peft_lora": ("lora", "lora"),
}


class LightningClock(L.Callback):
    """Timestamps the end of every training step (after the optimizer step and zero_grad)."""

    def __init__(self, device: str) -> None:
        self.device, self.ends = device, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync(self.device)
        self.ends.append(time.perf_counter())


def measured(ends: list[float], settings: Settings, tokens: dict) -> dict:
    """Throughput of the timed steps: from the end of the warm-up to the end of the last step."""
    if len(ends) < settings.steps:
        raise RuntimeError(f"only {len(ends)} of {settings.steps} steps ran")
    seconds = ends[settings.steps - 1] - ends[settings.warmup_steps - 1]
    return {
        "seconds": seconds,
        "examples_per_s": tokens["examples"] / seconds,
        "tokens_per_s": tokens["real"] / seconds,
        "computed_tokens_per_s": tokens["computed"] / seconds,
        "flop_per_s": tokens.get("flops", 0.0) / seconds,
    }


def ours_lightning(
    module, loader: DataLoader, settings: Settings, tokens: dict, callbacks: tuple = ()
) -> Callable[[], dict]:
    def run() -> dict:
        clock = LightningClock(settings.device)
        trainer = L.Trainer(
            accelerator="gpu" if settings.device == "cuda" else "cpu",
            devices=1,
            precision=settings.precision,
            max_steps=settings.steps,
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
        trainer.fit(module, train_dataloaders=loader)
        module.zero_grad(set_to_none=True)
        return measured(clock.ends, settings, tokens)

    return run


def ours_loop(module, batches: list[dict], settings: Settings, tokens: dict) -> Callable[[], dict]:
    """Our module's loss + backward + optimizer step in a bare loop: no Trainer at all."""

    def run() -> dict:
        module.to(settings.device).train()
        use_shared_bias_attention(module.model)  # what the module's setup() does
        if module.frozen_backbone and settings.precision == "bf16-mixed":
            cast_frozen_linears(module.model, torch.bfloat16)
        optimizer = module.configure_optimizers()
        optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
        ends = []
        for batch in batches[: settings.steps]:
            batch = {k: v.to(settings.device) for k, v in batch.items()}
            with autocast(settings):
                loss = module(batch["input_ids"], batch["attention_mask"], batch["labels"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync(settings.device)
            ends.append(time.perf_counter())
        return measured(ends, settings, tokens)

    return run


def peft_model(kind: str, size: str, settings: Settings, prompt_length: int, lora_cfg: dict):
    """A fresh backbone (same seed as ours) wrapped by PEFT."""
    from peft import LoraConfig, PromptTuningConfig, TaskType, get_peft_model

    spec = build_spec(size, settings.seed)
    model = spec.build()
    if kind == "lora":
        config = LoraConfig(
            r=lora_cfg.get("r", 8),
            lora_alpha=lora_cfg.get("alpha", 16),
            lora_dropout=lora_cfg.get("dropout", 0.1),
            target_modules=list(lora_cfg.get("target_modules", ["q", "v"])),
            bias="none",
            task_type=TaskType.SEQ_2_SEQ_LM,
        )
    else:
        # PEFT's seq2seq default allocates a second (decoder) prompt, num_transformer_submodules=2,
        # but its PROMPT_TUNING forward prepends only the encoder half (peft 0.21): 1 is the same
        # computation without the unused half.
        config = PromptTuningConfig(
            task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=prompt_length, num_transformer_submodules=1
        )
    return get_peft_model(model, config), spec.build_tokenizer()


def theirs(model, tokenizer, items, settings: Settings, tokens: dict, optim: str, lr: float) -> Callable[[], dict]:
    from torch.utils.data import SequentialSampler
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.ends = []

        def on_step_end(self, args, state, control, **kwargs):
            sync(settings.device)
            self.ends.append(time.perf_counter())

    class SameOrderTrainer(Seq2SeqTrainer):
        def _get_train_sampler(self, train_dataset=None):
            return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

    dataset = [
        {"input_ids": it.input_ids, "attention_mask": [1] * len(it.input_ids), "labels": it.target_ids} for it in items
    ]

    def run() -> dict:
        clock = Clock()
        args = Seq2SeqTrainingArguments(
            output_dir=tempfile.mkdtemp(prefix="promptscale-bench-"),
            per_device_train_batch_size=settings.batch_size,
            max_steps=settings.steps,
            learning_rate=lr,
            lr_scheduler_type="constant",
            optim=optim,
            weight_decay=0.0,
            max_grad_norm=0.0,
            bf16=settings.precision == "bf16-mixed",
            use_cpu=settings.device == "cpu",
            save_strategy="no",
            eval_strategy="no",
            logging_steps=10,
            report_to="none",
            disable_tqdm=True,
            dataloader_pin_memory=False,
            seed=settings.seed,
        )
        trainer = SameOrderTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            callbacks=[clock],
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100),
        )
        trainer.remove_callback(PrinterCallback)  # its end-of-training dict print is noise here
        trainer.train()
        model.zero_grad(set_to_none=True)
        return measured(clock.ends, settings, tokens)

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


def run_size(settings: Settings, size: str, log: Callable[[str], None]) -> dict:
    log(f"training @ {size}: building methods")
    arms: dict[str, Callable[[], dict]] = {}
    info: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    modules: dict[str, object] = {}
    tokenizer = None
    for name in method_names():
        try:
            if not method_trains(name):
                skipped[name] = "has no training step"
                continue
            module, job_spec = build_method(size, name, settings.seed)
        except Exception as err:
            skipped[name] = f"does not build: {type(err).__name__}: {err}"[:300]
            continue
        modules[name] = (module, job_spec)
        tokenizer = tokenizer or module.tokenizer
    if tokenizer is None:
        return {"skipped": skipped}
    spec = build_spec(size)
    items = train_items(tokenizer, settings.steps * settings.batch_size, settings.input_range, settings.seed)
    data = collator(tokenizer)
    loader = DataLoader(items, batch_size=settings.batch_size, shuffle=False, collate_fn=data.collate_train)
    batches = list(loader)
    timed = batches[settings.warmup_steps : settings.steps]
    real = sum(batch_tokens(b)[0] for b in timed)
    computed = sum(batch_tokens(b)[1] for b in timed)

    def tokens_for(extras: Extras, backbone_trains: bool) -> dict:
        flops = sum(training_flops(spec, b, extras, backbone_trains) for b in timed)
        return {
            "examples": settings.measure_steps * settings.batch_size,
            "real": real,
            "computed": computed,
            "flops": flops,
        }

    for name, (module, _spec) in modules.items():
        extras = method_extras(module)
        tok = tokens_for(extras, not module.frozen_backbone)
        info[name] = {
            "side": "ours",
            "method": name,
            "runner": "lightning.Trainer.fit",
            "trainable_params": module.parameter_counts()["trainable_params"],
            "flops_per_timed_steps": tok["flops"],
            "extras": vars(extras),
        }
        arms[name] = ours_lightning(module, loader, settings, tok)
        if name == "prompt_tuning" and size in settings.loop_arm_sizes:
            arms["prompt_tuning (loop)"] = ours_loop(module, batches, settings, tok)
            info["prompt_tuning (loop)"] = {**info[name], "runner": "bare loop: forward + backward + optimizer.step"}
    for arm, (mirrors, kind) in PEFT_ARMS.items():
        if mirrors not in modules:
            continue
        module, job_spec = modules[mirrors]
        try:
            prompt_length = method_extras(module).encoder_prompt or 100
            model, peft_tok = peft_model(kind, size, settings, prompt_length, dict(job_spec.cfg.method))
        except Exception as err:
            skipped[arm] = f"does not build: {type(err).__name__}: {err}"[:300]
            continue
        extras = Extras(encoder_prompt=prompt_length if kind != "lora" else 0)
        tok = tokens_for(extras, False)
        optimizer = job_spec.recipe.optimizer
        optim = "adafactor" if optimizer.name == "adafactor" else "adamw_torch"
        arms[arm] = theirs(model, peft_tok, items, settings, tok, optim, optimizer.lr)
        info[arm] = {
            "side": "theirs",
            "method": mirrors,
            "runner": "peft + transformers.Seq2SeqTrainer",
            "peft_config": kind,
            "optim": optim,
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "flops_per_timed_steps": tok["flops"],
            "extras": vars(extras),
        }
    dtype = PEAK_DTYPE.get(settings.precision, torch.float32)
    arms["matmul_peak"] = lambda: matmul_peak(settings.device, dtype, settings.peak_n)
    log(f"training @ {size}: {len(arms)} arms x {settings.repeats} repeats")
    load_before = load()
    results = alternate(arms, settings.repeats, log)
    peak = median([r.get("flop_per_s") for r in results["matmul_peak"]])
    rows = {}
    for arm, runs in results.items():
        if arm == "matmul_peak":
            continue
        row = {**info[arm], "repeats": runs}
        for key in ("examples_per_s", "tokens_per_s", "computed_tokens_per_s", "flop_per_s"):
            row[key] = median([r.get(key) for r in runs])
        rows[arm] = row
    ratios = {}
    for arm, (mirrors, _) in PEFT_ARMS.items():
        if arm in rows and mirrors in rows:
            ratios[f"{mirrors} / {arm}"] = paired_ratio(results[mirrors], results[arm], "examples_per_s")
    if "prompt_tuning (loop)" in rows:
        ratios["prompt_tuning (Lightning) / prompt_tuning (loop)"] = paired_ratio(
            results["prompt_tuning"], results["prompt_tuning (loop)"], "examples_per_s"
        )
    if "model_tuning" in rows:
        for arm in rows:
            if rows[arm]["side"] == "ours" and arm != "model_tuning" and "loop" not in arm:
                ratios[f"{arm} / model_tuning"] = paired_ratio(results[arm], results["model_tuning"], "examples_per_s")
    return {
        "batch_size": settings.batch_size,
        "input_range": list(settings.input_range),
        "precision": settings.precision,
        "timed_steps": settings.measure_steps,
        "warmup_steps": settings.warmup_steps,
        "repeats": settings.repeats,
        "real_tokens_per_step": real / settings.measure_steps,
        "computed_tokens_per_step": computed / settings.measure_steps,
        "matmul_peak": {
            "n": settings.peak_n,
            "dtype": str(dtype),
            "flop_per_s": peak,
            "repeats": results["matmul_peak"],
        },
        "arms": rows,
        "ratios": ratios,
        "skipped": skipped,
        "load_before": load_before,
        "load_after": load(),
    }
