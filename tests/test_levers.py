"""Length-bucketed training batches (``data.bucket_by_length=true``, the default) draw the same data.

Through the job seam, on a real mixture (CB, COPA, RTE of the embedded sample): for two epochs,
the bucketed loader yields exactly the examples the unbucketed one yields (same multiset per
epoch, so the same examples-proportional mixing rates), chunk by chunk, with batches of similar
length; only the order inside a chunk differs. The counting of padding on the full workload is
``promptscale-bench``'s padding section (exact, tested in test_bench.py).
"""

from collections import Counter

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def epochs(job, count: int = 2) -> list[list[list[int]]]:
    """The training batches (dataset indices) of ``count`` epochs, as Lightning would draw them."""
    loader = job.data.train_dataloader()
    out = []
    for epoch in range(count):
        loader.batch_sampler.set_epoch(epoch)
        out.append([list(b) for b in loader.batch_sampler])
    return out


def test_bucketing_draws_the_same_examples_per_epoch_and_chunk(make_job):
    common = ("task=superglue", "data.train_limit=40", "method=multitask_model_tuning", "joint_tasks=[cb,copa,rte]")
    bucketed = make_job(*common, "data.bucket_by_length=true")
    plain = make_job(*common, "data.bucket_by_length=false")
    items = bucketed.data.train_items
    assert [it.input_ids for it in items] == [it.input_ids for it in plain.data.train_items]
    batch = bucketed.data.batch_size
    for ours, theirs in zip(epochs(bucketed), epochs(plain)):
        flat, order = [i for b in ours for i in b], [i for b in theirs for i in b]
        assert Counter(flat) == Counter(order)  # the same examples, as often
        tasks = Counter(items[i].example.task for i in flat)
        assert tasks == Counter(items[i].example.task for i in order) and len(tasks) == 3  # the same mixture
        span = batch * 50  # BucketBatchSampler's chunk
        for start in range(0, len(order), span):
            assert Counter(flat[start : start + span]) == Counter(order[start : start + span])
        spread = [max(len(items[i].input_ids) for i in b) - min(len(items[i].input_ids) for i in b) for b in ours]
        random = [max(len(items[i].input_ids) for i in b) - min(len(items[i].input_ids) for i in b) for b in theirs]
        assert sum(spread) < sum(random)  # similar lengths together: less padding
    assert epochs(bucketed) == epochs(bucketed)  # a pure function of (seed, epoch): resumable


def test_bucketing_is_the_default(make_config):
    assert make_config().data.bucket_by_length is True
