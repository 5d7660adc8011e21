"""Entry point: ``promptscale-train [overrides]`` (``-m`` or an experiment for sweeps).

One job is linear: check and hash the config (``job.JobSpec``) -> skip if the store has it ->
claim the config (a twin launch skips it) -> build the job (seed, data validated before any
model exists, method) -> trainer -> fit (resuming this config's last checkpoint, if an earlier
attempt left one) / evaluate -> result rows, appended at once by global rank 0. Resume,
preemption and the non-finite loss guard live in ``resume.py``; claims in ``store/claims.py``;
how a job is built, in ``job.py``.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from promptscale import tracking
from promptscale.job import CONF_DIR, JobSpec, build_job
from promptscale.methods.base import TextToTextModule
from promptscale.report.wandb import log_job_summary
from promptscale.resume import NonFiniteLossError, ResumeCheckpoint, cluster_plugins, remove_orphans
from promptscale.store.claims import ConfigClaim, remove_claims
from promptscale.store.predictions import write_predictions
from promptscale.store.provenance import provenance
from promptscale.store.results import ResultsStore
from promptscale.store.rows import failure_rows, result_rows

log = logging.getLogger(__name__)
# Noise that says nothing about this run: our module deliberately moves eval batches itself.
warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device`.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
# conf/hydra/launcher/submitit_*.yaml share the plugin schemas' names on purpose: Hydra then
# checks their keys against the schema (and, should it drop that, they are complete on their own).
warnings.filterwarnings("ignore", message=".*is validated against ConfigStore schema with the same name.*")


def run(cfg: DictConfig) -> list[dict] | None:
    """Runs one job; returns its result rows, or ``None`` if the store has them or a twin runs it."""
    spec = JobSpec.from_config(cfg)  # misspelled keys, impossible values, fp16: before any data or model
    store = ResultsStore(spec.cfg.results)
    root = Path(spec.cfg.paths.root)
    if rank_zero_only.rank == 0:  # leftovers of finished configs: resume folders and claims
        remove_orphans(root / "checkpoints", store)
        remove_claims(root / "claims", store)
    if store.has_config(spec.config_hash):
        log.info("config %s is already in %s: skipping", spec.config_hash, store.path)
        return None
    with ConfigClaim(root / "claims", spec.config_hash) as claim:  # one trainer per config across launches
        if not claim.acquired or store.has_config(spec.config_hash):  # a twin holds it, or just finished it
            return None
        return train_job(spec, store)


def train_job(spec: JobSpec, store: ResultsStore) -> list[dict]:
    """Builds, trains (or only evaluates) and stores one claimed job."""
    job = build_job(spec)
    method, counts = job.method, job.method.parameter_counts()
    run_name = f"{spec.cfg.experiment_name}-{uuid.uuid4().hex[:8]}"
    logger = None if rank_zero_only.rank else make_logger(spec, run_name, counts)  # W&B: rank 0 only
    exit_code = 1
    try:
        trainer = make_trainer(spec, method, logger)
        machine = provenance(str(trainer.precision), str(trainer.strategy.root_device))
        resume = next((c for c in trainer.callbacks if isinstance(c, ResumeCheckpoint)), None)
        if method.trains:
            trainer.fit(method, datamodule=job.data, ckpt_path=resume.resume_path() if resume else None)
        if not method.best:  # no dev evaluation happened during training (or nothing trains)
            trainer.validate(method, datamodule=job.data)
        rows = result_rows(spec, method, counts, run_name, tracking.run_id(logger), machine)
        rows = tracking.redact(rows, keys=False)  # no credential's value lands in the store
        if trainer.is_global_zero:  # one writer, whatever the number of ranks
            rows = [{**row, **store_predictions(store, spec, run_name, method)} for row in rows]
            store.append(rows, once=True)  # a twin job that finished first keeps its rows
            log_job_summary(logger, rows)  # best dev metrics per task, for W&B charts
            if resume:
                resume.cleanup()  # finished: the store skips this config from now on
        exit_code = 0
        return rows
    except NonFiniteLossError as err:  # a result in itself: this config diverges
        if trainer.is_global_zero:
            rows = failure_rows(spec, counts, run_name, tracking.run_id(logger), err, machine)
            store.append(tracking.redact(rows, keys=False))
        raise
    finally:
        tracking.finish(logger, exit_code)


def store_predictions(store: ResultsStore, spec: JobSpec, run_name: str, method: TextToTextModule) -> dict:
    """Writes the per-example predictions of every task's best evaluation; returns the row fields
    that reference the file (written before the rows, so rows never point at a missing file)."""
    records = [record for task in sorted(method.best) for record in method.best[task].predictions]
    return write_predictions(store.dir, spec.config_hash, run_name, records)


def make_logger(spec: JobSpec, run_name: str, counts: dict[str, int]):
    """The job's experiment tracker (W&B, offline by default), or ``None``."""
    cfg = spec.cfg
    return instantiate(cfg.logger).make_logger(
        name=run_name,
        group=cfg.experiment_name,
        save_dir=str(Path(cfg.paths.output_dir)),
        tags=[spec.method_name, cfg.model.name, *cfg.data.tasks],
        config={**spec.config, "params": counts},
    )


def make_trainer(spec: JobSpec, method: TextToTextModule, logger=None) -> L.Trainer:
    """The Lightning trainer: steps and evaluation interval (optimizer steps) from the recipe.

    The data module shards batches per rank itself (``distributed.py``), so Lightning's
    ``DistributedSampler`` injection is off; on SLURM, requeueing is left to submitit.
    """
    cfg, recipe = spec.cfg, spec.recipe
    interval = min(recipe.val_check_interval, recipe.max_steps)
    interval *= cfg.trainer.get("accumulate_grad_batches") or 1  # Lightning counts batches, not steps
    callbacks = [instantiate(c) for c in cfg.callbacks.values()] if method.trains else []
    for callback in callbacks:
        if isinstance(callback, ResumeCheckpoint):  # last.ckpt under <root>/checkpoints/<config hash>
            callback.bind(spec.config_hash)
    plugins = cluster_plugins()
    return instantiate(
        cfg.trainer,
        max_steps=recipe.max_steps,
        val_check_interval=interval,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        enable_checkpointing=bool(callbacks),
        default_root_dir=cfg.paths.output_dir,
        use_distributed_sampler=False,
        **({"plugins": plugins} if plugins else {}),
    )


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float:
    """Runs one job and returns its primary dev score, the objective of an Optuna search
    (``hparams_search=...``); a skipped job's score comes from its stored rows (``search.py``).
    The console script exits 0 all the same: Hydra's entry never returns the task's value."""
    from promptscale.search import objective

    return objective(cfg, run(cfg))


if __name__ == "__main__":
    main()
