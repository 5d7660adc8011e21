"""The shared base of every method: the loss, the one scoring path, evaluation, optimizer, counts.

A method subclasses ``TextToTextModule`` and changes only what makes it that method: which
parameters train (in its constructor), what the encoder sees (``encoder_inputs``) and, if
needed, the text format (``format``). Everything a result depends on beyond that lives here
once, so methods are comparable by construction:

* the scoring path: ``encode`` -> ``choice_log_likelihoods`` (rank classification) and
  ``generate`` (greedy decoding). Evaluation (``evaluation.py``), prompt ensembles, prompt banks
  and the benchmark all call these, never a copy;
* the evaluation hooks: both protocols per evaluation, the best step per task, metric logging;
* the optimizer, built from the recipe's typed spec (``optim.build_optimizer``);
* measured parameter counts, and checkpoints of frozen-backbone methods that hold only what trains.

Recipe values (batch size, steps, evaluation interval) are not the method's: the job reads them
from the config once (``job.py``) and hands the data module and trainer what they need.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from transformers import StoppingCriteriaList
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from promptscale import speed
from promptscale.data.example import Example
from promptscale.data.formats import format_examples
from promptscale.data.tasks import get_task
from promptscale.distributed import gather_unique
from promptscale.evaluation import EvaluationSpec, ExampleResult, TaskResult, evaluate_batch, log_items, update_best
from promptscale.models import ModelSpec
from promptscale.optim import OptimizerSpec, build_optimizer

log = logging.getLogger(__name__)


class Encoded(NamedTuple):
    """An encoder pass: its output ``last_hidden_state`` [B, T', H] and the matching mask [B, T']."""

    output: BaseModelOutput
    mask: torch.Tensor


class TextToTextModule(L.LightningModule):
    """Base LightningModule of the T5 methods.

    Args:
        model: The backbone spec; the weights are built here, never passed in (DESIGN rule 6).
        tasks: Tasks this module is trained and evaluated on.
        optimizer: The recipe's optimizer (``recipe.optimizer``); ``None`` for a method that
            does not train, or one built for evaluation only.
        evaluation: Protocols and generation length (the ``evaluation`` config block).

    Class attributes:
        name: The method's identity in result rows, figures and W&B (its config file's name).
        task_prefix: Keep the task name in front of the input (T5 and multi-task style).
        trains: False for methods without a training step (prompt design).
        frozen_backbone: Checkpoints keep only trainable tensors.
        multi_task: Trains on every task of a job at once (see ``job.use_joint_tasks``).
        protocol: A primary evaluation protocol the method fixes, whatever ``evaluation`` says.
    """

    name: ClassVar[str] = ""
    task_prefix: ClassVar[bool] = True
    trains: ClassVar[bool] = True
    frozen_backbone: ClassVar[bool] = False
    multi_task: ClassVar[bool] = False
    protocol: ClassVar[str | None] = None

    def __init__(
        self,
        model: ModelSpec,
        tasks: Sequence[str],
        optimizer: OptimizerSpec | None = None,
        evaluation: EvaluationSpec | None = None,
    ) -> None:
        super().__init__()
        if not self.trains and optimizer is not None:
            raise ValueError(f"{self.name} has no training step and no learning rate: set recipe.optimizer=null")
        evaluation = evaluation or EvaluationSpec()
        self.spec = model
        self.tasks = tuple(get_task(t).name for t in tasks)
        self.optimizer_spec = optimizer
        self.evaluation = replace(evaluation, protocol=self.protocol) if self.protocol else evaluation
        self.tokenizer = model.build_tokenizer()
        self.model = model.build()
        if len(self.tokenizer) > self.model.config.vocab_size:
            raise ValueError(
                f"tokenizer has {len(self.tokenizer)} tokens but model {model.name!r} "
                f"only {self.model.config.vocab_size} embedding rows"
            )
        self.model_params = count(self.model.parameters())  # the backbone, before method parameters
        self.best: dict[str, TaskResult] = {}
        self._results: list[ExampleResult] = []
        self.strict_loading = not self.frozen_backbone
        self.saving_for_resume = False  # set by resume.ResumeCheckpoint while it writes last.ckpt

    # -- what a method customises ---------------------------------------------------------
    @classmethod
    def reads_train_split(cls, config: Mapping[str, Any], training: bool) -> bool:
        """Whether a job must load the train split: to train on it (prompt design: for demos)."""
        return training and cls.trains

    def bind_records(self, records: dict[tuple[str, str], list[dict]]) -> None:
        """Sees the loaded records ``{(task, split): [record, ...]}`` before formatting (a no-op here)."""

    def result_fields(self) -> dict[str, object]:
        """Method-specific facts added to every result row (prompt design: template, shots)."""
        return {}

    def format(self, task: str, record: dict, train: bool) -> list[Example]:
        """Text format of this method: T5's, with or without the task-name prefix."""
        return format_examples(task, record, prefix=self.task_prefix, train=train)

    def encoder_inputs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompts: Any = None
    ) -> dict[str, torch.Tensor]:
        """Keyword arguments of the T5 encoder: ``input_ids`` [B, T] (or ``inputs_embeds``) and the mask.

        ``prompts`` replaces a prompt-tuning method's own prompt per row; other methods have none.
        """
        if prompts is not None:
            raise TypeError(f"{self.name} has no soft prompt to replace")
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    # -- training ---------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean token cross-entropy of ``labels`` [B, L] given the inputs [B, T]."""
        return self.model(**self.encoder_inputs(input_ids, attention_mask), labels=labels).loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(batch["input_ids"], batch["attention_mask"], batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self):
        """The recipe's optimizer over the trainable parameters (``optim.build_optimizer``)."""
        if self.optimizer_spec is None:
            raise RuntimeError(f"{self.name} was built without an optimizer (recipe.optimizer): it cannot train")
        return build_optimizer(self.optimizer_spec, self.trainable_parameters())

    def setup(self, stage: str) -> None:
        """Speedups, applied once the subclass has built its model.

        * On plain SDPA, T5's position-bias mask is merged once per stack instead of once per
          layer (``modules/attention.py``); other backends (prefix tuning's) are left alone.
          Bitwise identical.
        * Under ``bf16-mixed``, frozen ``nn.Linear`` weights are stored in bf16: autocast would
          cast them before every matmul anyway (it caches casts only of weights that require
          grad), so this saves a cast of every frozen weight per forward pass and half their
          memory. Embeddings, norms and trainable tensors stay fp32; ``32-true`` is unchanged.
          Bitwise identical.
        * The job's ``speed`` switches (``speed.py``: direct CPU attention, dropout masks from
          random bits, compile), each within the tolerance ``tests/test_speed.py`` states.
        """
        speed.apply(self.model, speed.switches(self))
        if self.frozen_backbone and str(self.trainer.precision) == "bf16-mixed":
            cast_frozen_linears(self.model, torch.bfloat16)

    # -- the scoring path -------------------------------------------------------------------
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompts: Any = None) -> Encoded:
        """Runs the encoder once over inputs [B, T] (plus whatever the method prepends)."""
        kwargs = self.encoder_inputs(input_ids, attention_mask, prompts)
        return Encoded(self.model.encoder(**kwargs, return_dict=True), kwargs["attention_mask"])

    def choice_log_likelihoods(self, batch: dict, encoded: Encoded | None = None, prompts: Any = None) -> torch.Tensor:
        """Summed token log-probability of every candidate [C], each example encoded once.

        ``batch`` holds ``choice_owner`` [C] (example of each candidate) and ``choice_labels``
        [C, L] (IGNORE-padded target ids); ``encoded`` reuses an encoder pass of the batch.
        """
        if encoded is None:
            encoded = self.encode(batch["input_ids"], batch["attention_mask"], prompts)
        owner = batch["choice_owner"]  # [C]
        hidden = encoded.output.last_hidden_state  # [B, T', H]
        labels = batch["choice_labels"]  # [C, L]
        # Cross-attention keys/values are projected once per example, not once per choice (the
        # decoder reads them from the cache), and no loss is computed: only the logits are used.
        logits = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden[owner]),
            attention_mask=encoded.mask[owner],
            decoder_input_ids=self.model._shift_right(labels),
            cache=cross_attention_cache(self.model, hidden, owner),
            use_cache=True,
        ).logits  # [C, L, V]
        logp = F.log_softmax(logits.float(), dim=-1)
        token_logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [C, L]
        return (token_logp * (labels >= 0)).sum(dim=-1)  # [C]

    def generate(
        self, encoded: Encoded, max_new_tokens: int, stopping: StoppingCriteriaList | None = None
    ) -> torch.Tensor:
        """Greedy decoding from an encoder pass: ids [B, L'] starting with the decoder start token."""
        return self.model.generate(
            encoder_outputs=encoded.output,
            attention_mask=encoded.mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            stopping_criteria=stopping,
        )

    # -- evaluation -------------------------------------------------------------------------
    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        """Moves tensors only: eval batches also carry their ``Example`` objects."""
        examples = batch.pop("examples", None)
        batch = super().transfer_batch_to_device(batch, device, dataloader_idx)
        if examples is not None:
            batch["examples"] = examples
        return batch

    def on_validation_epoch_start(self) -> None:
        self._results = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._results += evaluate_batch(self, batch, self.evaluation)

    def on_validation_epoch_end(self) -> None:
        results = gather_unique(self._results, key=lambda r: r.example)  # every rank's, each example once
        metrics = update_best(self.best, results, self.global_step, self.evaluation.protocol)
        for key, value in log_items(metrics, self.evaluation.protocol).items():
            self.log(key, value, prog_bar=key == "val/score")
        self._results = []

    # -- checkpoints and counts --------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Frozen-backbone methods save only what trains: a prompt checkpoint is kilobytes."""
        if self.frozen_backbone:
            keep = {name for name, p in self.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint["promptscale_best"] = {t: vars(r) for t, r in self.best.items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.best = {t: TaskResult.from_state(r) for t, r in checkpoint.get("promptscale_best", {}).items()}

    def load_trained(self, path: str | Path) -> TextToTextModule:
        """Loads a saved checkpoint's tensors (and best evaluations) into this freshly built module.

        A job is rebuilt from its saved config and its saved tensors (``job.rebuild_job``), never
        from a replayed sequence of random draws.
        """
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)  # our own files
        self.on_load_checkpoint(checkpoint)
        self.load_state_dict(checkpoint["state_dict"], strict=self.strict_loading)
        return self

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
    """Casts the weight of every ``nn.Linear`` that does not train to ``dtype``, in place.

    A weight an embedding shares (the original T5's LM head is its input embedding) stays as it
    is: casting it would change the embedding lookups, which autocast leaves in fp32.
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for module in model.modules():
        if not isinstance(module, nn.Linear) or id(module.weight) in embeddings:
            continue
        if not module.weight.requires_grad and module.weight.dtype != dtype:
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
