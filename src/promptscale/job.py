"""The one place a job is built: config -> ``JobSpec`` (checked, hashed, typed) -> ``Job``.

Training (``train.run``), prompt ensembles, soft-prompt neighbours, prompt banks, the benchmark
and the tests all build through here, so a job means the same thing everywhere:

1. ``JobSpec.from_config``: the config is upgraded (configs saved before the recipe and
   evaluation blocks existed), checked (unknown keys, impossible values, fp16, ``figure.*``)
   and hashed; the recipe and evaluation blocks become typed objects. No data, no model yet.
2. ``build_job``: seed, data (read and validated before any model exists, so a bad file fails
   in seconds), method (builds its own backbone), records bound, data tokenised.
3. ``rebuild_job``: a finished run from its saved ``.hydra/config.yaml`` and its saved tensors
   (the best checkpoint), never from a replayed sequence of random draws: a random-init backbone
   is a pure function of the run's seed (``ModelSpec.seed``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from promptscale.config_checks import check_config
from promptscale.data.datamodule import SuperGlueDataModule
from promptscale.evaluation import EvaluationSpec
from promptscale.hardware import resolve_precision
from promptscale.methods.base import TextToTextModule
from promptscale.models import ModelSpec
from promptscale.optim import OptimizerSpec
from promptscale.speed import SpeedSpec, configure
from promptscale.store.hashing import config_hash, hashable_config

log = logging.getLogger(__name__)
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@dataclass(frozen=True)
class Recipe:
    """How long and in which batches a job trains, and with which optimizer (``recipe`` block).

    Set by the method's config file (``conf/method/<name>.yaml``: the paper's recipe), read
    here once: the data module gets the batch size, the trainer the steps and the evaluation
    interval, the method the optimizer. Nothing else carries them.

    Attributes:
        batch_size: Global training batch (all ranks together).
        max_steps: Optimizer steps.
        val_check_interval: Optimizer steps between dev evaluations (best-checkpoint selection).
        optimizer: The optimizer and schedule; ``None`` for a method that does not train.
    """

    batch_size: int
    max_steps: int
    val_check_interval: int
    optimizer: OptimizerSpec | None

    @classmethod
    def from_config(cls, node: Any) -> Recipe:
        values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        for key in ("batch_size", "max_steps", "val_check_interval"):
            value = values.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"recipe.{key} must be a positive integer, got {value!r}")
        optimizer = values.get("optimizer")
        spec = OptimizerSpec(**optimizer, total_steps=values["max_steps"]) if optimizer else None
        return cls(values["batch_size"], values["max_steps"], values["val_check_interval"], spec)


@dataclass
class JobSpec:
    """A checked job config, before any data or model exists.

    Attributes:
        cfg: The composed config (multi-task jobs: ``data.tasks`` set to ``joint_tasks``).
        config: The resolved config as plain data (logged, hashed).
        config_hash: The job's identity in the results store.
        recipe: The typed ``recipe`` block.
        evaluation: The typed ``evaluation`` block (protocol, generation length).
        method_class: The method's class (its name, whether it trains, what it reads).
        speed: The typed ``speed`` block (how steps run; not hashed, see ``speed.py``).
    """

    cfg: DictConfig
    config: dict
    config_hash: str
    recipe: Recipe
    evaluation: EvaluationSpec
    method_class: type[TextToTextModule]
    speed: SpeedSpec = SpeedSpec()

    @classmethod
    def from_config(cls, cfg: DictConfig) -> JobSpec:
        """Upgrades, checks and hashes ``cfg`` (a copy); fails before any data is read."""
        cfg = upgrade_config(cfg)
        check_config(cfg)
        method_class = get_class(cfg.method._target_)
        use_joint_tasks(cfg, method_class)
        with open_dict(cfg.trainer):  # before hashing: runs on hardware of different precision never share a hash
            cfg.trainer.precision = resolve_precision(cfg.trainer.get("precision", "32-true"), cfg.trainer.accelerator)
        config = OmegaConf.to_container(cfg, resolve=True)
        recipe = Recipe.from_config(cfg.recipe)
        if method_class.trains and recipe.optimizer is None:
            raise ValueError(f"method {method_class.name} trains: set recipe.optimizer (name, lr, ...)")
        evaluation = EvaluationSpec(**cfg.evaluation, strip_sentinel=bool(cfg.data.target_sentinel))
        speed = SpeedSpec(**(cfg.get("speed") or {}))  # configs saved before the block: the defaults
        return cls(cfg, config, config_hash(hashable_config(config)), recipe, evaluation, method_class, speed)

    @property
    def method_name(self) -> str:
        """The method's identity in rows, figures and W&B (the class's ``name``)."""
        return self.method_class.name

    @property
    def primary_protocol(self) -> str:
        """The protocol that selects the best step: the method's own (prompt design) or the config's."""
        return self.method_class.protocol or self.evaluation.protocol


@dataclass
class Job:
    """A built job: its spec, its data (loaded, attached) and its method (backbone built)."""

    spec: JobSpec
    data: SuperGlueDataModule
    method: TextToTextModule

    def autocast(self) -> contextlib.AbstractContextManager:
        """The job's mixed precision outside a Lightning trainer (what ``bf16-mixed`` applies inside one)."""
        if str(self.spec.cfg.trainer.precision).startswith("bf16"):
            return torch.autocast(self.method.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def build_job(spec: JobSpec, training: bool = True) -> Job:
    """Seeds, loads and validates the data, builds the method and tokenises the data for it.

    Args:
        spec: The checked job.
        training: Read what training needs (the train split); ``False`` reads the evaluation
            split only (and train where the method needs it regardless: K-shot demonstrations).
    """
    cfg = spec.cfg
    L.seed_everything(cfg.seed, workers=True)
    data = instantiate(cfg.data, seed=cfg.seed, batch_size=spec.recipe.batch_size)
    data.load(train=spec.method_class.reads_train_split(cfg.method, training))
    method = instantiate(cfg.method, _partial_=True)(
        model=model_spec(cfg),
        tasks=list(cfg.data.tasks),
        optimizer=spec.recipe.optimizer,
        evaluation=spec.evaluation,
    )
    configure(method, spec.speed)  # applied by the method's setup()
    method.bind_records(data.records)
    data.attach(method.tokenizer, method.format)
    return Job(spec, data, method)


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``promptscale-train overrides...`` composes, for use outside a Hydra run.

    ``paths.output_dir`` (Hydra's run folder) defaults to ``paths.root``; override it as needed.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=["paths.output_dir=${paths.root}", *overrides])


def model_spec(cfg: DictConfig) -> ModelSpec:
    """The job's backbone spec: its random init (``model.init=random``) is drawn from the run's seed."""
    return instantiate(cfg.model, seed=cfg.seed)


def rebuild_job(job_dir: str | Path, checkpoint: str | Path | None = None) -> Job:
    """A finished run rebuilt for evaluation: saved config, then saved tensors.

    Args:
        job_dir: The run's output folder (holding ``.hydra/config.yaml``).
        checkpoint: A checkpoint of the run to load; ``None`` keeps the freshly built method.
    """
    job = build_job(JobSpec.from_config(load_job_config(job_dir)), training=False)
    if checkpoint is not None:
        job.method.load_trained(checkpoint)
    job.method.eval()
    return job


def load_job_config(job_dir: str | Path) -> DictConfig:
    """A run's saved config with ``paths.output_dir`` pointing at ``job_dir``."""
    job_dir = Path(job_dir)
    path = job_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a promptscale run folder")
    cfg = OmegaConf.load(path)
    if OmegaConf.select(cfg, "paths") is not None:
        OmegaConf.update(cfg, "paths.output_dir", str(job_dir), force_add=True)
    return cfg


def use_joint_tasks(cfg: DictConfig, method_class: type[TextToTextModule]) -> None:
    """Points a multi-task method at ``joint_tasks``, the tasks it trains on together.

    A sweep's ``task`` axis then gives a multi-task method the same job once per task value;
    they share one config hash, so the first trains and the others are skipped by the store.
    """
    if cfg.get("joint_tasks") and method_class.multi_task:
        cfg.data.tasks = list(cfg.joint_tasks)


# -- configs saved before the recipe and evaluation blocks ----------------------------------
LEGACY_RECIPE = ("batch_size", "max_steps", "val_check_interval")
LEGACY_OPTIMIZER = ("lr", "weight_decay", "decay_rate", "clip_threshold")
LEGACY_DROPPED = ("eval_mode", "max_new_tokens", "optimizer")


def upgrade_config(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` in today's shape; configs saved by earlier versions gain ``recipe`` and
    ``evaluation`` blocks built from the keys the method used to carry, so their runs rebuild.

    Earlier versions kept the recipe in the method (``method.lr``, ``method.batch_size``, ...,
    ``method.eval_mode``) with ``data.batch_size`` / ``trainer.max_steps`` overriding it, and
    always evaluated by rank classification unless ``eval_mode=generate``.
    """
    cfg = cfg.copy()
    if "recipe" in cfg:
        return cfg
    method = cfg.method
    target = str(method._target_)
    with open_dict(cfg):
        trains = not target.endswith("PromptDesign")
        optimizer = None
        if trains:
            name = "adamw" if target.endswith(("PrefixTuning", "LoRA")) else "adafactor"
            name = str(method.get("optimizer") or name)
            optimizer = {k: method[k] for k in LEGACY_OPTIMIZER if k in method}
            if name == "adamw":
                optimizer = {k: v for k, v in optimizer.items() if k in ("lr", "weight_decay")}
            optimizer.update(name=name, schedule="linear" if target.endswith("PrefixTuning") else "constant")
        cfg.recipe = {
            "batch_size": cfg.data.get("batch_size") or method.get("batch_size", 32),
            "max_steps": cfg.trainer.get("max_steps") or method.get("max_steps", 30_000),
            "val_check_interval": cfg.trainer.get("val_check_interval") or method.get("val_check_interval", 1_000),
            "optimizer": optimizer,
        }
        cfg.evaluation = {
            "protocol": method.get("eval_mode", "rank"),
            "max_new_tokens": method.get("max_new_tokens", 62),
        }
        for key in (*LEGACY_RECIPE, *LEGACY_OPTIMIZER, *LEGACY_DROPPED):
            method.pop(key, None)
        cfg.data.pop("batch_size", None)
        cfg.trainer.pop("max_steps", None)
        cfg.trainer.pop("val_check_interval", None)
    return cfg
