"""Crash-safe sweeps: a multirun SIGKILLed part-way and re-launched (new timestamped folders)
skips finished jobs, resumes the interrupted one from its checkpoint (keyed by config hash),
and ends with every job's rows exactly once and equal to an uninterrupted sweep."""

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lightning as L

from promptscale.store.results import ResultsStore

from conftest import ROOT

TESTS = Path(__file__).resolve().parent
# 4 jobs; 16 CB/RTE examples in batches of 4 = 4 steps an epoch; evaluation every 4 steps,
# last.ckpt every 3; dropout on. The figure callback is not under test here.
SWEEP = [
    "-m",
    "model=tiny_s",
    "method=model_tuning,prompt_tuning",
    "task=cb,rte",
    "logger=none",
    "data.batch_size=4",
    "data.train_limit=16",
    "data.eval_limit=8",
    "trainer.max_steps=10",
    "trainer.val_check_interval=4",
    "callbacks.resume.every_n_steps=3",
    "trainer.enable_progress_bar=false",
    "~hydra.callbacks.figure",
]


class KillWhenResumable(L.Callback):
    """SIGKILLs the whole sweep (no handler runs, as a node failure) once a job has finished and
    another has saved ``last.ckpt``: at the start of the step after that save."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if store_rows(self.root) and list(self.root.glob("checkpoints/*/last.ckpt")):
            os.kill(os.getpid(), signal.SIGKILL)


def store_rows(root: Path) -> list[dict]:
    return ResultsStore(root / "results.jsonl").rows()


def sweep(root: Path, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PROMPTSCALE_OUTPUTS": str(root),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",  # two sweeps side by side on a 2-core machine
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "promptscale.train", *SWEEP, *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def by_hash(rows):
    return {(r["config_hash"], r["task"], r["metric"]): (r["value"], r["step"]) for r in rows}


def test_killed_sweep_relaunched_finishes_only_what_is_missing(tmp_path):
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    reference = sweep(unbroken)  # runs alongside the interrupted sweep
    killed = sweep(broken, f"+callbacks.kill={{_target_:test_resume.KillWhenResumable,root:'{broken}'}}")
    code, out = finish(killed)
    assert code == -signal.SIGKILL, out[-3000:]
    done = {r["config_hash"] for r in store_rows(broken)}
    assert len(done) == 1  # the first job finished ...
    (ckpt,) = broken.glob("checkpoints/*/last.ckpt")  # ... the second left a checkpoint (by hash)
    assert ckpt.parent.name not in done

    code, out = finish(sweep(broken))  # the same sweep again: new timestamped output folders
    assert code == 0, out[-3000:]
    assert f"config {done.pop()} is already in" in out  # finished job skipped
    assert f"resumed from {ckpt} at step 3" in out  # unfinished job resumed, not restarted
    assert len(list((broken / "multiruns").glob("default/*"))) == 2

    code, ref_out = finish(reference)
    assert code == 0, ref_out[-3000:]
    rows, ref = store_rows(broken), store_rows(unbroken)
    keys = Counter((r["config_hash"], r["task"], r["metric"]) for r in rows)
    assert len({k[0] for k in keys}) == 4 and set(keys.values()) == {1}  # every job, each row once
    assert by_hash(rows) == by_hash(ref)  # same numbers as if nothing had happened
    assert not list(broken.glob("checkpoints/*/last.ckpt"))  # cleaned up once finished
