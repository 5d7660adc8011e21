"""Lightning datamodule: records -> formatted examples -> token ids -> dynamically padded batches.

Loading (and therefore validation of every record) happens in ``load()``, which the entry point
calls before any model is built, so a malformed file fails in seconds, not after the download
of an 11B checkpoint. Tokenisation needs the method's tokenizer and formatter, handed over with
``attach()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from promptscale.data.example import Example
from promptscale.data.sources import DataSource, load_records
from promptscale.data.tasks import get_task
from promptscale.distributed import rank_and_world, resumable, shard_eval_batches

Formatter = Callable[[str, dict, bool], list[Example]]  # (task, record, train) -> examples
IGNORE = -100  # label id the loss ignores


@dataclass(frozen=True)
class Item:
    """One tokenised example: encoder ids, target ids and (eval only) candidate ids."""

    example: Example
    input_ids: list[int]
    target_ids: list[int]
    choice_ids: tuple[list[int], ...] = ()


def mixing_rates(sizes: Sequence[int], cap: int) -> list[float]:
    """Examples-proportional mixing with a size cap (T5): r_m = min(e_m, K) / sum_n min(e_n, K)."""
    capped = [min(size, cap) for size in sizes]
    total = sum(capped)
    if total == 0:
        raise ValueError("no training examples in any task")
    return [c / total for c in capped]


class MixtureSampler(Sampler[int]):
    """Draws a task by its mixing rate, then that task's next example in a shuffled order.

    With one task this is a plain reshuffle every epoch. ``set_epoch`` makes each epoch's order
    a pure function of (seed, epoch), so a resumed run sees the same data as an unbroken one.
    """

    def __init__(self, sizes: Sequence[int], cap: int, seed: int) -> None:
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.sizes = list(sizes)
        self.rates = torch.tensor(mixing_rates(sizes, cap), dtype=torch.double)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(self.sizes)

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        orders = [torch.randperm(n, generator=gen).tolist() if n else [] for n in self.sizes]
        cursors = [0] * len(self.sizes)
        tasks = torch.multinomial(self.rates, len(self), replacement=True, generator=gen).tolist()
        for t in tasks:
            order = orders[t]
            yield self.offsets[t] + order[cursors[t] % len(order)]
            cursors[t] += 1


class BucketBatchSampler(Sampler[list[int]]):
    """Training batches of similar input length, drawn from a sampler's order.

    The sampler's order (e.g. ``MixtureSampler``'s) is cut into chunks of ``chunk_batches``
    batches; each chunk is sorted by length, cut into batches, and the chunk's batches are
    shuffled. Every chunk holds exactly the examples the sampler drew, so mixing rates are
    unchanged and only the order inside a chunk differs; the order is a pure function of
    (seed, epoch), like the sampler's.
    """

    def __init__(
        self, sampler: Sampler[int], lengths: Sequence[int], batch_size: int, seed: int, chunk_batches: int = 50
    ) -> None:
        self.sampler = sampler
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.chunk_batches = chunk_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if callable(getattr(self.sampler, "set_epoch", None)):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 7_919)  # not the sampler's stream
        order = list(self.sampler)
        span = self.batch_size * self.chunk_batches
        for start in range(0, len(order), span):
            chunk = sorted(order[start : start + span], key=lambda i: self.lengths[i])  # stable
            batches = [chunk[s : s + self.batch_size] for s in range(0, len(chunk), self.batch_size)]
            for j in torch.randperm(len(batches), generator=gen).tolist():
                yield batches[j]


class SuperGlueDataModule(L.LightningDataModule):
    """SuperGLUE tasks as text-to-text batches.

    Args:
        tasks: Task names to train and evaluate on.
        dir: ``None`` for the embedded sample, ``hub`` for ``aps/super_glue``, or a local
            directory in the official release layout.
        batch_size: Training batch size (global, over all ranks): the recipe's, supplied by the job.
        eval_batch_size: Examples per evaluation batch (their choices ride along).
        max_input_length: Encoder tokens kept per example (a prompt is added on top).
        max_target_length: Decoder tokens kept per target.
        eval_split: Split scored for model selection and results (``val`` = SuperGLUE dev).
        mixing_cap: K of examples-proportional mixing (T5 default 2**19).
        train_limit: Keep only the first N training records per task (smoke tests).
        eval_limit: Keep only the first N evaluation records per task.
        num_workers: DataLoader workers.
        seed: Seed of the training order.
        target_sentinel: Prepend T5's first sentinel ``<extra_id_0>`` to every target and to
            every rank-classification choice (Lester et al. 2021, Figure 3c "span corruption +
            sentinel": targets look like span-corruption outputs). Evaluation strips one leading
            sentinel from generated text before T5's postprocessing (``evaluation.decode_generated``).
        bucket_by_length: Batch training examples of similar input length (``BucketBatchSampler``:
            chunks of 50 batches sorted by length, batch order shuffled): far less padding on
            mixed-length mixtures, same examples and mixing rates; off keeps the mixture's order.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        batch_size: int = 32,
        dir: str | None = None,
        eval_batch_size: int = 32,
        max_input_length: int = 512,
        max_target_length: int = 62,
        eval_split: str = "val",
        mixing_cap: int = 2**19,
        train_limit: int | None = None,
        eval_limit: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        target_sentinel: bool = False,
        bucket_by_length: bool = False,
    ) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("task.tasks is empty: name at least one task")
        for key, value in (
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
            ("max_input_length", max_input_length),
            ("max_target_length", max_target_length),
            ("mixing_cap", mixing_cap),
        ):
            if value <= 0:
                raise ValueError(f"{'recipe' if key == 'batch_size' else 'data'}.{key} must be positive, got {value}")
        self.tasks = [get_task(t).name for t in tasks]
        self.source = DataSource.from_dir(dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.max_input_length = max_input_length
        self.max_target_length = max_target_length
        self.eval_split = eval_split
        self.mixing_cap = mixing_cap
        self.train_limit = train_limit
        self.eval_limit = eval_limit
        self.num_workers = num_workers
        self.seed = seed
        self.target_sentinel = target_sentinel
        self.bucket_by_length = bucket_by_length
        self.records: dict[tuple[str, str], list[dict]] = {}
        self.train_items: list[Item] = []
        self.eval_items: list[Item] = []
        self.task_sizes: list[int] = []

    # -- loading -------------------------------------------------------------------------
    def load(self, train: bool = True) -> None:
        """Reads and validates every record this run needs (fails before any model exists)."""
        for task in self.tasks:
            if train:
                self.records[(task, "train")] = load_records(task, "train", self.source)[: self.train_limit]
            self.records[(task, self.eval_split)] = load_records(task, self.eval_split, self.source)[: self.eval_limit]

    def attach(self, tokenizer, formatter: Formatter) -> None:
        """Binds the method's tokenizer and text format; tokenises everything once.

        Raises:
            ValueError: A task has no evaluation example: a run would finish with no result.
        """
        self.tokenizer = tokenizer
        self.formatter = formatter
        self.train_items, self.task_sizes = [], []
        for task in self.tasks:
            items = self._tokenize(task, self.records.get((task, "train"), []), train=True)
            self.train_items += items
            self.task_sizes.append(len(items))
        self.eval_items = []
        for task in self.tasks:
            items = self._tokenize(task, self.records[(task, self.eval_split)], False)
            if not items:
                raise ValueError(
                    f"task {task!r} has no {self.eval_split} examples to score (data.eval_limit="
                    f"{self.eval_limit}, data.dir={self.source.dir or self.source.kind}): a run would end "
                    f"with no result"
                )
            self.eval_items += items

    def _tokenize(self, task: str, records: list[dict], train: bool) -> list[Item]:
        examples = [ex for record in records for ex in self.formatter(task, record, train)]
        return self.tokenize_examples(examples, train)

    def tokenize_examples(self, examples: list[Example], train: bool) -> list[Item]:
        """Token ids of formatted examples (and, for evaluation, of their choices)."""
        if not examples:
            return []
        inputs = self._ids([ex.inputs for ex in examples], self.max_input_length)
        targets = self._sentinel(self._ids([ex.targets for ex in examples], self.max_target_length))
        choice_texts = sorted({c for ex in examples for c in ex.choices}) if not train else []
        choice_ids = dict(zip(choice_texts, self._sentinel(self._ids(choice_texts, self.max_target_length))))
        return [
            Item(ex, i, t, tuple(choice_ids[c] for c in ex.choices) if not train else ())
            for ex, i, t in zip(examples, inputs, targets)
        ]

    def _ids(self, texts: list[str], max_length: int) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]

    def _sentinel(self, ids: list[list[int]]) -> list[list[int]]:
        """Target ids with ``<extra_id_0>`` in front when ``target_sentinel`` (kept within the length)."""
        if not self.target_sentinel:
            return ids
        sentinel = self.tokenizer.convert_tokens_to_ids("<extra_id_0>")
        if sentinel is None or sentinel == self.tokenizer.unk_token_id:
            raise ValueError("data.target_sentinel=true needs a T5 tokenizer with <extra_id_0>")
        n = self.max_target_length
        # Over length: cut the text, keep the sentinel in front and the closing </s> at the end.
        return [[sentinel, *seq] if len(seq) < n else [sentinel, *seq[: n - 2], seq[-1]] for seq in ids]

    def eval_examples(self) -> list[Example]:
        return [item.example for item in self.eval_items]

    # -- loaders -------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        if not self.train_items:
            raise ValueError(f"no training examples for tasks {self.tasks}")
        sampler = MixtureSampler(self.task_sizes, self.mixing_cap, self.seed)
        if self.bucket_by_length:
            lengths = [len(item.input_ids) for item in self.train_items]
            batches = BucketBatchSampler(sampler, lengths, self.batch_size, self.seed)
            loader = DataLoader(
                self.train_items, batch_sampler=batches, collate_fn=self.collate_train, num_workers=self.num_workers
            )
        else:
            loader = DataLoader(
                self.train_items,
                batch_size=self.batch_size,
                sampler=sampler,
                collate_fn=self.collate_train,
                num_workers=self.num_workers,
            )
        # per-rank slice of each global batch; skips consumed batches on a mid-epoch resume
        return resumable(loader, *rank_and_world(self.trainer))

    def val_dataloader(self) -> DataLoader:
        # rank-sharded without a DistributedSampler (whose padding would score examples twice)
        batches = shard_eval_batches(self.eval_batches(), *rank_and_world(self.trainer))
        return DataLoader(
            self.eval_items, batch_sampler=batches, collate_fn=self.collate_eval, num_workers=self.num_workers
        )

    def eval_batches(self) -> list[list[int]]:
        """Batches of one task each, longest first, so padding is small and OOM shows early."""
        batches = []
        for task in self.tasks:
            idx = [i for i, item in enumerate(self.eval_items) if item.example.task == task]
            idx.sort(key=lambda i: -len(self.eval_items[i].input_ids))
            batches += [idx[s : s + self.eval_batch_size] for s in range(0, len(idx), self.eval_batch_size)]
        return batches

    # -- collation -----------------------------------------------------------------------
    def collate_train(self, items: list[Item]) -> dict[str, torch.Tensor]:
        input_ids, mask = pad([it.input_ids for it in items], self.tokenizer.pad_token_id)  # [B, T]
        labels, _ = pad([it.target_ids for it in items], IGNORE)  # [B, L]
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    def collate_eval(self, items: list[Item]) -> dict:
        input_ids, mask = pad([it.input_ids for it in items], self.tokenizer.pad_token_id)  # [B, T]
        choices = [c for it in items for c in it.choice_ids]
        owner = [b for b, it in enumerate(items) for _ in it.choice_ids]
        batch = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "examples": [it.example for it in items],
            "choice_owner": torch.tensor(owner, dtype=torch.long),
        }  # [C]
        if choices:
            batch["choice_labels"], _ = pad(choices, IGNORE)  # [C, L]
        return batch


def pad(seqs: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pads to the longest sequence: ids [N, T] and attention mask [N, T]."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask
