"""GPU smoke tests: ``trainer=gpu`` (and ``trainer=ddp`` on two GPUs) train and evaluate a tiny job
end to end. They run wherever CUDA is present and skip elsewhere (these CI machines have none)."""

import os
import subprocess
import sys

import pytest
import torch

from promptscale.store.results import ResultsStore
from promptscale.train import run

from conftest import ROOT

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: GPU smoke tests run on GPU machines"),
]


@pytest.mark.parametrize("method", ["prompt_tuning", "model_tuning"])
def test_gpu_trainer_trains_and_evaluates_both_protocols(make_config, method):
    cfg = make_config(f"method={method}", "task=cb", "trainer=gpu", "trainer.precision=auto")
    rows = run(cfg)
    assert {r["protocol"] for r in rows} == {"generate", "rank"}
    assert rows[0]["precision"] in ("bf16-mixed", "32-true") and rows[0]["accelerator"] != "unknown"
    assert ResultsStore(cfg.results).has_config(rows[0]["config_hash"])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP needs two GPUs")
def test_ddp_on_two_gpus_writes_each_row_once(tmp_path):
    env = {**os.environ, "PROMPTSCALE_OUTPUTS": str(tmp_path), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    cmd = [
        sys.executable, "-m", "promptscale.train", "trainer=ddp", "trainer.devices=2", "model=tiny_s",
        "method=prompt_tuning", "task=cb", "logger=none", "recipe.batch_size=4", "recipe.max_steps=2",
        "recipe.val_check_interval=2", "data.train_limit=8", "data.eval_limit=10", f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = ResultsStore(tmp_path / "results.jsonl").rows()
    keys = [(r["task"], r["protocol"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)) == 5 and {r["examples"] for r in rows} == {10}
