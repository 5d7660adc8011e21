"""Results store: roundtrip, validation, the export, old stores, lock-free parallel and exactly-once appends,
cheap "is it finished?", hashing. Damaged stores: test_store_damage.py."""

from __future__ import annotations

import errno
import fcntl
import json
import multiprocessing as mp
import os

import pytest

import promptscale.store.results as results_module
from promptscale.store.hashing import HASH_EXCLUDE, config_hash, hashable_config
from promptscale.store.provenance import git_sha, now_iso
from promptscale.store.results import ROW_FIELDS, ResultsStore


def make_row(**over) -> dict:
    row = {
        "run_id": "r1",
        "experiment": "demo",
        "method": "prompt_tuning",
        "model": "small",
        "total_params": 76_961_152,
        "trainable_params": 51_200,
        "task": "rte",
        "task_version": 1,
        "split": "val",
        "metric": "accuracy",
        "value": 61.5,
        "seed": 0,
        "config_hash": "abc",
        "git_sha": "deadbeef",
        "timestamp": now_iso(),
        "wandb_run_id": None,
        "status": "ok",
    }
    row.update(over)
    return row


def test_append_read_roundtrip(tmp_path):
    store = ResultsStore(tmp_path / "sub" / "results.jsonl")
    assert store.rows() == []
    rows = [make_row(metric="accuracy", value=1.0), make_row(metric="f1_macro", value=2.5, extra="kept")]
    store.append(rows)
    store.append([make_row(run_id="r2")])
    got = store.rows()
    assert got[:2] == rows and got[2]["run_id"] == "r2"
    df = store.frame()
    assert list(df.columns[: len(ROW_FIELDS)]) == list(ROW_FIELDS)
    assert len(df) == 3 and "extra" in df.columns


