"""Launchers: the submitit configs hold only keys of hydra-submitit-launcher's schemas, and a
real submitit_local sweep runs its jobs as parallel processes that all append to one results
store without corrupting it (every row once, each job's rows contiguous)."""

import os
import subprocess
import sys
import warnings
from dataclasses import fields

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from promptscale.store.results import ResultsStore

from conftest import CONF_DIR, ROOT

launcher = pytest.importorskip(
    "hydra_plugins.hydra_submitit_launcher.config",
    reason="hydra-submitit-launcher is not installed (pip install -e '.[cluster]' or '.[test]')",
)


def hydra_launcher(name: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"hydra/launcher={name}"], return_hydra_config=True).hydra.launcher


@pytest.mark.parametrize("name,schema", [("submitit_slurm", "SlurmQueueConf"), ("submitit_local", "LocalQueueConf")])
def test_launcher_config_uses_only_plugin_keys(name, schema):
    cfg = hydra_launcher(name)
    valid = {f.name for f in fields(getattr(launcher, schema))}
    assert set(cfg) <= valid, set(cfg) - valid
    assert cfg._target_ == getattr(launcher, schema)._target_
    if name == "submitit_slurm":
        assert cfg.max_num_timeout > 0 and cfg.signal_delay_s >= 120  # requeues, time to checkpoint
        instantiate(cfg)  # the launcher object itself builds without a cluster


def test_submitit_local_sweep_jobs_share_one_store(tmp_path):
    env = {
        **os.environ,
        "PROMPTSCALE_OUTPUTS": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
    }  # three jobs at once on a small machine
    cmd = [
        sys.executable,
        "-m",
        "promptscale.train",
        "-m",
        "hydra/launcher=submitit_local",
        "model=tiny_s",
        "method=prompt_tuning",
        "task=cb,copa,rte",
        "logger=none",
        "recipe.max_steps=2",
        "recipe.val_check_interval=2",
        "recipe.batch_size=4",
        "data.train_limit=4",
        "data.eval_limit=4",
        "trainer.enable_progress_bar=false",
        "~hydra.callbacks.figure",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    (sweep,) = (tmp_path / "multiruns" / "default").iterdir()
    logs = list((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 3  # each job ran as its own submitit process
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a torn last line
        rows = ResultsStore(tmp_path / "results.jsonl").rows()
    keys = [(r["config_hash"], r["task"], r["protocol"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)) and {r["task"] for r in rows} == {"cb", "copa", "rte"}
    order = [r["config_hash"] for r in rows]
    for chash in set(order):  # one atomic file per job: its rows are one contiguous block
        first, last = order.index(chash), len(order) - 1 - order[::-1].index(chash)
        assert set(order[first : last + 1]) == {chash}
