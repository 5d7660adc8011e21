"""The shared base of every method: text-to-text loss, evaluation, metrics, optimizer, counts.

A method subclasses ``TextToTextModule`` and changes only what makes it that method: which
parameters train (``configure_trainable``), what the encoder sees (``encoder_inputs``) and, if
needed, the text format (``format``) or the optimizer. Everything a result depends on beyond
that (how choices are scored, how metrics are computed and logged, which checkpoint counts as
best) lives here once, so methods are comparable by construction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput
from transformers.optimization import Adafactor

from promptscale.data.example import Example
from promptscale.data.formats import format_examples, t5_postprocess
from promptscale.data.tasks import get_task
from promptscale.distributed import gather_predictions
from promptscale.metrics import score_examples, task_score
from promptscale.models import ModelSpec
from promptscale.modules.attention import use_shared_bias_attention

log = logging.getLogger(__name__)
EVAL_MODES = ("rank", "generate")


@dataclass
class TaskResult:
    """The best evaluation of one task so far: its metrics and the step that produced them."""

    score: float = float("-inf")
    step: int = -1
    metrics: dict[str, float] = field(default_factory=dict)
    examples: int = 0  # evaluation examples scored (each once, also across ranks)


class TextToTextModule(L.LightningModule):
    """Base LightningModule for T5 methods.

    Args:
        model: The backbone spec; the weights are built here, never passed in (DESIGN rule 6).
        tasks: Tasks this module is trained and evaluated on.
        lr: Learning rate (constant, as in the paper's recipes).
        weight_decay: Decay per step as T5X applies it (not multiplied by the learning rate).
        decay_rate: Adafactor's second-moment decay exponent (0.8 in T5X).
        clip_threshold: Adafactor's update clipping threshold.
        batch_size: Recipe batch size, used when ``data.batch_size`` is not set.
        max_steps: Recipe training steps, used when ``trainer.max_steps`` is not set.
        val_check_interval: Recipe steps between dev evaluations (for early stopping).
        eval_mode: ``rank`` scores each verbalised choice by log likelihood; ``generate``
            decodes greedily and maps the text back with T5's post-processing. Open-ended tasks
            (WSC) are always generated.
        max_new_tokens: Generation length limit.
    """

    task_prefix: bool = True  # keep the task name in the input (T5 / multi-task style)
    trains: bool = True  # False for methods with no training step (prompt design)
    frozen_backbone: bool = False  # checkpoints keep only trainable tensors when True
    multi_task: bool = False  # trains on every task of a job at once (see train.use_joint_tasks)

    def __init__(
        self,
        model: ModelSpec,
        tasks: Sequence[str],
        lr: float,
        weight_decay: float = 0.0,
        decay_rate: float = 0.8,
        clip_threshold: float = 1.0,
        batch_size: int = 32,
        max_steps: int = 30_000,
        val_check_interval: int = 1_000,
        eval_mode: str = "rank",
        max_new_tokens: int = 62,
    ) -> None:
        super().__init__()
        if eval_mode not in EVAL_MODES:
            raise ValueError(f"method.eval_mode={eval_mode!r} is not one of {EVAL_MODES}")
        for key, value in (
            ("lr", lr),
            ("batch_size", batch_size),
            ("max_steps", max_steps),
            ("val_check_interval", val_check_interval),
            ("max_new_tokens", max_new_tokens),
        ):
            if value <= 0:
                raise ValueError(f"method.{key} must be positive, got {value}")
        self.spec = model
        self.tasks = tuple(get_task(t).name for t in tasks)
        self.lr, self.weight_decay, self.decay_rate, self.clip_threshold = lr, weight_decay, decay_rate, clip_threshold
        self.batch_size, self.max_steps, self.val_check_interval = batch_size, max_steps, val_check_interval
        self.eval_mode, self.max_new_tokens = eval_mode, max_new_tokens
        self.tokenizer = model.build_tokenizer()
        self.model = model.build()
        if len(self.tokenizer) > self.model.config.vocab_size:
            raise ValueError(
                f"tokenizer has {len(self.tokenizer)} tokens but model {model.name!r} "
                f"only {self.model.config.vocab_size} embedding rows"
            )
        self.model_params = count(self.model.parameters())  # the backbone, before method parameters
        self.best: dict[str, TaskResult] = {}
        self._predictions: list[tuple[Example, int | str]] = []
        self.strict_loading = not self.frozen_backbone
        self.saving_for_resume = False  # set by resume.ResumeCheckpoint while it writes last.ckpt

    # -- what a method customises ---------------------------------------------------------
    def bind_records(self, records: dict[tuple[str, str], list[dict]]) -> None:
        """Sees the loaded records ``{(task, split): [record, ...]}`` before formatting.

        A no-op here; prompt design draws its K-shot demonstrations from the train split.
        """

    def result_fields(self) -> dict[str, object]:
        """Method-specific facts added to every result row (prompt design: template, shots).

        Empty here; keys must not clash with the standard row fields (``rows.result_rows``).
        """
        return {}

    def format(self, task: str, record: dict, train: bool) -> list[Example]:
        """Text format of this method: T5's, with or without the task-name prefix."""
        return format_examples(task, record, prefix=self.task_prefix, train=train)

    def encoder_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Keyword arguments for the T5 encoder (``input_ids`` or ``inputs_embeds``, and the mask)."""
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    # -- training ---------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean token cross-entropy of ``labels`` [B, L] given the inputs [B, T]."""
        return self.model(**self.encoder_inputs(input_ids, attention_mask), labels=labels).loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(batch["input_ids"], batch["attention_mask"], batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adafactor with a constant rate, no parameter scaling, no relative step (T5X settings).

        HF's Adafactor multiplies weight decay by the learning rate and T5X does not, so the
        configured per-step decay is divided by ``lr`` here.
        """
        return Adafactor(
            self.trainable_parameters(),
            lr=self.lr,
            weight_decay=self.weight_decay / self.lr,
            decay_rate=-self.decay_rate,
            clip_threshold=self.clip_threshold,
            beta1=None,
            scale_parameter=False,
            relative_step=False,
            warmup_init=False,
        )

    def setup(self, stage: str) -> None:
        """Speedups with bitwise-identical results, applied once the subclass has built its model.

        * On plain SDPA, T5's position-bias mask is merged once per stack instead of once per
          layer (``modules/attention.py``); other backends (prefix tuning's) are left alone.
        * Under ``bf16-mixed``, frozen ``nn.Linear`` weights are stored in bf16: autocast would
          cast them before every matmul anyway (it caches casts only of weights that require
          grad), so this saves a cast of every frozen weight per forward pass and half their
          memory. Embeddings, norms and trainable tensors stay fp32; ``32-true`` is unchanged.
        """
        use_shared_bias_attention(self.model)
        if self.frozen_backbone and str(self.trainer.precision) == "bf16-mixed":
            cast_frozen_linears(self.model, torch.bfloat16)

    # -- evaluation -------------------------------------------------------------------------
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[BaseModelOutput, torch.Tensor]:
        """Runs the encoder once; returns its output [B, T', H] and the matching mask [B, T']."""
        kwargs = self.encoder_inputs(input_ids, attention_mask)
        return self.model.encoder(**kwargs, return_dict=True), kwargs["attention_mask"]

    def choice_log_likelihoods(self, batch: dict) -> torch.Tensor:
        """Sum of token log-probabilities of every candidate [C], each example encoded once."""
        encoded, mask = self.encode(batch["input_ids"], batch["attention_mask"])
        owner = batch["choice_owner"]  # [C] example index of each candidate
        hidden = encoded.last_hidden_state  # [B, T', H]
        labels = batch["choice_labels"]  # [C, L], IGNORE-padded
        # Cross-attention keys/values are projected once per example, not once per choice (the
        # decoder reads them from the cache), and no loss is computed: only the logits are used.
        logits = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden[owner]),
            attention_mask=mask[owner],
            decoder_input_ids=self.model._shift_right(labels),
            cache=cross_attention_cache(self.model, hidden, owner),
            use_cache=True,
        ).logits  # [C, L, V]
        logp = F.log_softmax(logits.float(), dim=-1)
        token_logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [C, L]
        return (token_logp * (labels >= 0)).sum(dim=-1)  # [C]

    def rank(self, batch: dict) -> list[int]:
        """Index of the most likely choice per example."""
        scores = self.choice_log_likelihoods(batch)  # [C]
        owner = batch["choice_owner"].tolist()
        best: dict[int, tuple[float, int]] = {}
        position = [0] * len(batch["examples"])
        for score, b in zip(scores.tolist(), owner):
            if b not in best or score > best[b][0]:
                best[b] = (score, position[b])
            position[b] += 1
        return [best.get(b, (0.0, -1))[1] for b in range(len(batch["examples"]))]

    def generate_texts(self, batch: dict) -> list[str]:
        """Greedy decoding of every example in the batch."""
        encoded, mask = self.encode(batch["input_ids"], batch["attention_mask"])
        out = self.model.generate(
            encoder_outputs=encoded,
            attention_mask=mask,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            num_beams=1,
        )  # [B, L']
        return self.tokenizer.batch_decode(out, skip_special_tokens=True)

    def predict_batch(self, batch: dict) -> list[int | str]:
        """Rank classification where the task has choices and ``eval_mode`` asks for it; else text."""
        examples: list[Example] = batch["examples"]
        if self.eval_mode == "rank" and all(ex.choices for ex in examples):
            return self.rank(batch)
        texts = self.generate_texts(batch)
        return [t5_postprocess(ex.task, text, ex) for ex, text in zip(examples, texts)]

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        """Moves tensors only: eval batches also carry their ``Example`` objects."""
        examples = batch.pop("examples", None)
        batch = super().transfer_batch_to_device(batch, device, dataloader_idx)
        if examples is not None:
            batch["examples"] = examples
        return batch

    def on_validation_epoch_start(self) -> None:
        self._predictions = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._predictions += list(zip(batch["examples"], self.predict_batch(batch)))

    def on_validation_epoch_end(self) -> None:
        scores = []
        predictions = gather_predictions(self._predictions)  # every rank's, each example once
        counts: dict[str, int] = {}
        for ex, _ in predictions:
            counts[ex.task] = counts.get(ex.task, 0) + 1
        for task, metrics in self.compute_metrics(predictions).items():
            score = task_score(task, metrics)
            scores.append(score)
            for name, value in metrics.items():
                self.log(f"val/{task}/{name}", value)
            self.log(f"val/{task}/score", score)
            if score > self.best.setdefault(task, TaskResult()).score:
                self.best[task] = TaskResult(score, self.global_step, metrics, counts[task])
        if scores:
            self.log("val/score", sum(scores) / len(scores), prog_bar=True)

    def compute_metrics(self, predictions: list[tuple[Example, int | str]]) -> dict[str, dict[str, float]]:
        """Metrics per task over this epoch's predictions, in percent."""
        by_task: dict[str, list[tuple[Example, int | str]]] = {}
        for ex, pred in predictions:
            by_task.setdefault(ex.task, []).append((ex, pred))
        return {
            task: score_examples(task, [e for e, _ in pairs], [p for _, p in pairs]) for task, pairs in by_task.items()
        }

    # -- checkpoints and counts --------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Frozen-backbone methods save only what trains: a prompt checkpoint is kilobytes."""
        if self.frozen_backbone:
            keep = {name for name, p in self.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint["promptscale_best"] = {t: vars(r) for t, r in self.best.items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.best = {t: TaskResult(**r) for t, r in checkpoint.get("promptscale_best", {}).items()}

    def parameter_counts(self) -> dict[str, int]:
        """Measured counts: the backbone, everything, and what trains."""
        return {
            "model_params": self.model_params,
            "total_params": count(self.parameters()),
            "trainable_params": count(p for p in self.parameters() if p.requires_grad),
        }


def count(params) -> int:
    """Number of scalars in an iterable of parameters (shared tensors counted once)."""
    seen, total = set(), 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def cast_frozen_linears(model: nn.Module, dtype: torch.dtype) -> None:
    """Casts the weight of every ``nn.Linear`` that does not train to ``dtype``, in place."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and not module.weight.requires_grad and module.weight.dtype != dtype:
            module.weight.data = module.weight.data.to(dtype)


def cross_attention_cache(model: nn.Module, hidden: torch.Tensor, owner: torch.Tensor) -> EncoderDecoderCache:
    """Every decoder layer's cross-attention keys/values of ``hidden`` [B, T, H], one row per choice.

    Projected once per example, then indexed by ``owner`` [C]: [C, heads, T, d_kv] per layer.
    The layers' own ``k``/``v`` modules run, so adapters on them (LoRA) apply.
    """
    batch, length = hidden.shape[:2]
    layers = []
    for block in model.decoder.block:
        attention = block.layer[1].EncDecAttention
        shape = (batch, length, -1, attention.key_value_proj_dim)
        key = attention.k(hidden).view(shape).transpose(1, 2)[owner]  # [C, heads, T, d_kv]
        value = attention.v(hidden).view(shape).transpose(1, 2)[owner]  # [C, heads, T, d_kv]
        layers.append((key, value))
    return EncoderDecoderCache(DynamicCache(), DynamicCache(layers))
