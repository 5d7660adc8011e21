"""Scale-out: a real DDP run with 2 CPU processes (gloo) writes its rows once (rank 0) and one
W&B run, and scores every dev example exactly once: its metric equals a single-process
evaluation of the same prompt. The sharded strategies compose (FSDP also instantiates)."""

import os
import subprocess
import sys

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from promptscale.distributed import ShardedResumableBatchSampler, shard_eval_batches
from promptscale.job import JobSpec, build_job
from promptscale.store.results import ResultsStore

from conftest import ROOT, compose_config

# 10 CB dev examples in batches of 4: 3 batches over 2 ranks, so rank 1 gets a pad batch.
COMMON = [
    "model=tiny_s",
    "method=prompt_tuning",
    "task=cb",
    "recipe.batch_size=4",
    "data.train_limit=8",
    "data.eval_limit=10",
    "data.eval_batch_size=4",
    "recipe.max_steps=2",
    "recipe.val_check_interval=2",
]


def test_ddp_on_two_cpu_processes_matches_single_process(tmp_path):
    out = tmp_path / "run"
    env = {
        **os.environ,
        "PROMPTSCALE_OUTPUTS": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "promptscale.train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "trainer.strategy.process_group_backend=gloo",
        "logger=wandb",
        *COMMON,
        f"hydra.run.dir={out}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr

    rows = ResultsStore(tmp_path / "results.jsonl").rows()
    metrics = sorted((r["protocol"], r["metric"]) for r in rows)  # one writer: rank 0, each row once
    assert metrics == [("generate", m) for m in ("accuracy", "f1_macro", "invalid")] + [
        ("rank", "accuracy"),
        ("rank", "f1_macro"),
    ]
    assert {r["examples"] for r in rows} == {10}  # the pad batch was not scored twice
    assert len(list((out / "wandb").glob("offline-run-*"))) == 1  # W&B on rank 0 only
    (best,) = (out / "checkpoints").glob("best-*.ckpt")

    # The same prompt, evaluated by one process.
    cfg = compose_config(tmp_path / "single", ["trainer=cpu", "logger=none", *COMMON])
    job = build_job(JobSpec.from_config(cfg), training=False)  # the frozen backbone comes from the seed
    method = job.method
    method.load_state_dict(torch.load(best, weights_only=False)["state_dict"], strict=False)
    method.best = {}
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    trainer.validate(method, datamodule=job.data)
    assert method.best["cb"].examples == 10
    for protocol, values in method.best["cb"].metrics.items():
        assert {r["metric"]: r["value"] for r in rows if r["protocol"] == protocol} == values


def test_training_batches_are_the_global_batch_split_across_ranks():
    batches = [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    shards = [list(ShardedResumableBatchSampler(batches, rank, 2)) for rank in (0, 1)]
    assert shards == [[[0, 2], [4, 6], [8]], [[1, 3], [5, 7], [8]]]  # a tiny last batch repeats
    eval_shards = [shard_eval_batches(batches, rank, 2) for rank in (0, 1)]
    assert eval_shards == [[[0, 1, 2, 3], [8]], [[4, 5, 6, 7], [4, 5, 6, 7]]]  # same count per rank


def test_sharded_strategies_compose(tmp_path):
    from transformers.models.t5.modeling_t5 import T5Block

    for name in ("ddp", "fsdp", "deepspeed"):
        cfg = compose_config(tmp_path, [f"trainer={name}"])
        OmegaConf.to_container(cfg, resolve=True)
        assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "auto"  # bf16 where the GPU has it
    fsdp = compose_config(tmp_path, ["trainer=fsdp"]).trainer.strategy
    strategy = instantiate(fsdp)
    assert strategy._state_dict_type == "sharded"
    assert instantiate(fsdp.auto_wrap_policy) == instantiate(fsdp.activation_checkpointing_policy) == {T5Block}
    assert compose_config(tmp_path, ["trainer=deepspeed"]).trainer.strategy.stage == 3
