"""The comparison arm: PEFT on the same backbone, trained as its users train it (``Seq2SeqTrainer``).

``PromptTuning`` / ``LoRA`` from PEFT on a fresh backbone of the same random weights, trained by
transformers' ``Seq2SeqTrainer`` with ``DataCollatorForSeq2Seq`` (dynamic padding to each
batch's longest input), ``group_by_length=False`` (its default: random examples per batch),
the same batch size, precision and optimizer, no gradient clipping, timed from the end of the
first (warm-up) step to the end of the last by a callback after ``optimizer.step``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

from torch.utils.data import Sampler

from promptscale.bench.core import Extras, Settings, build_spec, step_stats, sync
from promptscale.bench.workload import Workload

PEFT_ARMS = {  # arm name -> (our method it mirrors, PEFT config kind)
    "peft_prompt_tuning": ("prompt_tuning", "prompt"),
    "peft_lora": ("lora", "lora"),
}


def peft_model(kind: str, size: str, settings: Settings, prompt_length: int, lora_cfg: dict):
    """A fresh backbone (same seed as ours) wrapped by PEFT, and its tokenizer."""
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


class Order(Sampler[int]):
    """A fixed index order (set per repeat): what ``RandomSampler`` drew, made reproducible."""

    def __init__(self) -> None:
        self.order: list[int] = []

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def theirs(
    model, tokenizer, workload: Workload, spec, settings: Settings, extras: Extras, optim: str, lr: float
) -> Callable[[int], dict]:
    """An arm: one ``Seq2SeqTrainer.train()`` per repeat over the workload's random per-task batches."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    order = Order()

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[tuple[float, float]] = []

        def on_step_end(self, args, state, control, **kwargs):
            sync(settings.device)
            self.ends.append((time.perf_counter(), time.process_time()))

    class SameOrderTrainer(Seq2SeqTrainer):
        def _get_train_sampler(self, train_dataset=None):
            return order

    def run(repeat: int) -> dict:
        dataset, order.order = workload.theirs(repeat)
        micro = workload.micro_batch
        batches = [order.order[s : s + micro] for s in range(0, len(order.order), micro)]
        shapes = [shape([dataset[i]["input_ids"] for i in b], [dataset[i]["labels"] for i in b]) for b in batches]
        clock = Clock()
        args = Seq2SeqTrainingArguments(
            output_dir=tempfile.mkdtemp(prefix="promptscale-bench-"),
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=workload.accumulate,
            max_steps=len(batches) // workload.accumulate,
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
        return step_stats(clock.ends, shapes, spec, extras, False, workload.accumulate)

    return run


def shape(inputs: list[list[int]], targets: list[list[int]]) -> tuple[int, int, int, int]:
    """``(batch, padded input, padded target, real tokens)`` of one dynamically padded batch."""
    real = sum(map(len, inputs)) + sum(map(len, targets))
    return len(inputs), max(map(len, inputs)), max(map(len, targets)), real
