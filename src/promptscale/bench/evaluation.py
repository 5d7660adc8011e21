"""Evaluation throughput: both protocols from one encoder pass vs generation alone, and rank variants.

One prompt-tuning module (ours) scores the same classification examples (BoolQ, CB, COPA,
MultiRC, RTE, WiC records of the embedded sample, formatted and tokenised as in training, their
input ids replaced by random ids with the workload's SuperGLUE dev-set lengths, ``workload.py``)
in the same length-sorted evaluation batches, under ``torch.inference_mode`` and the run's
autocast, as Lightning's validation loop runs them. Arms:

* ``both_protocols``: ``evaluation.evaluate_batch``, what every evaluation now runs: one encoder
  pass, rank classification of the choices and greedy generation (label outputs stop once they
  can no longer become a label, ``LabelStopping``);
* ``generate_stopped``: generation alone, as a generation-only evaluation would run it (the same
  encoder pass and stopping): the cost the rank protocol is added to. Random weights rarely emit
  a label or ``</s>``, so both decode to the recipe's ``max_new_tokens`` (62);
* ``both_protocols_label`` / ``generate_stopped_label``: the same pair with generation limited to
  the longest verbaliser + ``</s>``: what a trained model that answers with a label costs;
* ``rank``: rank classification alone (``choice_log_likelihoods``: cross-attention keys and
  values projected once per example, one teacher-forced decoder pass over all choices);
* ``rank_reencode``: the naive rank classification, the whole model once per (example, choice);
* ``generate_recipe``: generation without stopping, to the recipe's ``max_new_tokens`` (62).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import StoppingCriteriaList

from promptscale import speed
from promptscale.bench.core import (
    Settings,
    alternate,
    autocast,
    build_method,
    load,
    median,
    paired_ratio,
    random_ids,
    sync,
)
from promptscale.bench.workload import sample_lengths
from promptscale.data.datamodule import SuperGlueDataModule
from promptscale.evaluation import LabelStopping, decode_generated, evaluate_batch, is_label_task, split_by_owner
from promptscale.methods.base import cast_frozen_linears

TASKS = ("boolq", "cb", "copa", "multirc", "rte", "wic")


def eval_batches(module, settings: Settings, tiny: bool) -> list[dict]:
    data = SuperGlueDataModule(
        tasks=list(TASKS), eval_limit=settings.eval_per_task, eval_batch_size=settings.eval_batch_size
    )
    data.load(train=False)
    data.attach(module.tokenizer, module.format)
    rng = random.Random(settings.seed)
    vocab = min(len(module.tokenizer), 2000)
    items = []
    for item in data.eval_items:
        (length,) = sample_lengths(item.example.task, 1, rng)
        length = max(4, length // 10) if tiny else length
        items.append(dataclasses.replace(item, input_ids=random_ids(length, rng, vocab)))
    data.eval_items = items
    return [data.collate_eval([items[i] for i in b]) for b in data.eval_batches()]


def rank_choices(module, batch: dict) -> list[int]:
    """Rank classification through the method's scoring path (one encoder pass, cached K/V)."""
    scores = split_by_owner(module.choice_log_likelihoods(batch).tolist(), batch["choice_owner"].tolist(),
                            len(batch["examples"]))  # fmt: skip
    return [max(range(len(s)), key=s.__getitem__) for s in scores]


def rank_reencode(module, batch: dict) -> list[int]:
    """The naive rank classification: the whole model once per (example, choice)."""
    owner, labels = batch["choice_owner"], batch["choice_labels"]
    kwargs = module.encoder_inputs(batch["input_ids"][owner], batch["attention_mask"][owner])  # [C, T]
    logits = module.model(**kwargs, labels=labels).logits  # [C, L, V]
    return argmax_choices(logits, labels, owner, len(batch["examples"]))


def argmax_choices(logits: torch.Tensor, labels: torch.Tensor, owner: torch.Tensor, n: int) -> list[int]:
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    scores = (logp * (labels >= 0)).sum(-1).tolist()  # [C]
    best: dict[int, tuple[float, int]] = {}
    position = [0] * n
    for score, b in zip(scores, owner.tolist()):
        if b not in best or score > best[b][0]:
            best[b] = (score, position[b])
        position[b] += 1
    return [best.get(b, (0.0, -1))[1] for b in range(n)]


def run(settings: Settings, log: Callable[[str], None]) -> dict:
    out: dict = {"what": __doc__.replace("\n", " ").strip(), "sizes": {}}
    for size in settings.eval_sizes:
        out["sizes"][size] = run_size(settings, size, log)
    return out


