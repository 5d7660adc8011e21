"""The recipe workload: per-task training jobs at the recipe batch on SuperGLUE's input lengths.

Lester et al. (2021) train every task for the same 30,000 steps, per size and seed, at batch 32,
so a sweep's training steps are spread evenly over the eight tasks, each step a batch of one
task. A timed pass here is one step per task (split over the repeats), each arm drawing its
batches the way it really does:

* ours: the job's ``SuperGlueDataModule`` for that task (``data.*`` of the composed job config, so
  ``data.bucket_by_length`` decides), its ``train_dataloader()`` and collate function, iterated
  from the start of an epoch (a bucketed epoch's batches come in shuffled order, so the first
  ones are a fair sample of its padding);
* PEFT + ``Seq2SeqTrainer``: ``group_by_length=False`` (its default), i.e. uniformly random
  examples of the task, padded per batch by ``DataCollatorForSeq2Seq``.

Input lengths are drawn per task from a log-normal with the official dev set's median and 95th
percentile (T5 tokenizer, task prefix included; REFERENCE section 5), capped at its maximum and
cut at 512 tokens as the data module cuts them; the fit (median, 95th percentile, share cut) is
reported. Token ids are random (weights are random too); targets are the tasks' label words.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from hydra.utils import instantiate

from promptscale.bench.core import random_ids
from promptscale.data.datamodule import Item, SuperGlueDataModule
from promptscale.data.example import Example

# Official dev sets, T5 tokenizer, task prefix included: (median, 95th percentile, max) tokens.
DEV_LENGTHS = {
    "boolq": (145, 296, 1142),
    "multirc": (394, 589, 687),
    "record": (299, 345, 348),
    "cb": (96, 213, 301),
    "rte": (65, 177, 283),
    "wsc": (49, 83, 84),
    "copa": (38, 47, 53),
    "wic": (33, 47, 77),
}
# Official training examples per task (ReCoRD: one per gold answer; WSC: true labels only).
TRAIN_SIZES = {"boolq": 9427, "multirc": 27243, "record": 138854, "cb": 250,
               "rte": 2490, "wsc": 259, "copa": 400, "wic": 5428}  # fmt: skip
TARGETS = {  # label words (open-ended tasks: a few-token answer)
    "boolq": ("False", "True"), "multirc": ("False", "True"), "wic": ("False", "True"),
    "cb": ("entailment", "contradiction", "neutral"), "rte": ("entailment", "not_entailment"),
    "copa": ("choice1", "choice2"), "record": ("Barack Obama", "the United Nations"), "wsc": ("the dog", "Mark"),
}  # fmt: skip
MAX_INPUT = 512  # data.max_input_length
Z95 = 1.6448536269514722  # standard normal 95th percentile
CHUNK = 50  # batches per bucketing chunk (BucketBatchSampler's default): the most a task needs


def sample_lengths(task: str, n: int, rng: random.Random) -> list[int]:
    """``n`` input lengths of ``task``: log-normal through the dev median and 95th percentile,
    capped at the dev maximum, cut at ``MAX_INPUT``."""
    median, p95, longest = DEV_LENGTHS[task]
    sigma = math.log(p95 / median) / Z95
    return [min(MAX_INPUT, longest, max(4, round(median * math.exp(sigma * rng.gauss(0.0, 1.0))))) for _ in range(n)]


def length_fit(lengths: Sequence[int]) -> dict:
    """Median, 95th percentile, max and share cut at 512 of sampled lengths (to compare with the dev set)."""
    ordered = sorted(lengths)
    return {
        "median": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
        "cut_at_512": sum(n >= MAX_INPUT for n in ordered) / len(ordered),
    }


@dataclass
class TaskData:
    """One task's synthetic training set: items (ids + targets) and its data module."""

    task: str
    items: list[Item]
    data: SuperGlueDataModule
    batches: dict[str, Iterator[dict]] = field(default_factory=dict)  # per arm: its loader, across repeats


