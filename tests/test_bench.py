"""promptscale-bench: the tiny run writes its JSON and markdown; length bucketing keeps the mixture.

Timings are never asserted (they depend on the machine and its load): only structure, positive
ratios, and the exact counting parts.
"""

import json
from collections import Counter

import pytest

from promptscale.bench import main
from promptscale.data.datamodule import BucketBatchSampler, MixtureSampler


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    main(["--tiny", "--out", str(out), "--device", "cpu"])
    return out, json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def test_json_has_every_section(tiny_run):
    _, result, _ = tiny_run
    assert {"meta", "training", "evaluation", "padding", "memory", "targets"} <= set(result)
    assert result["meta"]["mode"] == "tiny" and result["meta"]["date"]
    training = result["training"]["sizes"]["tiny_s"]
    assert {"prompt_tuning", "model_tuning", "peft_prompt_tuning", "peft_lora"} <= set(training["arms"])
    assert training["matmul_peak"]["flop_per_s"] > 0
    for arm in training["arms"].values():
        assert arm["examples_per_s"] > 0 and arm["tokens_per_s"] > 0 and arm["mfu"] > 0
    evaluation = result["evaluation"]["sizes"]["tiny_s"]
    assert {"rank", "both_protocols", "rank_previous", "rank_reencode", "generate_recipe", "generate_label"} == set(
        evaluation["arms"]
    )
    # the three rank classifications are the same computation: identical predictions
    assert evaluation["rank_agreement"] == {"rank_previous": 1.0, "rank_reencode": 1.0}
    memory = result["memory"]["sizes"]["tiny_s"]
    assert memory["model_tuning"]["above_baseline_mb"] > 0 and memory["prompt_tuning"]["train_peak_mb"] > 0
    assert all({"target", "value", "met"} <= set(t) for t in result["targets"])


def test_every_ratio_is_positive(tiny_run):
    _, result, _ = tiny_run
    ratios = [v for block in result["training"]["sizes"].values() for v in block["ratios"].values()]
    ratios += [v for block in result["evaluation"]["sizes"].values() for v in block["ratios"].values()]
    ratios += [v for row in result["padding"]["settings"].values() for k, v in row.items() if "ratio" in k]
    assert ratios and all(r is not None and r > 0 for r in ratios)


def test_markdown_tables(tiny_run):
    out, _, text = tiny_run
    for heading in ("## Training throughput", "## Evaluation", "## Padding", "## Peak memory", "## Targets"):
        assert heading in text
    assert "| size | arm |" in text and "prompt_tuning / peft_prompt_tuning" in text


def test_padding_counts_are_exact(tiny_run):
    _, result, _ = tiny_run
    for row in result["padding"]["settings"].values():
        assert row["same_examples_drawn"]
        assert row["real_tokens"] <= row["tokens_bucketed"] <= row["tokens_dynamic"] <= row["tokens_static"]


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
    from promptscale.train import run

    rows = run(make_config("method=prompt_tuning", "task=cb", "data.bucket_by_length=true", "data.train_limit=16"))
    assert rows and all(0.0 <= r["value"] <= 100.0 for r in rows)
