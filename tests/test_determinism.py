"""Determinism on CPU: the same config and seed give identical metrics, run after run."""

import pytest

from promptscale.train import run

from conftest import compose_config

# model tuning with dropout, across epochs and two evaluations
SETUP = [
    "model=tiny_s",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "method=model_tuning",
    "task=rte",
    "recipe.batch_size=4",
    "data.train_limit=8",
    "data.eval_limit=8",
    "recipe.max_steps=4",
    "recipe.val_check_interval=2",
]


# one intra-op thread for the whole module (conftest.one_thread); requested first, so
# module fixtures that train (test_preemption's `uninterrupted`) see the same threads
pytestmark = pytest.mark.usefixtures("one_thread")


def test_same_config_and_seed_give_identical_metrics(tmp_path):
    first = run(compose_config(tmp_path / "a", SETUP))
    second = run(compose_config(tmp_path / "b", SETUP))
    assert [(r["config_hash"], r["metric"], r["value"], r["step"]) for r in first] == [
        (r["config_hash"], r["metric"], r["value"], r["step"]) for r in second
    ]