def test_missing_field_raises_and_writes_nothing(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    bad = make_row()
    del bad["config_hash"]
    with pytest.raises(ValueError, match="config_hash"):
        store.append([make_row(), bad])
    assert store.rows() == []


def test_has_config(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append([make_row(config_hash="h1"), make_row(config_hash="h2", status="failed")])
    assert store.has_config("h1")
    assert not store.has_config("h2")  # only status "ok" counts
    assert not store.has_config("h3")


def test_config_hash_stable_and_sensitive():
    a = {"model": {"name": "small", "d": 512}, "lr": 0.3, "tasks": ["cb", "rte"]}
    b = {"lr": 0.3, "tasks": ["cb", "rte"], "model": {"d": 512, "name": "small"}}
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 16 and int(config_hash(a), 16) >= 0
    assert config_hash(a) != config_hash({**a, "lr": 0.1})
    assert config_hash(a) != config_hash({**a, "tasks": ["rte", "cb"]})


def test_hashable_config_drops_machinery():
    cfg = {k: {"x": 1} for k in HASH_EXCLUDE}
    cfg.update(
        {
            "seed": 1,
            "trainer": {
                "max_steps": 10,
                "enable_progress_bar": True,
                "enable_model_summary": False,
                "log_every_n_steps": 5,
                "default_root_dir": "/tmp/x",
            },
        }
    )
    out = hashable_config(cfg)
    assert out == {"seed": 1, "trainer": {"max_steps": 10}}
    assert "paths" in cfg and "enable_progress_bar" in cfg["trainer"]  # input untouched
    moved = {**cfg, "paths": {"x": 2}, "trainer": {**cfg["trainer"], "default_root_dir": "/y"}}
    assert config_hash(hashable_config(moved)) == config_hash(out)


def test_export_is_the_store_as_json_lines(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    for run in ("a", "b", "c"):
        store.append([make_row(run_id=run, metric=m) for m in ("accuracy", "f1")])
    exported = [json.loads(line) for line in store.path.read_text().splitlines()]
    assert exported == store.rows() and len(exported) == 6
    assert sorted(p.name for p in store.dir.iterdir() if p.is_file())[0] == "_legacy.jsonl"
    store.path.unlink()  # the export is derived: compact() rebuilds it from the store
    assert store.compact() == 6
    assert [json.loads(line) for line in store.path.read_text().splitlines()] == exported


def test_store_of_the_old_layout_reads_unchanged_then_imports_once(tmp_path):
    path = tmp_path / "results.jsonl"
    old = "".join(json.dumps(make_row(run_id=f"old{i}", config_hash="h0"), sort_keys=True) + "\n" for i in range(3))
    path.write_text(old)
    store = ResultsStore(path)
    assert [r["run_id"] for r in store.rows()] == ["old0", "old1", "old2"] and store.has_config("h0")
    assert path.read_text() == old and not store.dir.exists()  # reading changes nothing
    store.append([make_row(run_id="new", config_hash="h1")], once=True)
    assert [r["run_id"] for r in ResultsStore(path).rows()] == ["old0", "old1", "old2", "new"]
    assert path.read_text().startswith(old)  # the old lines stay, new rows are appended
    assert ResultsStore(path).has_config("h0") and ResultsStore(path).has_config("h1")


def test_once_needs_a_single_config(tmp_path):
    with pytest.raises(ValueError, match="one config"):
        ResultsStore(tmp_path / "results.jsonl").append(
            [make_row(config_hash="a"), make_row(config_hash="b")], once=True
        )


def test_once_skips_a_finished_config_but_not_a_failed_one(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    assert store.append([make_row(run_id="x", config_hash="h", status="failed")], once=True)
    assert store.append([make_row(run_id="y", config_hash="h")], once=True)
    assert not store.append([make_row(run_id="z", config_hash="h")], once=True)
    assert [r["run_id"] for r in store.rows()] == ["x", "y"]


def test_has_config_reads_no_rows_for_thousands_of_runs(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.dir.mkdir()
    for i in range(2000):  # as append(once=True) names them, without 2000 fsyncs
        (store.dir / f"h{i:04d}.ok.jsonl").write_text(json.dumps(make_row(config_hash=f"h{i:04d}")) + "\n")
    (store.dir / "_legacy.jsonl").write_text(json.dumps(make_row(config_hash="legacy")) + "\n")
    parsed = []
    real = results_module._parse
    monkeypatch.setattr(results_module, "_parse", lambda data: parsed.append(1) or real(data))
    store = ResultsStore(store.path)
    assert not store.has_config("h9999") and parsed == []  # a miss: a stat and a listing
    assert store.has_config("h1234") and len(parsed) == 1  # a hit: that config's file only
    assert store.has_config("legacy")
    assert len(store.rows()) == 2001


def _no_flock(*args, **kwargs):
    raise OSError(errno.ENOLCK, "No locks available (flock is off on this mount)")


def _worker(path: str, proc: int, n: int) -> None:
    fcntl.flock = _no_flock  # as on an NFS/Lustre mount without locking
    store = ResultsStore(path)
    for i in range(n):
        run = f"p{proc}-{i}"
        store.append([make_row(run_id=run, config_hash=run, metric=f"m{j}", value=float(j)) for j in range(3)])


def test_parallel_appends_need_no_lock_and_lose_nothing(tmp_path):
    path = str(tmp_path / "results.jsonl")
    procs, n = 4, 40
    ctx = mp.get_context("fork")
    workers = [ctx.Process(target=_worker, args=(path, p, n)) for p in range(procs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    store = ResultsStore(path)
    rows = store.rows()
    assert len(rows) == procs * n * 3
    keys = [(r["run_id"], r["metric"]) for r in rows]
    assert len(set(keys)) == len(keys)  # each row exactly once
    for k in range(0, len(rows), 3):  # every run's rows contiguous and in order
        batch = rows[k : k + 3]
        assert {r["run_id"] for r in batch} == {batch[0]["run_id"]}
        assert [r["metric"] for r in batch] == ["m0", "m1", "m2"]
    assert all(store.has_config(f"p{p}-{i}") for p in range(procs) for i in range(n))
    store.compact()
    assert sorted(map(json.dumps, map(json.loads, store.path.read_text().splitlines()))) == sorted(
        map(json.dumps, rows)
    )


def _no_link(src, dst, **kwargs):
    raise OSError(errno.EPERM, "Operation not permitted (no hard links on this mount)")


def _finish_twice(path: str, config: str, run: str, start, wins, no_link: bool) -> None:
    fcntl.flock = _no_flock
    if no_link:
        os.link = _no_link
    start.wait(10)
    rows = [make_row(run_id=run, config_hash=config, metric=m) for m in "ab"]
    wins.put((run, ResultsStore(path).append(rows, once=True)))


@pytest.mark.parametrize("no_link", [False, True], ids=["link", "no-hard-links"])
def test_once_from_two_processes_at_once_lands_exactly_once(tmp_path, no_link):
    path = str(tmp_path / "results.jsonl")
    ctx = mp.get_context("fork")
    configs = [f"c{i}" for i in range(8)]
    for config in configs:  # several rounds: the race must not be won by luck
        start, wins = ctx.Barrier(2), ctx.Queue()
        twins = [
            ctx.Process(target=_finish_twice, args=(path, config, f"{config}-{j}", start, wins, no_link))
            for j in range(2)
        ]
        for t in twins:
            t.start()
        for t in twins:
            t.join(30)
            assert t.exitcode == 0
        outcome = dict(wins.get(timeout=5) for _ in twins)
        landed = {r["run_id"] for r in ResultsStore(path).rows() if r["config_hash"] == config}
        assert len(landed) == 1  # one run's rows, never both
        if not no_link:  # with links, the first to finish wins and the other one knows it lost
            assert sorted(outcome.values()) == [False, True] and outcome[landed.pop()]
    store = ResultsStore(path)
    assert len(store.rows()) == 2 * len(configs)
    store.compact()  # without hard links the export may list both twins until compacted
    assert len(store.path.read_text().splitlines()) == 2 * len(configs)


def test_git_sha_and_now_iso():
    sha = git_sha()
    assert isinstance(sha, str) and sha
    assert now_iso().endswith("+00:00")
