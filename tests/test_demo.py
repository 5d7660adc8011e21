"""The README's demo command, run as a user runs it (a subprocess), on a trimmed sweep."""

import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from conftest import ROOT

pytestmark = pytest.mark.slow


def launch(tmp_path, *overrides):
    env = {**os.environ, "PROMPTSCALE_OUTPUTS": str(tmp_path), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    cmd = [
        sys.executable,
        "-m",
        "promptscale.train",
        "experiment=demo",
        # one seed and two tasks keep CI fast; the sweep machinery is the same as the full demo
        "seed=0",
        "task=cb,rte",
        *overrides,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def test_demo_sweep_writes_rows_and_figure_then_skips_everything(tmp_path):
    first = launch(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    store = tmp_path / "results.jsonl"
    rows = [json.loads(line) for line in store.read_text().splitlines()]
    jobs = {(r["model"], r["method"], r["task"], r["seed"]) for r in rows}
    sweep = OmegaConf.load(ROOT / "conf" / "experiment" / "demo.yaml")
    methods = sweep.hydra.sweeper.params.method.split(",")
    expected = {
        (m, method, t, 0)
        for m in ("tiny_s", "tiny_m", "tiny_l")
        for method in methods
        for t in (sweep.joint_tasks if method == "multitask_model_tuning" else ("cb", "rte"))
    }
    assert jobs == expected  # every job has its rows; multi-task runs once on all joint tasks
    assert len(rows) == len({(r["config_hash"], r["task"], r["protocol"], r["metric"]) for r in rows})  # none twice
    assert {r["protocol"] for r in rows} == {"generate", "rank"}  # every job, both protocols
    assert all(r["wandb_run_id"] for r in rows)  # every job logged to (offline) W&B
    for protocol_dir in ("", "rank"):  # the paper's protocol, then rank classification
        for name in ("figure1.png", "figure1.pdf", "figure1.csv", "tasks.md", "tasks.csv"):
            assert (tmp_path / "figures" / "demo" / protocol_dir / name).stat().st_size > 0
    before = store.read_bytes()
    second = launch(tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert store.read_bytes() == before  # nothing trained twice, nothing appended
    assert "skipping" in second.stdout + second.stderr
