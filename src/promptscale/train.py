"""Entry point: ``promptscale-train [overrides]`` (``-m`` or an experiment for sweeps).

One job is linear: skip if finished -> seed -> data (validated before any model exists) ->
method (builds its own backbone) -> trainer -> fit / evaluate -> result rows, appended at once.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from promptscale import tracking
from promptscale.data.tasks import get_task
from promptscale.results import ResultsStore, config_hash, git_sha, hashable_config, now_iso

log = logging.getLogger(__name__)
# Noise that says nothing about this run: our module deliberately moves eval batches itself.
warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device`.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def run(cfg: DictConfig) -> list[dict] | None:
    """Runs one job; returns its result rows, or ``None`` if the store already has them."""
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
    logger = instantiate(cfg.logger).make_logger(
        name=run_name, group=cfg.experiment_name, save_dir=str(Path(cfg.paths.output_dir)),
        tags=[method_name(cfg), cfg.model.name, *cfg.data.tasks], config={**config, "params": counts},
    )
    exit_code = 1
    try:
        trainer = make_trainer(cfg, method, logger)
        if method.trains:
            trainer.fit(method, datamodule=data)
        if not method.best:  # no dev evaluation happened during training (or nothing trains)
            trainer.validate(method, datamodule=data)
        rows = result_rows(cfg, method, counts, chash, run_name, tracking.run_id(logger))
        store.append(rows)
        exit_code = 0
        return rows
    finally:
        tracking.finish(logger, exit_code)


def make_trainer(cfg: DictConfig, method, logger) -> L.Trainer:
    """The Lightning trainer; steps and eval interval fall back to the method's recipe."""
    max_steps = cfg.trainer.max_steps or method.max_steps
    interval = min(cfg.trainer.val_check_interval or method.val_check_interval, max_steps)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()] if method.trains else []
    return instantiate(cfg.trainer, max_steps=max_steps, val_check_interval=interval,
                       logger=logger if logger is not None else False, callbacks=callbacks,
                       enable_checkpointing=bool(callbacks), default_root_dir=cfg.paths.output_dir)


def method_name(cfg: DictConfig) -> str:
    """Snake-case method name from the config file name (``method/<name>.yaml``)."""
    return cfg.method._target_.rsplit(".", 2)[-2]


def result_rows(cfg: DictConfig, method, counts: dict[str, int], chash: str, run_name: str,
                wandb_id: str | None) -> list[dict]:
    """One row per task x metric of the best dev evaluation of each task."""
    common = {
        "run_id": run_name, "experiment": cfg.experiment_name, "method": method_name(cfg),
        "model": cfg.model.name, "size": cfg.model.size, "total_params": counts["model_params"],
        "method_params": counts["total_params"] - counts["model_params"],
        "trainable_params": counts["trainable_params"], "split": cfg.data.eval_split, "seed": cfg.seed,
        "config_hash": chash, "git_sha": git_sha(), "timestamp": now_iso(), "wandb_run_id": wandb_id,
        "status": "ok",
    }
    return [
        {**common, "task": task, "task_version": get_task(task).version, "metric": metric, "value": value,
         "step": best.step}
        for task, best in sorted(method.best.items())
        for metric, value in best.metrics.items()
    ]


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
