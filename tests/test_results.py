"""Results store: roundtrip, validation, crash tolerance, parallel appends, hashing."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest

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


def test_truncated_last_line_warns_and_keeps_complete_rows(tmp_path):
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    store.append([make_row(run_id="a"), make_row(run_id="b")])
    with open(path, "a") as f:
        f.write(json.dumps(make_row(run_id="c"))[:40])  # crash mid-write
    with pytest.warns(UserWarning, match=r"results\.jsonl, line 3"):
        got = store.rows()
    assert [r["run_id"] for r in got] == ["a", "b"]
    # The next append repairs the tail, so the file stays readable.
    with pytest.warns(UserWarning, match="torn"):
        store.append([make_row(run_id="d")])
    assert [r["run_id"] for r in store.rows()] == ["a", "b", "d"]
    assert (tmp_path / "results.jsonl.torn").exists()


def test_complete_last_row_without_newline_is_kept(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(make_row(run_id="a")))  # complete row, no newline
    store = ResultsStore(path)
    assert [r["run_id"] for r in store.rows()] == ["a"]
    store.append([make_row(run_id="b")])
    assert [r["run_id"] for r in store.rows()] == ["a", "b"]


def test_malformed_middle_line_raises(tmp_path):
    path = tmp_path / "results.jsonl"
    lines = [json.dumps(make_row(run_id="a")), "{not json", json.dumps(make_row(run_id="b"))]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"results\.jsonl, line 2"):
        ResultsStore(path).rows()
    # A valid JSON object missing a field is malformed too.
    row = make_row()
    del row["seed"]
    path.write_text("\n".join([json.dumps(row), lines[0]]) + "\n")
    with pytest.raises(ValueError, match="line 1.*seed"):
        ResultsStore(path).rows()


def _worker(path: str, proc: int, n: int) -> None:
    store = ResultsStore(path)
    for i in range(n):
        run = f"p{proc}-{i}"
        store.append([make_row(run_id=run, metric=f"m{j}", value=float(j)) for j in range(3)])


def test_parallel_appends_never_interleave(tmp_path):
    path = str(tmp_path / "results.jsonl")
    procs, n = 4, 50
    ctx = mp.get_context("fork")
    workers = [ctx.Process(target=_worker, args=(path, p, n)) for p in range(procs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    rows = ResultsStore(path).rows()
    assert len(rows) == procs * n * 3
    keys = [(r["run_id"], r["metric"]) for r in rows]
    assert len(set(keys)) == len(keys)  # each row exactly once
    for k in range(0, len(rows), 3):  # every run's rows contiguous and in order
        batch = rows[k : k + 3]
        assert {r["run_id"] for r in batch} == {batch[0]["run_id"]}
        assert [r["metric"] for r in batch] == ["m0", "m1", "m2"]


def test_git_sha_and_now_iso():
    sha = git_sha()
    assert isinstance(sha, str) and sha
    assert now_iso().endswith("+00:00")
