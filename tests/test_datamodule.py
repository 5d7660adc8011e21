"""Datamodule: T5 mixing rates, deterministic sampling, dynamic padding, per-task eval batches."""

import pytest
from hydra.utils import instantiate

from promptscale.data.datamodule import MixtureSampler, mixing_rates, pad


def test_mixing_rates_follow_t5_formula():
    # r_m = min(e_m, K) / sum_n min(e_n, K); with K = 100: min(50,100)=50, min(300,100)=100, min(100,100)=100
    assert mixing_rates([50, 300, 100], cap=100) == pytest.approx([50 / 250, 100 / 250, 100 / 250])
    # Lester/T5 defaults: ReCoRD counts one example per gold answer (138,854) and hits K = 2^19? no:
    # 138,854 < 524,288, so every SuperGLUE task is mixed in proportion to its size.
    sizes = [9427, 250, 400, 27243, 138854, 2490, 5428, 259]
    assert mixing_rates(sizes, cap=2**19) == pytest.approx([s / sum(sizes) for s in sizes])


def test_sampler_is_deterministic_per_epoch_and_proportional():
    sampler = MixtureSampler([10, 30], cap=1000, seed=3)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert len(first) == 40
    big = MixtureSampler([100, 300], cap=1000, seed=0)
    share = sum(i < 100 for i in big) / 400
    assert 0.17 < share < 0.33  # ~ 100 / 400


def test_single_task_epoch_is_a_permutation():
    assert sorted(MixtureSampler([12], cap=2**19, seed=0)) == list(range(12))


def test_pad_shapes():
    ids, mask = pad([[5, 6, 1], [7, 1]], 0)
    assert ids.tolist() == [[5, 6, 1], [7, 1, 0]] and mask.tolist() == [[1, 1, 1], [1, 1, 0]]


def dm(make_config, task, *overrides):
    cfg = make_config("method=model_tuning", f"task={task}", *overrides)
    data = instantiate(cfg.data, seed=0, batch_size=4)
    data.load()
    tok = instantiate(cfg.model).build_tokenizer()
    from promptscale.data.formats import format_examples

    data.attach(tok, lambda t, r, train: format_examples(t, r, prefix=True, train=train))
    return data


def test_train_batches_are_dynamically_padded(make_config):
    data = dm(make_config, "boolq", "data.train_limit=8")
    batch = next(iter(data.train_dataloader()))
    width = batch["input_ids"].shape[1]
    assert batch["attention_mask"].sum(1).max() == width  # padded to the longest in the batch only
    assert (batch["labels"] == -100).any() or batch["labels"].shape[1] >= 1


def test_inputs_are_truncated(make_config):
    data = dm(make_config, "boolq", "data.max_input_length=16")
    assert max(len(it.input_ids) for it in data.train_items + data.eval_items) <= 16


def test_eval_batches_hold_one_task_each(make_config):
    data = dm(make_config, "superglue", "data.eval_batch_size=3")
    for idx in data.eval_batches():
        assert len({data.eval_items[i].example.task for i in idx}) == 1
    total = sum(len(b) for b in data.eval_batches())
    assert total == len(data.eval_items)  # every example exactly once


def test_eval_batch_carries_all_choices(make_config):
    data = dm(make_config, "record")
    batch = next(iter(data.val_dataloader()))
    n = sum(len(ex.choices) for ex in batch["examples"])
    assert batch["choice_labels"].shape[0] == n == batch["choice_owner"].shape[0]


@pytest.mark.parametrize("key", ["eval_batch_size", "max_input_length"])
def test_non_positive_sizes_fail(make_config, key):
    cfg = make_config("task=rte", f"data.{key}=0")
    with pytest.raises(Exception, match=f"data.{key} must be positive"):  # Hydra wraps the ValueError
        instantiate(cfg.data, batch_size=4)


def test_a_task_without_evaluation_examples_fails_instead_of_finishing_with_no_result(make_config):
    """An empty dev split would end a run with no rows, so every relaunch would retrain it."""
    from promptscale.train import run

    with pytest.raises(ValueError, match="task 'rte' has no val examples to score"):
        run(make_config("task=rte", "data.eval_limit=0"))