def run_size(settings: Settings, size: str, log: Callable[[str], None]) -> dict:
    log(f"evaluation @ {size}")
    module, _ = build_method(size, "prompt_tuning", settings.seed, threads=settings.threads)
    module.to(settings.device).eval()
    # what the module's setup() does under Lightning (methods/base.py): the job's speed switches, and
    # under bf16-mixed a frozen backbone's Linear weights stored in bf16
    speed.apply(module.model, speed.switches(module))
    if module.frozen_backbone and settings.precision == "bf16-mixed":
        cast_frozen_linears(module.model, torch.bfloat16)
    batches = [
        {k: (v.to(settings.device) if torch.is_tensor(v) else v) for k, v in b.items()}
        for b in eval_batches(module, settings, settings.tiny)
    ]
    examples = sum(len(b["examples"]) for b in batches)
    label_tokens = max(b["choice_labels"].shape[1] for b in batches)  # verbaliser + </s>
    recipe_tokens = module.evaluation.max_new_tokens
    predictions: dict[str, list] = {}
    decoder_calls = [0]  # decoder forward passes = decoding steps (counted, not timed apart)
    module.model.get_decoder().register_forward_pre_hook(lambda *_: decoder_calls.__setitem__(0, decoder_calls[0] + 1))

    def arm(name: str, fn: Callable[[dict], list]) -> Callable[[], dict]:
        def go() -> dict:
            preds = []
            decoder_calls[0] = 0
            with torch.inference_mode(), autocast(settings):
                sync(settings.device)
                t0 = time.perf_counter()
                for batch in batches:
                    preds += fn(batch)
                sync(settings.device)
                seconds = time.perf_counter() - t0
            predictions[name] = preds
            return {
                "seconds": seconds,
                "examples_per_s": examples / seconds,
                "decoder_steps_per_batch": decoder_calls[0] / len(batches),
            }

        return go

    def generate(max_new_tokens: int) -> Callable[[dict], list]:
        def fn(batch: dict) -> list:
            encoded = module.encode(batch["input_ids"], batch["attention_mask"])
            return decode_generated(module.tokenizer, module.generate(encoded, max_new_tokens))

        return fn

    label_spec = dataclasses.replace(module.evaluation, max_new_tokens=label_tokens)

    def both(spec) -> Callable[[dict], list]:
        return lambda batch: [r.ranked for r in evaluate_batch(module, batch, spec)]

    def generate_stopped(spec) -> Callable[[dict], list]:  # evaluate_batch without the rank protocol
        def fn(batch: dict) -> list:
            examples = batch["examples"]
            encoded = module.encode(batch["input_ids"], batch["attention_mask"])
            stopping = None
            if all(is_label_task(ex) for ex in examples):
                stopping = StoppingCriteriaList([LabelStopping(module.tokenizer, examples, spec)])
            return decode_generated(module.tokenizer, module.generate(encoded, spec.max_new_tokens, stopping))

        return fn

    arms = {
        "both_protocols": arm("both_protocols", both(module.evaluation)),
        "generate_stopped": arm("generate_stopped", generate_stopped(module.evaluation)),
        "both_protocols_label": arm("both_protocols_label", both(label_spec)),
        "generate_stopped_label": arm("generate_stopped_label", generate_stopped(label_spec)),
        "rank": arm("rank", lambda b: rank_choices(module, b)),
        "rank_reencode": arm("rank_reencode", lambda b: rank_reencode(module, b)),
        "generate_recipe": arm("generate_recipe", generate(recipe_tokens)),
    }
    load_before = load()
    results = alternate(arms, 1 if settings.tiny else 3, log)
    rows = {
        name: {
            "examples_per_s": median([r.get("examples_per_s") for r in runs]),
            "decoder_steps_per_batch": median([r.get("decoder_steps_per_batch") for r in runs]),
            "repeats": runs,
        }
        for name, runs in results.items()
    }
    for name in ("both_protocols", "generate_stopped", "generate_recipe"):
        rows[name]["max_new_tokens"] = recipe_tokens
    for name in ("both_protocols_label", "generate_stopped_label"):
        rows[name]["max_new_tokens"] = label_tokens
    rank = predictions.get("rank", [])
    agreement = {
        name: sum(a == b for a, b in zip(rank, predictions.get(name, []))) / max(len(rank), 1)
        for name in ("both_protocols", "rank_reencode")
    }
    ratios = {
        f"rank speedup vs {name}": paired_ratio(results["rank"], results[name], "examples_per_s")
        for name in arms
        if name != "rank"
    }
    # time of both protocols / time of generation alone (the target: at most 1.2), with
    # generation to the recipe's limit (random weights never stop) and stopped after the label
    for both_arm, alone in (("both_protocols", "generate_stopped"), ("both_protocols_label", "generate_stopped_label")):
        ratios[f"{both_arm} time / {alone} time"] = paired_ratio(results[alone], results[both_arm], "examples_per_s")
    return {
        "examples": examples,
        "batches": len(batches),
        "eval_batch_size": settings.eval_batch_size,
        "choices": sum(len(b["choice_owner"]) for b in batches),
        "method": "prompt_tuning",
        "arms": rows,
        "ratios": ratios,
        "rank_agreement": agreement,
        "load_before": load_before,
        "load_after": load(),
    }
