"""End to end: every method on every task with a tiny model, the store skip, bad input."""

import json

import pytest
import torch

from promptscale.store.results import ResultsStore
from promptscale.train import run

from conftest import METHODS, SUPERGLUE


@pytest.mark.parametrize("task", SUPERGLUE)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_on_every_task(make_config, method, task):
    cfg = make_config(f"method={method}", f"task={task}")
    rows = run(cfg)
    from promptscale.data.tasks import get_task

    assert {r["task"] for r in rows} == {task}
    assert {r["protocol"] for r in rows} == {"generate", "rank"}  # both protocols, one row set each
    for protocol in ("generate", "rank"):
        metrics = {r["metric"] for r in rows if r["protocol"] == protocol}
        assert metrics == set(get_task(task).metrics) | ({"invalid"} if protocol == "generate" else set())
    assert all(0.0 <= r["value"] <= 100.0 for r in rows)
    assert len({r["selected_by"] for r in rows}) == 1
    assert all(r["method"] == method and r["model"] == "tiny_s" for r in rows)
    assert ResultsStore(cfg.results).rows() == rows
    # measured counts: the backbone is the tiny architecture, trainable follows the method
    from hydra.utils import instantiate

    assert rows[0]["total_params"] == instantiate(cfg.model).count_parameters()


def test_rerun_is_skipped_and_store_unchanged(make_config):
    cfg = make_config("method=prompt_tuning", "task=cb")
    assert run(cfg) is not None
    before = open(cfg.results).read()
    assert run(cfg) is None
    assert open(cfg.results).read() == before


def test_changed_config_is_a_new_run(make_config):
    assert run(make_config("task=cb")) is not None
    assert run(make_config("task=cb", "seed=1")) is not None
    assert len({r["config_hash"] for r in ResultsStore(make_config("task=cb").results).rows()}) == 2


def test_prompt_tuning_row_counts_are_measured(make_config):
    cfg = make_config("method=prompt_tuning", "task=rte", "method.prompt_length=7")
    rows = run(cfg)
    assert rows[0]["trainable_params"] == rows[0]["method_params"] == 7 * cfg.model.d_model


def test_row_fields(make_config):
    rows = run(make_config("task=rte"))
    row = rows[0]
    for key in (
        "run_id",
        "experiment",
        "method",
        "model",
        "total_params",
        "trainable_params",
        "task",
        "task_version",
        "split",
        "metric",
        "value",
        "seed",
        "config_hash",
        "git_sha",
        "timestamp",
        "wandb_run_id",
    ):
        assert key in row, key
    assert row["split"] == "val" and row["experiment"] == "default"


def test_malformed_record_fails_before_training_and_writes_nothing(make_config, tmp_path):
    data = tmp_path / "SuperGLUE" / "RTE"
    data.mkdir(parents=True)
    good = {"premise": "A cat sat.", "hypothesis": "A cat.", "idx": 0, "label": "entailment"}
    bad = {**good, "idx": 1, "label": "maybe"}
    (data / "train.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    (data / "val.jsonl").write_text(json.dumps(good) + "\n")
    cfg = make_config("task=rte", f"data.dir={tmp_path / 'SuperGLUE'}")
    with pytest.raises(ValueError, match=r"RTE/train.jsonl line 2: field 'label'"):
        run(cfg)
    assert ResultsStore(cfg.results).rows() == []


def test_hub_data_without_network_fails_fast_naming_data_dir(make_config):
    with pytest.raises(RuntimeError, match="data.dir"):
        run(make_config("task=rte", "data.dir=hub"))


def test_failed_run_writes_no_rows(make_config, monkeypatch):
    from promptscale.methods import base

    def boom(*args, **kwargs):
        raise RuntimeError("evaluation exploded")

    monkeypatch.setattr(base, "evaluate_batch", boom)
    cfg = make_config("task=rte")
    with pytest.raises(RuntimeError, match="exploded"):
        run(cfg)
    assert ResultsStore(cfg.results).rows() == []


def test_wandb_offline_run_is_logged_and_finished(make_config, tmp_path):
    cfg = make_config("task=cb", "logger=wandb")
    rows = run(cfg)
    run_id = rows[0]["wandb_run_id"]
    assert run_id
    runs = list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 1
    import wandb

    assert wandb.run is None  # finished


def test_wandb_failure_never_fails_the_run(make_config, monkeypatch):
    import lightning.pytorch.loggers as loggers

    class Broken:
        def __init__(self, *a, **k):
            raise ConnectionError("api.wandb.ai unreachable")

    monkeypatch.setattr(loggers, "WandbLogger", Broken)
    rows = run(make_config("task=cb", "logger=wandb"))
    assert rows and rows[0]["wandb_run_id"] is None


def test_training_changes_only_trainable_parameters(make_job):
    from promptscale.train import make_trainer

    job = make_job("method=prompt_tuning", "task=rte")
    method = job.method
    before = {k: v.clone() for k, v in method.state_dict().items()}
    make_trainer(job.spec, method, None).fit(method, datamodule=job.data)
    after = method.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"prompt.embedding"}
