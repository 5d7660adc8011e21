"""Multi-task model tuning: examples-proportional mixing rates, prefix kept, best checkpoint per task."""

import pytest
import torch

from promptscale.data.datamodule import MixtureSampler, mixing_rates
from promptscale.data.tasks import get_task
from promptscale.train import run

from conftest import SUPERGLUE


def attached(make_job, *overrides, tasks=("record", "cb", "rte")):
    job = make_job("method=multitask_model_tuning", f"data.tasks=[{','.join(tasks)}]", *overrides)
    return job.data, job.method


@pytest.mark.parametrize("cap", [2**19, 3])
def test_mixing_rates_count_record_once_per_gold_answer(make_job, cap):
    data, _ = attached(make_job, f"data.mixing_cap={cap}", "data.train_limit=null")
    records = {t: data.records[(t, "train")] for t in data.tasks}
    gold = sum(len({a["text"] for a in qa["answers"]}) for r in records["record"] for qa in r["qas"])
    expected_sizes = [gold, len(records["cb"]), len(records["rte"])]
    assert gold > sum(len(r["qas"]) for r in records["record"])  # the sample has a two-answer query
    assert data.task_sizes == expected_sizes
    capped = [min(e, cap) for e in expected_sizes]
    expected = [c / sum(capped) for c in capped]
    assert mixing_rates(data.task_sizes, cap) == pytest.approx(expected)
    # the sampler train_dataloader() builds draws tasks at these rates
    sampler = MixtureSampler(data.task_sizes, data.mixing_cap, seed=0)
    draws = []
    for epoch in range(40):
        sampler.set_epoch(epoch)
        draws += list(sampler)
    ends = torch.tensor(data.task_sizes).cumsum(0)
    counts = torch.bincount(torch.bucketize(torch.tensor(draws), ends, right=True), minlength=3)
    assert (counts / counts.sum()).tolist() == pytest.approx(expected, abs=0.03)
    if cap == 3:  # every task has more than 3 examples: the cap makes the mixture uniform
        assert expected == pytest.approx([1 / 3] * 3)


def test_config_cap_defaults_to_t5(make_config):
    assert make_config("method=multitask_model_tuning", "task=superglue").data.mixing_cap == 2**19


def test_task_prefix_is_kept(make_job):
    data, _ = attached(make_job)
    assert {item.example.inputs.split()[0] for item in data.train_items} == {"record", "cb", "rte"}


def test_single_task_adds_no_per_task_checkpoints(make_job):
    _, method = attached(make_job, tasks=("rte",))
    assert method.configure_callbacks() == []
    _, multi = attached(make_job)
    assert len(multi.configure_callbacks()) == 1


def test_one_run_scores_every_task_with_its_own_best_checkpoint(make_config, tmp_path):
    cfg = make_config(
        "method=multitask_model_tuning", "task=superglue", "recipe.max_steps=4", "recipe.val_check_interval=2"
    )
    rows = run(cfg)
    assert {r["task"] for r in rows} == set(SUPERGLUE)
    for task in SUPERGLUE:
        task_rows = [r for r in rows if r["task"] == task and r["protocol"] == "rank"]
        assert {r["metric"] for r in task_rows} == set(get_task(task).metrics)
        ckpt = torch.load(
            tmp_path / "run" / "checkpoints" / f"best-{task}.ckpt", map_location="cpu", weights_only=False
        )
        # the file holds the weights of the step whose dev score the rows report
        assert ckpt["global_step"] == task_rows[0]["step"] == ckpt["promptscale_best"][task]["step"]
        assert ckpt["promptscale_best"][task]["metrics"]["rank"] == {r["metric"]: r["value"] for r in task_rows}
