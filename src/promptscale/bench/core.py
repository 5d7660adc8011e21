"""What every benchmark section shares: settings, methods, synthetic data, timing, FLOP counts."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
PEAK_DTYPE = {"bf16-mixed": torch.bfloat16, "32-true": torch.float32}


@dataclass
class Settings:
    """One benchmark run: ``Settings()`` is the README run on CPU, ``Settings.tiny_run`` the smoke test.

    Attributes:
        tiny: Tiny shapes, one step per repeat (plumbing only; its numbers mean nothing).
        sizes: ``conf/model`` names whose architecture is benchmarked (random init).
        methods: Our methods timed at every size (with their PEFT arms where PEFT has one).
        more_methods: Methods timed at some sizes only (LoRA at Small: the CPU run's time budget).
        model_tuning_sizes: Sizes that also time model tuning (utilisation).
        tasks: Tasks of the recipe workload (one training step each per pass, ``bench/workload.py``).
        repeats: Repeats per size; the tasks are split over them (long with short), arms alternate.
        batch_size: Training batch of every arm (the recipe's 32; model tuning: its micro-batch).
        accumulate: Micro-batches per step by size, for all arms alike (CPU RAM: a Base batch of 32
            MultiRC inputs + 100 prompt vectors holds ~25 GB of activations; this machine has 23).
        eval_sizes, eval_per_task, eval_batch_size: The evaluation comparison.
        memory_jobs: (size, task) shapes of the memory subprocesses (prompt vs model tuning).
        device: ``cpu`` or ``cuda``.
        precision: Lightning precision of every arm (``bf16-mixed``: bf16 autocast, fp32 weights).
        threads: torch intra-op threads of every arm (and of the jobs the benchmark builds).
        peak_n: Side of the square matmul whose FLOP/s is the utilisation peak.
        seed: Seed of the synthetic data and of the random weights.
    """

    tiny: bool = False
    sizes: tuple[str, ...] = ("small", "base")
    methods: tuple[str, ...] = ("prompt_tuning",)
    more_methods: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"small": ("lora",)})
    model_tuning_sizes: tuple[str, ...] = ("small",)
    tasks: tuple[str, ...] = ("boolq", "multirc", "record", "cb", "rte", "wsc", "copa", "wic")
    repeats: dict[str, int] = field(default_factory=lambda: {"small": 2, "base": 4})
    batch_size: int = 32
    accumulate: dict[str, int] = field(default_factory=lambda: {"base": 4})
    eval_sizes: tuple[str, ...] = ("small",)
    eval_per_task: int = 8
    eval_batch_size: int = 32
    memory_jobs: tuple[tuple[str, str], ...] = (("base", "rte"),)
    device: str = "cpu"
    precision: str = "bf16-mixed"
    threads: int | None = 1
    peak_n: int = 2048
    seed: int = 0

    @classmethod
    def tiny_run(cls, device: str) -> Settings:
        return cls(
            tiny=True,
            sizes=("tiny_s",),
            methods=("prompt_tuning", "lora"),
            model_tuning_sizes=("tiny_s",),
            tasks=("boolq", "rte", "copa"),
            repeats={"tiny_s": 1},
            batch_size=4,
            accumulate={"tiny_s": 2},
            eval_sizes=("tiny_s",),
            eval_per_task=1,
            eval_batch_size=4,
            memory_jobs=(("tiny_s", "rte"),),
            device=device,
            peak_n=256,
        )

    def repeats_at(self, size: str) -> int:
        return max(1, min(self.repeats.get(size, 2), len(self.tasks)))

    def methods_at(self, size: str) -> list[str]:
        """Our methods timed at ``size``."""
        extra = ("model_tuning",) if size in self.model_tuning_sizes else ()
        return list(dict.fromkeys((*self.methods, *self.more_methods.get(size, ()), *extra)))


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def quiet() -> None:
    """Silences the progress and advice messages of Lightning, transformers and PEFT."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "transformers", "peft", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    with contextlib.suppress(Exception):
        import transformers

        transformers.logging.set_verbosity_error()


def autocast(settings: Settings):
    """The autocast Lightning's ``bf16-mixed`` plugin applies (a no-op for ``32-true``)."""
    if settings.precision == "bf16-mixed":
        return torch.autocast(settings.device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# -- methods -----------------------------------------------------------------------------------
def method_names() -> list[str]:
    """Every method of ``conf/method`` at run time (others may add some while this runs)."""
    return sorted(p.stem for p in (CONF_DIR / "method").glob("*.yaml"))


def compose_config(
    size: str, method: str, tasks: str = "rte", seed: int = 0, threads: int | None = None, overrides: Sequence[str] = ()
):
    """The job config ``promptscale-train`` would compose, with a random-init backbone of ``seed``
    (and, when given, the benchmark's thread count instead of ``speed.threads=auto``)."""
    from promptscale.job import compose

    return compose([
        f"model={size}", "model.init=random", "model.tokenizer=embedded", f"method={method}", f"task={tasks}",
        f"seed={seed}", "logger=none", "paths.root=/tmp/promptscale-bench",
        *([f"speed.threads={threads}"] if threads else []), *overrides,
    ])  # fmt: skip


def method_trains(method: str) -> bool:
    """Whether ``method`` has a training step (read from its class, without building it)."""
    from hydra.utils import get_class

    return bool(get_class(compose_config("tiny_s", method).method._target_).trains)


def build_method(
    size: str, method: str, seed: int, tasks: str = "rte", threads: int | None = None, overrides: Sequence[str] = ()
):
    """Our LightningModule for ``method`` at ``size`` (random weights drawn from ``seed``) and its job spec,
    built through the job seam (``job.build_job``)."""
    from promptscale.job import JobSpec, build_job

    job = build_job(JobSpec.from_config(compose_config(size, method, tasks, seed, threads, overrides)))
    return job.method, job.spec


def build_spec(size: str, seed: int = 0):
    """The backbone spec of ``size`` with a random init drawn from ``seed`` (as ``build_method``'s)."""
    from promptscale.job import model_spec

    return model_spec(compose_config(size, "model_tuning", seed=seed))


# -- synthetic data ----------------------------------------------------------------------------
def random_ids(length: int, rng: random.Random, vocab: int) -> list[int]:
    """``length`` token ids ending in ``</s>`` (id 1), as the T5 tokenizer's output does."""
    return [rng.randrange(3, vocab) for _ in range(max(length - 1, 0))] + [1]


# -- timing ------------------------------------------------------------------------------------
def alternate(
    arms: dict[str, Callable[..., dict]], repeats: int, log: Callable[[str], None], with_repeat: bool = False
) -> dict[str, list[dict]]:
    """Runs every arm once per repeat, reversing the order on odd repeats; returns their results.

    Alternation puts each arm under the same background load (other processes on the cores)
    and cancels drift; the caller reports medians and per-repeat paired ratios. With
    ``with_repeat`` an arm is called with the repeat's index (its share of the workload).
    """
    out: dict[str, list[dict]] = {name: [] for name in arms}
    names = list(arms)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            gc.collect()
            t0 = time.perf_counter()
            try:
                out[name].append(arms[name](r) if with_repeat else arms[name]())
            except Exception as err:  # an arm that breaks is reported, not fatal
                out[name].append({"error": f"{type(err).__name__}: {err}"[:300]})
            log(f"  repeat {r + 1}/{repeats} {name}: {time.perf_counter() - t0:.1f}s wall")
    return out


def median(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def paired_ratio(a: list[dict], b: list[dict], key: str) -> float | None:
    """Median over repeats of ``a[r][key] / b[r][key]`` (pairs share a repeat's load)."""
    ratios = [x[key] / y[key] for x, y in zip(a, b) if key in x and key in y and y[key]]
    return median(ratios)


def matmul_peak(device: str, dtype: torch.dtype, n: int, min_seconds: float = 0.3) -> dict:
    """FLOP/s of an ``n`` x ``n`` x ``n`` matmul in ``dtype``: the utilisation denominator."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    sync(device)
    iters, t0 = 0, time.perf_counter()
    while True:
        a @ b
        iters += 1
        sync(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds and iters >= 3:
            break
    return {"seconds": elapsed, "flops": 2.0 * n**3 * iters, "flop_per_s": 2.0 * n**3 * iters / elapsed}


def load() -> list[float]:
    """1-, 5- and 15-minute load averages: how busy the machine was."""
    return [round(x, 2) for x in os.getloadavg()]


# -- FLOP counting -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Extras:
    """What a method adds to the backbone's sequences (positions or attention keys)."""

    encoder_prompt: int = 0  # positions prepended to the encoder input (prompt tuning)
    encoder_self_keys: int = 0  # keys added to every encoder self-attention (prefix tuning)
    decoder_self_keys: int = 0
    decoder_cross_keys: int = 0


def method_extras(module) -> Extras:
    """Reads the prompt / prefix lengths of one of our modules (zero where it has none)."""
    prompt = getattr(getattr(module, "prompt", None), "length", 0)
    keys = {}
    prefixes = getattr(module, "prefixes", None)
    if prefixes is not None:
        for name, encoder in prefixes.items():
            keys[name] = encoder.shape[3]  # [L, 2, H, P, D]
    return Extras(int(prompt), keys.get("encoder_self", 0), keys.get("decoder_self", 0), keys.get("decoder_cross", 0))


def t5_forward_flops(spec, batch: int, enc_len: int, dec_len: int, extras: Extras = Extras()) -> tuple[float, float]:
    """Forward matmul FLOPs of T5 on padded shapes: (weight matmuls, attention matmuls).

    Counted per matmul (2 m n k): encoder q/k/v/o, gated FFN wi_0/wi_1/wo, scores and
    attention x values; decoder self- and cross-attention the same (cross-attention keys and
    values project the encoder output), LM head over the vocabulary. Embedding lookups,
    norms, softmax, dropout and adapter matmuls (LoRA, prefix MLP) are not counted.
    """
    d, ff, heads, dkv, layers, vocab = (
        spec.d_model,
        spec.d_ff,
        spec.num_heads,
        spec.d_kv,
        spec.num_layers,
        spec.vocab_size,
    )
    inner = heads * dkv
    t = enc_len + extras.encoder_prompt
    s = dec_len
    enc_w = 2 * batch * t * (4 * d * inner + 3 * d * ff)
    enc_a = 2 * 2 * batch * heads * t * (t + extras.encoder_self_keys) * dkv
    dec_w = 2 * batch * (s * (4 * d * inner + 2 * d * inner + 3 * d * ff) + t * 2 * d * inner)
    dec_a = 2 * 2 * batch * heads * s * ((s + extras.decoder_self_keys) + (t + extras.decoder_cross_keys)) * dkv
    head = 2 * batch * s * d * vocab
    return float(layers * (enc_w + dec_w) + head), float(layers * (enc_a + dec_a))


def training_flops(
    spec, batch: int, enc_len: int, dec_len: int, extras: Extras = Extras(), backbone_trains: bool = True
) -> float:
    """Forward + backward matmul FLOPs of one training step on padded shapes, trainable-aware.

    Backward of a weight matmul costs 2x its forward when the weight trains (input and weight
    gradients) and 1x when it is frozen (input gradient only, which the trainable prompt /
    prefix / adapters below it still need); attention matmuls have no weights: 2x. So model
    tuning counts 3x forward, frozen-backbone methods about 2x.
    """
    weights, attention = t5_forward_flops(spec, batch, enc_len, dec_len, extras)
    return weights * (3.0 if backbone_trains else 2.0) + attention * 3.0


# -- throughput --------------------------------------------------------------------------------
def rates(sums: dict, computed: bool = False) -> dict:
    """Throughputs of timed sums (``seconds``, ``cpu_seconds``, ``examples``, ``real_tokens``, ``flops``;
    with ``computed`` also ``computed_tokens``, the padded ones)."""
    seconds, cpu = sums["seconds"], sums["cpu_seconds"]
    out = {
        "examples_per_s": sums["examples"] / seconds,
        "cpu_examples_per_s": sums["examples"] / cpu if cpu > 0 else None,
        "tokens_per_s": sums["real_tokens"] / seconds,
    }
    if computed:
        out["computed_tokens_per_s"] = sums["computed_tokens"] / seconds
    out["flop_per_s"] = sums["flops"] / seconds
    return out


def step_stats(
    ends: list[tuple[float, float]],
    shapes: list[tuple[int, int, int, int]],
    spec,
    extras: Extras,
    backbone_trains: bool,
    accumulate: int = 1,
) -> dict:
    """Throughput of the timed optimizer steps (all but the first, the warm-up): wall and process CPU
    time (``ends``: one per step), examples, real and computed (padded) tokens, matmul FLOPs of the
    padded shapes (``shapes``: one per (micro-)batch, ``accumulate`` per step)."""
    steps = len(shapes) // accumulate
    if len(ends) < steps:
        raise RuntimeError(f"only {len(ends)} of {steps} steps ran")
    timed = shapes[accumulate:]
    sums = {
        "seconds": ends[steps - 1][0] - ends[0][0],
        "cpu_seconds": ends[steps - 1][1] - ends[0][1],
        "steps": steps - 1,
        "examples": sum(b for b, _, _, _ in timed),
        "real_tokens": sum(r for _, _, _, r in timed),
        "computed_tokens": sum(b * (t + s) for b, t, s, _ in timed),  # the prompt's positions are not input tokens
        "flops": sum(training_flops(spec, b, t, s, extras, backbone_trains) for b, t, s, _ in timed),
    }
    return {
        **sums,
        **rates(sums),
        "padded_input_per_step": sum(t for _, t, _, _ in timed) / len(timed),  # per (micro-)batch
    }
