"""Stores and runs written before protocols existed stay readable: rows read as rank
classification, figures draw them under ``--protocol rank`` (and say so otherwise), appends keep
them, and an old run folder rebuilds from its saved config and checkpoint."""

import shutil
from pathlib import Path

import pytest
import torch

from promptscale.job import JobSpec, rebuild_job
from promptscale.prompts.runs import find_prompt_runs
from promptscale.report.cli import main as figure_main
from promptscale.store.predictions import read_predictions
from promptscale.store.results import ResultsStore
from promptscale.store.rows import row_protocol
from promptscale.train import run

from conftest import compose_config

OLD = Path(__file__).resolve().parent / "data" / "store_v1"


@pytest.fixture
def old(tmp_path) -> Path:
    """A copy of the old store and run, so the test may append to it."""
    shutil.copytree(OLD, tmp_path / "old")
    return tmp_path / "old"


def test_old_rows_read_as_rank_and_count_as_finished(old):
    store = ResultsStore(old / "results.jsonl")
    rows = store.rows()
    assert len(rows) == 9 and {r["method"] for r in rows} == {"prompt_tuning", "model_tuning", "prompt_design"}
    assert {row_protocol(r) for r in rows} == {"rank"} and not any("protocol" in r for r in rows)
    assert all(store.has_config(r["config_hash"]) for r in rows)


def test_appending_a_new_run_keeps_the_old_rows(old):
    store = ResultsStore(old / "results.jsonl")
    before = store.rows()
    new = [{**before[0], "config_hash": "0123456789abcdef", "run_id": "new", "protocol": "generate"}]
    assert store.append(new, once=True)
    after = store.rows()
    assert len(after) == len(before) + 1 and all(r in after for r in before)


def test_old_store_draws_under_rank_and_says_so_under_the_papers_protocol(old, capsys):
    results = str(old / "results.jsonl")
    assert figure_main(["--results", results, "--out", str(old / "figs"), "--protocol", "rank"]) == 0
    assert (old / "figs" / "figure1.png").stat().st_size > 0
    # the paper's protocol: prompt design ranks (drawn), the trained methods have no generate rows
    left_out = r"no rows under the paper protocol .* prompt_tuning/tiny_s seed 0 \(has rank\)"
    with pytest.warns(UserWarning, match=left_out):
        assert figure_main(["--results", results, "--out", str(old / "figs2")]) == 0
    untrained = [r for r in ResultsStore(results).rows() if r["method"] != "prompt_design"]
    ResultsStore(old / "only_trained.jsonl").append(untrained)
    assert figure_main(["--results", str(old / "only_trained.jsonl"), "--out", str(old / "figs3")]) == 1
    assert "--protocol rank" in capsys.readouterr().err


def test_an_old_run_rebuilds_from_its_saved_config_and_checkpoint(old, monkeypatch):
    monkeypatch.setenv("PROMPTSCALE_OUTPUTS", str(old))
    run_dir = old / "run_prompt_tuning_cb"
    [ckpt] = (run_dir / "checkpoints").glob("best-*.ckpt")
    job = rebuild_job(run_dir, ckpt)
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert torch.equal(job.method.prompt.embedding, saved["state_dict"]["prompt.embedding"])
    assert job.spec.recipe.optimizer.lr == 0.3 and job.spec.recipe.batch_size == 4  # moved from method/data
    assert job.spec.evaluation.protocol == "rank"  # what the old code evaluated with
    assert job.method.best["cb"].metrics["rank"]["accuracy"] == saved["promptscale_best"]["cb"]["metrics"]["accuracy"]
    [run] = find_prompt_runs(old, old / "results.jsonl")  # matched to its rows by the old config hash
    assert run.job_dir == run_dir and run.stored["cb"]["accuracy"] == 50.0


# -- a store from after the redesign, before the speed block (commit 5e8f5eb) -----------------
V2 = Path(__file__).resolve().parent / "data" / "store_v2"
V2_SWEEP = ["model=tiny_s", "task=cb", "seed=0", "logger=none", "recipe.batch_size=4", "recipe.max_steps=2",
            "recipe.val_check_interval=2", "data.train_limit=4", "data.eval_limit=4", "experiment_name=v2",
            "trainer.precision=32-true"]  # fmt: skip


@pytest.mark.parametrize("method", ["prompt_tuning", "model_tuning"])
def test_runs_of_the_previous_version_are_finished_under_todays_hash(tmp_path, method):
    shutil.copytree(V2, tmp_path / "v2")
    store = ResultsStore(tmp_path / "v2" / "results.jsonl")
    before = store.rows()
    cfg = compose_config(tmp_path / "v2", [*V2_SWEEP, f"method={method}"])
    assert run(cfg) is None  # the same config hash (speed defaults and all): skipped, nothing trains
    assert store.rows() == before
    rows = store.config_rows(JobSpec.from_config(cfg).config_hash)
    assert {r["protocol"] for r in rows} == {"generate", "rank"} and {r["method"] for r in rows} == {method}
    frame = read_predictions(store.dir, rows[0])  # its predictions file still matches its hash
    assert len(frame) == 4 and set(frame["task"]) == {"cb"}
