"""Entry point: ``promptscale-train [overrides]`` (``-m`` or an experiment for sweeps).

One job is linear: check the config -> skip if finished -> seed -> data (validated before any
model exists) -> method (builds its own backbone) -> trainer -> fit (resuming this config's
last checkpoint, if an earlier attempt left one) / evaluate -> result rows, appended at once by
global rank 0. Resume, preemption and the non-finite loss guard live in ``resume.py``.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import get_class, instantiate
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from promptscale import tracking, wandb_report
from promptscale.config_checks import check_config
from promptscale.resume import NonFiniteLossError, ResumeCheckpoint, cluster_plugins
from promptscale.store.hashing import config_hash, hashable_config
from promptscale.store.results import ResultsStore
from promptscale.store.rows import failure_rows, method_name, result_rows

log = logging.getLogger(__name__)
# Noise that says nothing about this run: our module deliberately moves eval batches itself.
warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device`.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
# conf/hydra/launcher/submitit_*.yaml share the plugin schemas' names on purpose: Hydra then
# checks their keys against the schema (and, should it drop that, they are complete on their own).
warnings.filterwarnings("ignore", message=".*is validated against ConfigStore schema with the same name.*")
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def run(cfg: DictConfig) -> list[dict] | None:
    """Runs one job; returns its result rows, or ``None`` if the store already has them."""
    check_config(cfg)  # misspelled keys, impossible values, fp16: before any data or model
    use_joint_tasks(cfg)
    store = ResultsStore(cfg.results)
    config = OmegaConf.to_container(cfg, resolve=True)
    chash = config_hash(hashable_config(config))
    if store.has_config(chash):
        log.info("config %s is already in %s: skipping", chash, store.path)
        return None
    L.seed_everything(cfg.seed, workers=True)
    data = instantiate(cfg.data, seed=cfg.seed)
    data.load()
    method = instantiate(cfg.method, _partial_=True)(model=instantiate(cfg.model), tasks=list(cfg.data.tasks))
    method.bind_records(data.records)
    data.attach(method.tokenizer, method.format, method.batch_size)
    counts = method.parameter_counts()
    run_name = f"{cfg.experiment_name}-{uuid.uuid4().hex[:8]}"
    logger = (
        None
        if rank_zero_only.rank
        else instantiate(cfg.logger).make_logger(  # W&B: rank 0 only
            name=run_name,
            group=cfg.experiment_name,
            save_dir=str(Path(cfg.paths.output_dir)),
            tags=[method_name(cfg), cfg.model.name, *cfg.data.tasks],
            config={**config, "params": counts},
        )
    )
    exit_code = 1
    try:
        trainer = make_trainer(cfg, method, logger, chash)
        resume = next((c for c in trainer.callbacks if isinstance(c, ResumeCheckpoint)), None)
        if method.trains:
            trainer.fit(method, datamodule=data, ckpt_path=resume.resume_path() if resume else None)
        if not method.best:  # no dev evaluation happened during training (or nothing trains)
            trainer.validate(method, datamodule=data)
        rows = result_rows(cfg, method, counts, chash, run_name, tracking.run_id(logger))
        rows = tracking.redact(rows, keys=False)  # no credential's value lands in the store
        if trainer.is_global_zero:  # one writer, whatever the number of ranks
            store.append(rows, once=True)  # a twin job that finished first keeps its rows
            wandb_report.log_job_summary(logger, rows)  # best dev metrics per task, for W&B charts
            if resume:
                resume.cleanup()  # finished: the store skips this config from now on
        exit_code = 0
        return rows
    except NonFiniteLossError as err:  # a result in itself: this config diverges
        if trainer.is_global_zero:
            rows = failure_rows(cfg, counts, chash, run_name, tracking.run_id(logger), err)
            store.append(tracking.redact(rows, keys=False))
        raise
    finally:
        tracking.finish(logger, exit_code)


def use_joint_tasks(cfg: DictConfig) -> None:
    """Points a multi-task method at ``joint_tasks``, the tasks it trains on together.

    A sweep's ``task`` axis then gives a multi-task method the same job once per task value;
    they share one config hash, so the first trains and the others are skipped by the store.
    """
    if cfg.get("joint_tasks") and get_class(cfg.method._target_).multi_task:
        cfg.data.tasks = list(cfg.joint_tasks)


def make_trainer(cfg: DictConfig, method, logger, chash: str | None = None) -> L.Trainer:
    """The Lightning trainer; steps and eval interval (optimizer steps) fall back to the method's recipe.

    The data module shards batches per rank itself (``distributed.py``), so Lightning's
    ``DistributedSampler`` injection is off; on SLURM, requeueing is left to submitit.
    """
    max_steps = cfg.trainer.max_steps or method.max_steps
    interval = min(cfg.trainer.val_check_interval or method.val_check_interval, max_steps)
    interval *= cfg.trainer.get("accumulate_grad_batches") or 1  # Lightning counts batches, not steps
    callbacks = [instantiate(c) for c in cfg.callbacks.values()] if method.trains else []
    for callback in callbacks:
        if isinstance(callback, ResumeCheckpoint):  # last.ckpt under <root>/checkpoints/<config hash>
            callback.bind(chash or config_hash(hashable_config(cfg)))
    plugins = cluster_plugins()
    return instantiate(
        cfg.trainer,
        max_steps=max_steps,
        val_check_interval=interval,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        enable_checkpointing=bool(callbacks),
        default_root_dir=cfg.paths.output_dir,
        use_distributed_sampler=False,
        **({"plugins": plugins} if plugins else {}),
    )


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
