"""One trainer per config across launches (issue 11, case 3, as a library): claims taken atomically
by exactly one of racing processes, skipped while live, taken over once stale."""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time

import pytest
from test_results import make_row

from promptscale.store.claims import JOB_ENV, ConfigClaim, remove_claims
from promptscale.store.results import ResultsStore

CTX = mp.get_context("fork")


def plant(root, config_hash: str, generation: int = 0, *, age_s: float = 0.0, **info) -> os.PathLike:
    """A claim file as another launch would have left it."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{config_hash}.claim.{generation:06d}"
    content = {"host": "node-elsewhere", "pid": 4242, "job": "slurm-7", "attempt": 0, "started": time.time(), **info}
    path.write_text(json.dumps(content))
    os.utime(path, (time.time() - age_s,) * 2)
    return path


def _no_link(src, dst, **kwargs):
    raise OSError(errno.EPERM, "Operation not permitted (no hard links on this mount)")


def _race(root: str, config_hash: str, name: str, start, decided, results, no_link: bool = False) -> None:
    if no_link:
        os.link = _no_link
    start.wait(10)
    with ConfigClaim(root, config_hash, job=name) as claim:
        results.put((name, claim.acquired))
        decided.wait(10)  # hold it until every racer has decided


def race(root, config_hash: str, racers: int = 3, no_link: bool = False) -> dict[str, bool]:
    start, decided, results = CTX.Barrier(racers), CTX.Barrier(racers), CTX.Queue()
    procs = [
        CTX.Process(target=_race, args=(str(root), config_hash, f"launch{i}", start, decided, results, no_link))
        for i in range(racers)
    ]
    for p in procs:
        p.start()
    outcome = dict(results.get(timeout=20) for _ in procs)
    for p in procs:
        p.join(20)
        assert p.exitcode == 0
    return outcome


@pytest.mark.parametrize("no_link", [False, True], ids=["link", "no-hard-links"])
def test_racing_launches_exactly_one_claims_a_config(tmp_path, no_link):
    for config in ("c0", "c1", "c2", "c3", "c4"):  # several rounds: not won by luck
        outcome = race(tmp_path, config, no_link=no_link)
        assert sorted(outcome.values()) == [False, False, True], outcome


def test_racing_for_a_stale_claim_exactly_one_takes_it_over(tmp_path):
    for config in ("s0", "s1", "s2", "s3"):
        plant(tmp_path, config, 3, age_s=3600)  # a node that died an hour ago
        outcome = race(tmp_path, config)
        assert sorted(outcome.values()) == [False, False, True], outcome
        assert sorted(p.name for p in tmp_path.glob(f"{config}.claim.*")) == [
            f"{config}.claim.000003",
            f"{config}.claim.000004",
        ]


def test_a_live_claim_is_skipped_naming_its_holder_then_free_once_released(tmp_path, caplog):
    first = ConfigClaim(tmp_path, "abc", job="launch-a").__enter__()
    assert first.acquired and os.environ[JOB_ENV] == "launch-a"  # DDP ranks it starts share it
    caplog.set_level(logging.WARNING, logger="promptscale.store.claims")
    with ConfigClaim(tmp_path, "abc", job="launch-b") as second:
        assert not second.acquired
    assert f"config abc is claimed by host {socket.gethostname()} pid {os.getpid()} (job launch-a)" in caplog.text
    assert "abc.claim.000000" in caplog.text
    first.release()
    assert JOB_ENV not in os.environ
    with ConfigClaim(tmp_path, "abc", job="launch-b") as second:  # released: free at once
        assert second.acquired and second.path.name == "abc.claim.000001"


def test_stale_at_once_when_its_process_is_gone(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    plant(tmp_path, "abc", host=socket.gethostname(), pid=int(dead.stdout))  # fresh heartbeat, dead pid
    caplog.set_level(logging.INFO, logger="promptscale.store.claims")
    with ConfigClaim(tmp_path, "abc", job="launch-b") as claim:
        assert claim.acquired and claim.path.name == "abc.claim.000001"
    assert f"its process {int(dead.stdout)} is gone" in caplog.text


def test_stale_after_the_stated_time_without_heartbeat(tmp_path):
    plant(tmp_path, "abc", age_s=100)  # another host: only the heartbeat's age tells
    with ConfigClaim(tmp_path, "abc", stale_after_s=300, job="launch-b") as claim:
        assert not claim.acquired and claim.holder["host"] == "node-elsewhere"
    with ConfigClaim(tmp_path, "abc", stale_after_s=60, job="launch-b") as claim:
        assert claim.acquired


def test_heartbeat_keeps_a_held_claim_fresh_and_notices_a_takeover(tmp_path):
    with ConfigClaim(tmp_path, "abc", stale_after_s=1.2, heartbeat_s=0.1, job="launch-a") as claim:
        first = json.loads(claim.path.read_text())["heartbeat"]
        time.sleep(1.5)  # longer than stale_after_s: only the heartbeat keeps it live
        assert json.loads(claim.path.read_text())["heartbeat"] > first
        with ConfigClaim(tmp_path, "abc", stale_after_s=1.2, job="launch-b") as other:
            assert not other.acquired
        plant(tmp_path, "abc", 1)  # presumed dead by another launch (e.g. a long NFS outage)
        time.sleep(0.5)
        assert claim.lost


def test_ranks_of_one_job_share_its_claim_and_a_requeued_job_takes_it_back(tmp_path):
    plant(tmp_path, "abc", host="node1", job="slurm-7", attempt=0)  # live on another node
    with ConfigClaim(tmp_path, "abc", job="slurm-7", attempt=0) as rank1:
        assert rank1.acquired and rank1.shared and rank1.path is None
    with ConfigClaim(tmp_path, "abc", job="slurm-7", attempt=1) as requeued:
        assert requeued.acquired and not requeued.shared and requeued.path.name == "abc.claim.000001"


def test_remove_claims_of_finished_configs_keeps_live_ones(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    for config in ("done", "twin"):
        store.append([make_row(config_hash=config)], once=True)
    claims = tmp_path / "claims"
    plant(claims, "done", 0, age_s=3600)
    plant(claims, "done", 1, released=True)
    live = plant(claims, "twin", 0)  # finished elsewhere, but this launch still runs
    kept = plant(claims, "todo", 0, age_s=3600)  # stale but unfinished: the next taker needs it
    removed = remove_claims(claims, store)
    assert sorted(p.name for p in removed) == ["done.claim.000000", "done.claim.000001"]
    assert live.exists() and kept.exists()
    assert remove_claims(tmp_path / "nowhere", store) == []


def test_stale_after_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="stale_after_s"):
        ConfigClaim(tmp_path, "abc", stale_after_s=0)


class CountFits:
    """A Lightning callback (built by Hydra in the sweep's jobs) that logs each training start."""

    def __new__(cls, root: str):
        import lightning as L

        class _CountFits(L.Callback):
            def on_train_start(self, trainer, pl_module):
                with open(os.path.join(root, "fits.log"), "a") as f:
                    f.write(f"{os.getpid()}\n")

        return _CountFits()


@pytest.mark.slow
def test_two_concurrent_launches_of_one_sweep_train_each_config_once(tmp_path):
    """The issue's slip: the same sweep launched twice on one outputs folder. Claims make each
    config train in exactly one launch; the other skips it, naming the holder."""
    from collections import Counter

    from test_resume import finish, key, sweep

    count = f"+callbacks.count={{_target_:test_claims.CountFits,root:'{tmp_path}'}}"
    launches = [sweep(tmp_path, count), sweep(tmp_path, count)]
    (code_a, out_a), (code_b, out_b) = [finish(proc) for proc in launches]
    assert code_a == code_b == 0, (out_a[-3000:], out_b[-3000:])
    fits = (tmp_path / "fits.log").read_text().split()
    rows = ResultsStore(tmp_path / "results.jsonl").rows()
    per_config = Counter(key(r) for r in rows)
    assert len(fits) == 4  # 4 configs, each trained once over both launches
    assert len({r["config_hash"] for r in rows}) == 4 and set(per_config.values()) == {1}  # each row once
    assert "is claimed by host" in out_a + out_b
    assert not list((tmp_path / "checkpoints").glob("*/last.ckpt"))  # every finished job cleaned up
