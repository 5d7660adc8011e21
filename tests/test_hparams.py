"""Hyperparameter search: ``main()`` returns the primary dev score; Hydra's Optuna sweeper drives it,
and the config-hash skip and resume still hold inside a search."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from promptscale.search import dev_score, stored_rows
from promptscale.store.results import ResultsStore
from promptscale.train import main

from conftest import CONF_DIR, FAST, ROOT


def row(task, metric, value, protocol="generate", selected_by="generate", status="ok"):
    return {"task": task, "metric": metric, "value": value, "protocol": protocol, "selected_by": selected_by,
            "status": status}  # fmt: skip


def test_dev_score_is_the_mean_task_score_under_the_selecting_protocol():
    rows = [
        row("cb", "accuracy", 80.0),
        row("cb", "f1_macro", 60.0),  # CB's score: the mean of its two metrics, 70
        row("rte", "accuracy", 50.0),
        row("rte", "invalid", 40.0),  # a rate of malformed outputs, never part of a score
        row("rte", "accuracy", 99.0, protocol="rank"),  # the other protocol did not select
        row("axb", "matthews_corr", 10.0),  # a diagnostic: not in the SuperGLUE score
    ]
    assert dev_score(rows) == pytest.approx(60.0)
    assert dev_score([row("axb", "matthews_corr", 10.0)]) == 10.0  # only diagnostics: those count
    assert math.isnan(dev_score([])) and math.isnan(dev_score([row("rte", "accuracy", 5.0, status="failed")]))


def test_main_returns_the_score_also_for_a_skipped_config(make_config, one_thread):
    cfg = make_config("method=prompt_tuning", "task=cb", "evaluation.protocol=rank")
    first = main(cfg)  # Hydra's decorated main runs the task function on a passed config
    (chash,) = {r["config_hash"] for r in ResultsStore(cfg.results).rows()}
    assert first == dev_score(stored_rows(cfg.results, chash)) and 0 < first <= 100
    before = ResultsStore(cfg.results).rows()
    assert main(cfg) == first  # skipped by the store: nothing trains, the stored score is reported
    assert ResultsStore(cfg.results).rows() == before


def test_search_config_composes_with_the_optuna_sweeper():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=prompt_tuning"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert sweeper.direction == "maximize" and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert set(sweeper.params) == {"recipe.optimizer.lr", "method.prompt_length"}
    assert cfg.method._target_.endswith("PromptTuning") and list(cfg.figure.draw) == []


def search(tmp_path: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """Four trials over two prompt lengths: at least two trials repeat a config."""
    env = {**os.environ, "PROMPTSCALE_OUTPUTS": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    fast = [o for o in FAST if not o.startswith("recipe.max_steps")]
    cmd = [sys.executable, "-m", "promptscale.train", "hparams_search=prompt_tuning", "task=rte", *fast,
           "recipe.max_steps=3", "evaluation.protocol=rank", "recipe.optimizer.lr=0.3",
           "method.prompt_length=choice(2,3)", "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler.n_startup_trials=2",
           "trainer.enable_progress_bar=false"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return max((tmp_path / "multiruns" / "default").iterdir()), proc


def trials(sweep: Path) -> list[tuple[str, float]]:
    """(prompt length override, reported score) of every trial, from the trials' own folders."""
    out = []
    for folder in sorted(p for p in sweep.iterdir() if p.is_dir()):
        overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
        length = next(o for o in overrides if o.startswith("method.prompt_length="))
        score = re.search(r"primary dev score: (\S+)", (folder / "train.log").read_text()).group(1)
        out.append((length, float(score)))
    return out


def test_optuna_search_skips_repeated_configs_and_resumes_from_the_store(tmp_path):
    sweep, proc = search(tmp_path)
    store = ResultsStore(tmp_path / "results.jsonl")
    hashes = {r["config_hash"] for r in store.rows()}
    found = trials(sweep)
    assert len(found) == 4 and len(hashes) == len({length for length, _ in found}) <= 2  # each config trained once
    assert proc.stderr.count("skipping") + proc.stdout.count("skipping") >= 2
    by_length = {}
    for length, score in found:  # a skipped trial reports exactly what its config scored when it trained
        assert by_length.setdefault(length, score) == score
    stored = {dev_score(stored_rows(store.path, h)) for h in hashes}
    assert set(by_length.values()) == stored
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(stored)

    files = sorted(p.name for p in store.dir.iterdir())
    resumed, _ = search(tmp_path)  # a relaunched search: every trial is skipped, the same scores come back
    assert sorted(p.name for p in store.dir.iterdir()) == files
    assert sorted(trials(resumed)) == sorted(found)
    assert yaml.safe_load((resumed / "optimization_results.yaml").read_text())["best_value"] == best["best_value"]
