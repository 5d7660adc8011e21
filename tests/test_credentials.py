"""Credentials never land in the results store, saved configs, logs or W&B files, even when the
config pulls one in with ``${oc.env:...}``: Hydra saves the interpolation, not the value, and
everything logged is redacted by key and by value."""

import os
import subprocess
import sys

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from promptscale.store.results import ResultsStore
from promptscale.tracking import redact

from conftest import CONF_DIR, ROOT

SECRETS = {"WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567", "HF_TOKEN": "hf_NotARealTokenButSecret42"}


def test_no_secret_in_store_configs_logs_or_wandb_files(tmp_path):
    out = tmp_path / "run"
    env = {
        **os.environ,
        **SECRETS,
        "PROMPTSCALE_OUTPUTS": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "promptscale.train",
        "task=cb",
        "logger=wandb",
        "+logger.api_key=${oc.env:WANDB_API_KEY}",
        "model=tiny_s",
        "recipe.max_steps=2",
        "recipe.val_check_interval=2",
        "recipe.batch_size=4",
        "data.train_limit=4",
        "data.eval_limit=4",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={out}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert ResultsStore(tmp_path / "results.jsonl").rows()
    saved = (out / ".hydra" / "config.yaml").read_text()
    assert "api_key: ${oc.env:WANDB_API_KEY}" in saved  # the interpolation, never its value

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and any(p.name == "results.jsonl" for p in files)
    for secret in SECRETS.values():
        assert secret not in proc.stdout + proc.stderr
        leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
        assert not leaked, leaked


def test_redact_masks_secret_keys_and_secret_values(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRETS["HF_TOKEN"])
    config = {
        "logger": {"api_key": "anything", "project": "p"},
        "model": {"path": f"/x/{SECRETS['HF_TOKEN']}/y"},
        "list": [SECRETS["HF_TOKEN"]],
        "steps": 3,
    }
    assert redact(config) == {
        "logger": {"api_key": "***", "project": "p"},
        "model": {"path": "/x/***/y"},
        "list": ["***"],
        "steps": 3,
    }
    assert redact({"num_tokens": 5}, keys=False) == {"num_tokens": 5}  # rows: values only


def test_hydra_callbacks_leave_secret_interpolations_unresolved(tmp_path, monkeypatch):
    from hydra._internal.callbacks import Callbacks

    monkeypatch.setenv("WANDB_API_KEY", SECRETS["WANDB_API_KEY"])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.root={tmp_path}",
                f"paths.output_dir={tmp_path}/run",
                "+logger.api_key=${oc.env:WANDB_API_KEY}",
            ],
            return_hydra_config=True,
        )
    Callbacks(cfg)  # what Hydra does before it saves the job's config
    assert SECRETS["WANDB_API_KEY"] not in OmegaConf.to_yaml(cfg)