@dataclass
class Workload:
    """Per-task training sets of the recipe workload and the order arms step through them.

    Attributes:
        schedule: Each repeat's tasks, one optimizer step each.
        batch_size: The recipe batch (32): examples per optimizer step.
        accumulate: Micro-batches per step (``batch_size / accumulate`` examples each), where a
            whole batch of long inputs does not fit in memory; every arm accumulates alike.
        seed: Seed of the lengths, ids and every arm's draws.
    """

    tokenizer: object
    data_config: object  # the job's ``data`` config node (bucket_by_length, max lengths, ...)
    batch_size: int
    seed: int
    schedule: list[tuple[str, ...]]
    accumulate: int = 1
    tasks: dict[str, TaskData] = field(default_factory=dict)
    warmup: list[dict] = field(default_factory=list)  # an untimed first step (the shortest task's)

    @classmethod
    def build(
        cls, tokenizer, data_config, batch_size: int, schedule: list[tuple[str, ...]], seed: int, accumulate: int = 1
    ) -> Workload:
        if batch_size % accumulate:
            raise ValueError(f"batch {batch_size} does not split into {accumulate} micro-batches")
        workload = cls(tokenizer, data_config, batch_size, seed, schedule, accumulate)
        vocab = min(len(tokenizer), 2000)
        rng = random.Random(seed)
        for task in sorted({t for tasks in schedule for t in tasks}, key=list(DEV_LENGTHS).index):
            n = max(batch_size, min(TRAIN_SIZES[task], CHUNK * batch_size) // batch_size * batch_size)
            targets = [tokenizer(w)["input_ids"] for w in TARGETS[task]]
            items = []
            for i, length in enumerate(sample_lengths(task, n, rng)):
                ex = Example(task=task, inputs="", targets="", choices=(), label=-1, group=str(i), answers=())
                items.append(Item(ex, random_ids(length, rng, vocab), targets[i % len(targets)]))
            workload.tasks[task] = TaskData(task, items, workload.data_module(task, items))
        shortest = min(workload.tasks.values(), key=lambda t: DEV_LENGTHS[t.task][0])
        micro = workload.micro_batch
        workload.warmup = [
            shortest.data.collate_train(shortest.items[s : s + micro]) for s in range(0, batch_size, micro)
        ]
        return workload

    @property
    def micro_batch(self) -> int:
        return self.batch_size // self.accumulate

    def data_module(self, task: str, items: list[Item]) -> SuperGlueDataModule:
        """The job's data module (its ``data`` config) holding ``items`` as ``task``'s training set."""
        data = instantiate(self.data_config, tasks=[task], seed=self.seed, batch_size=self.micro_batch)
        data.tokenizer = self.tokenizer
        data.train_items, data.task_sizes = items, [len(items)]
        return data

    def ours(self, repeat: int, arm: str) -> Iterator[dict]:
        """Our (micro-)batches for ``repeat``: the warm-up step's, then the next step's of each scheduled
        task (every arm iterates its own loaders, so all our arms see the same batches)."""
        yield from self.warmup
        for task in self.schedule[repeat]:
            state = self.tasks[task]
            if arm not in state.batches:
                state.batches[arm] = iter(state.data.train_dataloader())
            for _ in range(self.accumulate):
                yield next(state.batches[arm])

    def theirs(self, repeat: int) -> tuple[list[dict], list[int]]:
        """PEFT's dataset (every task's items as dicts) and its sampler order for ``repeat``:
        the warm-up batch, then ``batch_size`` uniformly random examples of each scheduled task."""
        dataset, offsets = [], {}
        for task, state in self.tasks.items():
            offsets[task] = len(dataset)
            dataset += [{"input_ids": it.input_ids, "attention_mask": [1] * len(it.input_ids),
                         "labels": it.target_ids} for it in state.items]  # fmt: skip
        shortest = min(self.tasks, key=lambda t: DEV_LENGTHS[t][0])
        order = list(range(offsets[shortest], offsets[shortest] + self.batch_size))
        rng = random.Random(self.seed * 1_000 + repeat)
        for task in self.schedule[repeat]:
            order += [offsets[task] + i for i in rng.sample(range(len(self.tasks[task].items)), self.batch_size)]
        return dataset, order

    def fits(self) -> dict[str, dict]:
        """The sampled length distribution per task next to the dev set's."""
        out = {}
        for task, state in self.tasks.items():
            median, p95, longest = DEV_LENGTHS[task]
            fit = length_fit([len(it.input_ids) for it in state.items])
            out[task] = {
                "dev": {"median": median, "p95": p95, "max": longest},
                "sampled": fit,
                "examples": len(state.items),
            }
        return out


def balanced_schedule(tasks: Sequence[str], repeats: int) -> list[tuple[str, ...]]:
    """Splits ``tasks`` over ``repeats`` so each repeat has long and short ones (cost balanced)."""
    by_length = sorted(tasks, key=lambda t: -DEV_LENGTHS[t][0])
    schedule: list[list[str]] = [[] for _ in range(repeats)]
    for i, task in enumerate(by_length):  # snake order: longest to repeat 0, 1, ..., then back
        lap, pos = divmod(i, repeats)
        schedule[pos if lap % 2 == 0 else repeats - 1 - pos].append(task)
    return [tuple(s) for s in schedule if s]
