"""promptscale-bench: exits 0, the tiny run writes its JSON and markdown, the workload is faithful.

Timings are never asserted (they depend on the machine and its load): only structure, positive
ratios, exit status, and the exact parts (padding counts, the workload's lengths and batches).
"""

import json
import random
import subprocess
import sys
from collections import Counter

import pytest

from promptscale.bench import main, run
from promptscale.bench.levers import LEVERS
from promptscale.bench.workload import DEV_LENGTHS, Workload, balanced_schedule, length_fit, sample_lengths
from promptscale.data.datamodule import BucketBatchSampler, MixtureSampler

TINY = ["--tiny", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    run([*TINY, "--out", str(out)])
    return out, json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def test_console_script_exits_zero(tmp_path):
    assert main([*TINY, "--sections", "padding", "--out", str(tmp_path / "a")]) == 0
    done = subprocess.run(  # as the console-script wrapper runs it: sys.exit(main())
        [sys.executable, "-m", "promptscale.bench", *TINY, "--sections", "padding", "--out", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "b" / "bench.json").is_file() and "{'meta'" not in done.stderr  # no dict dumped


def test_json_has_every_section(tiny_run):
    _, result, _ = tiny_run
    assert {"meta", "training", "evaluation", "padding", "memory", "adafactor", "targets"} <= set(result)
    assert result["meta"]["mode"] == "tiny" and result["meta"]["date"]
    training = result["training"]["sizes"]["tiny_s"]
    assert {"prompt_tuning", "lora", "model_tuning", "peft_prompt_tuning", "peft_lora"} <= set(training["arms"])
    assert training["matmul_peak"]["flop_per_s"] > 0 and training["data_bucket_by_length"] is True
    steps = len(training["schedule"][0])
    for arm in training["arms"].values():
        assert arm["examples_per_s"] > 0 and arm["tokens_per_s"] > 0 and arm["mfu"] > 0
        assert arm["steps"] == steps and arm["examples"] == steps * training["batch_size"]
    evaluation = result["evaluation"]["sizes"]["tiny_s"]
    assert set(evaluation["arms"]) == {
        "both_protocols", "generate_stopped", "both_protocols_label", "generate_stopped_label", "rank",
        "rank_reencode", "generate_recipe",
    }  # fmt: skip
    # the rank classifications are the same computation: identical predictions
    assert evaluation["rank_agreement"] == {"both_protocols": 1.0, "rank_reencode": 1.0}
    memory = result["memory"]["shapes"]["tiny_s @ rte"]
    assert memory["model_tuning"]["steady_above_baseline_mb"] > 0 and memory["prompt_tuning"]["train_peak_mb"] > 0
    assert result["adafactor"]["seconds_per_step"]["ours"] > 0
    assert all({"target", "value", "met"} <= set(t) for t in result["targets"])
    assert memory["prompt_tuning+checkpoint"]["steady_above_baseline_mb"] > 0
    assert len(result["targets"]) == 8  # 2 throughput ratios, 2 MFU, 2 evaluation, 2 memory
    levers = result["levers"]["arms"]  # every lever measured against the defaults, none broken
    assert set(levers) == {"defaults", *LEVERS} and not [a for a in levers.values() if a["errors"]]
    assert all(a["examples_per_s"] > 0 and a["defaults_over_arm"] > 0 for a in levers.values())


def test_every_ratio_is_positive(tiny_run):
    _, result, _ = tiny_run
    ratios = [v for block in result["training"]["sizes"].values() for v in block["ratios"].values()]
    ratios += [v for block in result["evaluation"]["sizes"].values() for v in block["ratios"].values()]
    ratios += [v for row in result["padding"]["settings"].values() for k, v in row.items() if "ratio" in k]
    assert ratios and all(r is not None and r > 0 for r in ratios)


def test_markdown_tables(tiny_run):
    out, _, text = tiny_run
    for heading in ("## Training throughput", "## Evaluation", "## Padding", "## Peak memory", "## Adafactor",
                    "## Speed levers", "## Targets"):  # fmt: skip
        assert heading in text
    assert "| size | arm |" in text and "prompt_tuning / peft_prompt_tuning" in text and "| boolq |" in text


def test_padding_counts_are_exact(tiny_run):
    _, result, _ = tiny_run
    for row in result["padding"]["settings"].values():
        assert row["same_examples_drawn"]
        assert row["real_tokens"] <= row["tokens_bucketed"] <= row["tokens_dynamic"] <= row["tokens_static"]
    assert result["padding"]["per_task_jobs"]["ratio_dynamic_vs_bucketed"] >= 1.0


# -- the workload ------------------------------------------------------------------------------
def test_sampled_lengths_match_the_dev_sets():
    rng = random.Random(0)
    for task, (median, p95, longest) in DEV_LENGTHS.items():
        fit = length_fit(sample_lengths(task, 20_000, rng))
        assert abs(fit["median"] / median - 1) < 0.05 and fit["max"] <= min(longest, 512)
        assert abs(fit["p95"] / min(p95, 512) - 1) < 0.05 or fit["p95"] == min(longest, 512)
    multirc = length_fit(sample_lengths("multirc", 20_000, rng))["cut_at_512"]
    boolq = length_fit(sample_lengths("boolq", 20_000, rng))["cut_at_512"]
    assert 0.11 < multirc < 0.18 and boolq < 0.02  # REFERENCE: 14.3% and 0.55% cut at 512


def test_schedule_covers_every_task_once_with_long_and_short_together():
    schedule = balanced_schedule(tuple(DEV_LENGTHS), 4)
    assert sorted(t for s in schedule for t in s) == sorted(DEV_LENGTHS) and all(len(s) == 2 for s in schedule)
    assert ("multirc", "wic") in schedule  # the longest with the shortest
    assert balanced_schedule(("rte", "cb"), 5) == [("cb",), ("rte",)]


@pytest.fixture(scope="module")
def workload():
    from promptscale.bench.core import build_spec, compose_config

    config = compose_config("tiny_s", "prompt_tuning")
    schedule = [("boolq", "copa"), ("rte",)]
    return Workload.build(build_spec("tiny_s").build_tokenizer(), config.data, 4, schedule, seed=0)


def test_our_arms_see_the_same_bucketed_batches(workload):
    a, b = list(workload.ours(0, "a")), list(workload.ours(0, "b"))
    assert len(a) == 3 and all((x["input_ids"] == y["input_ids"]).all() for x, y in zip(a, b))
    later = list(workload.ours(1, "a"))  # the next repeat continues each task's loader
    assert len(later) == 2 and later[0] is workload.warmup[0]


def test_micro_batches_split_each_step_alike_for_both_arms():
    from promptscale.bench.core import build_spec, compose_config

    config = compose_config("tiny_s", "prompt_tuning")
    split = Workload.build(build_spec("tiny_s").build_tokenizer(), config.data, 8, [("rte", "wic")], 0, accumulate=2)
    ours = list(split.ours(0, "a"))
    assert len(ours) == 6 and all(b["input_ids"].shape[0] == 4 for b in ours)  # (warm-up + 2 tasks) x 2 of 4
    _, order = split.theirs(0)
    assert len(order) == 3 * 8  # PEFT: the same examples per step, cut into micro-batches by its trainer


def test_peft_batches_are_random_examples_of_one_task(workload):
    dataset, order = workload.theirs(0)
    batches = [order[s : s + 4] for s in range(0, len(order), 4)]
    assert len(batches) == 3  # warm-up, boolq, copa
    offsets, start = {}, 0
    for task, state in workload.tasks.items():
        offsets[task] = range(start, start + len(state.items))
        start += len(state.items)
    assert len(dataset) == start
    for batch, task in zip(batches[1:], ("boolq", "copa")):
        assert all(i in offsets[task] for i in batch) and len(set(batch)) == 4
    assert workload.theirs(0)[1] == order and workload.theirs(1)[1] != order  # seeded per repeat


# -- bucketing at the sampler level (the datamodule-level proof is tests/test_levers.py) ---------
def test_bucketing_keeps_each_chunk_and_is_deterministic():
    sizes, batch, chunk = [30, 50, 20], 4, 3
    lengths = [(i * 37) % 101 for i in range(sum(sizes))]
    mixture = MixtureSampler(sizes, cap=2**19, seed=3)
    buckets = BucketBatchSampler(MixtureSampler(sizes, cap=2**19, seed=3), lengths, batch, seed=3, chunk_batches=chunk)
    for epoch in (0, 1):
        mixture.set_epoch(epoch)
        buckets.set_epoch(epoch)
        order, batches = list(mixture), list(buckets)
        assert len(batches) == len(buckets) == -(-len(order) // batch)
        span = batch * chunk
        flat = [i for b in batches for i in b]
        for start in range(0, len(order), span):  # same examples per chunk: mixing rates unchanged
            assert Counter(flat[start : start + span]) == Counter(order[start : start + span])
        for b in batches[:-1]:
            assert len(b) == batch
        assert batches == list(buckets)  # a pure function of (seed, epoch)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    random_spread = sum(
        max(lengths[i] for i in order[s : s + batch]) - min(lengths[i] for i in order[s : s + batch])
        for s in range(0, len(order), batch)
    )
    assert spread < random_spread


def test_bucketed_training_runs(make_config):
    from promptscale.train import run as train

    rows = train(make_config("method=prompt_tuning", "task=cb", "data.bucket_by_length=true", "data.train_limit=16"))
    assert rows and all(0.0 <= r["value"] <= 100.0 for r in rows)
