"""Crash-safe sweeps: a multirun SIGKILLed part-way and re-launched (new timestamped folders)
skips finished jobs, resumes the interrupted one from its checkpoint (keyed by config hash),
and ends with every job's rows exactly once and equal to an uninterrupted sweep. Then, without
training: damaged checkpoints, the last two kept, cleanup beside a twin job, orphaned folders."""

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
import torch

from promptscale.resume import LAST, PREV, ResumeCheckpoint, checkpoint_damage, remove_orphans
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
    "recipe.batch_size=4",
    "data.train_limit=16",
    "data.eval_limit=8",
    "recipe.max_steps=10",
    "recipe.val_check_interval=4",
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


def key(r: dict) -> tuple:
    """What one row is about: a job's task x metric (x evaluation protocol, where rows name one)."""
    return r["config_hash"], r["task"], r["metric"], r.get("protocol")


def by_hash(rows):
    return {key(r): (r["value"], r["step"]) for r in rows}


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
    keys = Counter(map(key, rows))
    assert len({k[0] for k in keys}) == 4 and set(keys.values()) == {1}  # every job, each row once
    assert by_hash(rows) == by_hash(ref)  # same numbers as if nothing had happened
    assert not list(broken.glob("checkpoints/*/last.ckpt"))  # cleaned up once finished


# -- damaged checkpoints, cleanup and orphans (issue 11, cases 2, 3 and 9), without training ----


def save(path: Path, step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "weights": torch.arange(4096, dtype=torch.float32) * step}, path)


def truncate_to_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def bound(root: Path, config_hash: str = "h1") -> ResumeCheckpoint:
    callback = ResumeCheckpoint(str(root / "checkpoints"))
    callback.bind(config_hash)
    return callback


def test_truncated_last_checkpoint_is_moved_aside_and_the_previous_one_resumes(tmp_path):
    callback = bound(tmp_path)
    save(callback.last_path.with_name(PREV), 3)
    save(callback.last_path, 6)
    truncate_to_half(callback.last_path)
    with pytest.warns(
        UserWarning, match=rf"{callback.last_path}: damaged checkpoint .*moved to .*last\.ckpt\.corrupt-"
    ):
        resume = callback.resume_path()
    assert resume == str(callback.last_path.with_name(PREV))
    assert torch.load(resume, weights_only=False)["global_step"] == 3
    assert len(list(callback.dir.glob("last.ckpt.corrupt-*"))) == 1 and not callback.last_path.exists()
    assert callback.resume_path() == resume  # the next relaunch: no warning, same checkpoint


def test_damaged_checkpoints_and_no_previous_one_start_fresh(tmp_path):
    callback = bound(tmp_path)
    save(callback.last_path, 6)
    truncate_to_half(callback.last_path)
    callback.last_path.with_name(PREV).write_bytes(b"\x00" * 100)  # not a checkpoint at all
    with pytest.warns(UserWarning, match="damaged checkpoint") as caught:
        assert callback.resume_path() is None
    assert len(caught) == 2 and len(list(callback.dir.glob("*.corrupt-*"))) == 2


def test_checkpoint_damage_checks_every_byte_up_to_the_crc_limit(tmp_path):
    path = tmp_path / "last.ckpt"
    save(path, 2)
    assert checkpoint_damage(path) is None
    data = bytearray(path.read_bytes())
    middle = data.find(b"\x00\x00\x80@")  # a stored weight (2 * 2.0 as float32) inside the archive
    assert middle > 0
    data[middle : middle + 4] = b"\x00\x00\x80\xc0"  # a flipped sign bit: sizes intact, CRC not
    path.write_bytes(bytes(data))
    assert "CRC" in checkpoint_damage(path)


class FakeStrategy:
    def broadcast(self, obj):
        return obj

    def barrier(self, name=None):
        pass


class FakeTrainer:
    """What ResumeCheckpoint._save touches; saving writes a checkpoint file like Lightning."""

    def __init__(self, step: int, during_save=None) -> None:
        self.global_step, self.is_global_zero, self.strategy = step, True, FakeStrategy()
        self.lightning_module = type("Module", (), {"saving_for_resume": False})()
        self.during_save = during_save

    def save_checkpoint(self, path) -> None:
        save(Path(path), self.global_step)
        if self.during_save:
            self.during_save()


def test_saves_keep_the_last_two_under_unique_temporary_names(tmp_path):
    callback = bound(tmp_path)
    for step in (3, 6, 9):
        callback._save(FakeTrainer(step))
    assert sorted(p.name for p in callback.dir.iterdir()) == [LAST, PREV]
    assert torch.load(callback.last_path, weights_only=False)["global_step"] == 9
    assert torch.load(callback.dir / PREV, weights_only=False)["global_step"] == 6
    assert callback._tmp.startswith(LAST + ".tmp-") and callback._tmp != LAST + ".tmp"


def test_a_save_survives_its_folder_being_removed_by_a_finishing_twin(tmp_path):
    """Before: ``FileNotFoundError ... last.ckpt.tmp`` crashed the second launch's job."""
    callback, twin = bound(tmp_path), bound(tmp_path)
    callback._save(FakeTrainer(3, during_save=twin.cleanup))  # the twin finishes mid-save
    callback._save(FakeTrainer(6, during_save=lambda: shutil.rmtree(callback.dir)))
    callback._save(FakeTrainer(9))
    assert torch.load(callback.last_path, weights_only=False)["global_step"] == 9


def test_cleanup_removes_only_this_jobs_files_and_tolerates_a_vanished_folder(tmp_path):
    callback = bound(tmp_path)
    callback._save(FakeTrainer(3))
    callback._save(FakeTrainer(6))
    other = callback.dir / (LAST + ".tmp-0123456789ab")  # another process saving right now
    other.write_bytes(b"partial")
    neighbour = bound(tmp_path, "h2")
    neighbour._save(FakeTrainer(3))
    callback.cleanup()
    assert sorted(p.name for p in callback.dir.iterdir()) == [other.name]
    assert neighbour.last_path.exists()  # another config's folder is not this job's
    shutil.rmtree(callback.dir)
    callback.cleanup()  # nothing left: no error
    assert not callback.dir.exists()


def test_remove_orphans_deletes_folders_of_finished_configs_only(tmp_path):
    from test_results import make_row

    store = ResultsStore(tmp_path / "results.jsonl")
    store.append([make_row(config_hash="h1")], once=True)
    store.append([make_row(config_hash="h3", status="failed")])
    for config in ("h1", "h2", "h3"):  # h1: killed between its append and its cleanup
        bound(tmp_path, config)._save(FakeTrainer(3))
    removed = remove_orphans(tmp_path / "checkpoints", store)
    assert [p.name for p in removed] == ["h1"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["h2", "h3"]
    assert remove_orphans(tmp_path / "nowhere", store) == []
