"""Data placement across ranks, and a training loader that resumes mid-epoch.

Lightning's ``DistributedSampler`` injection is switched off (``use_distributed_sampler=False``
in ``train.make_trainer``) because it pads the evaluation set by repeating examples, and because
it would replace the mixture sampler. Instead:

* training: every rank draws the same global batch (``data.batch_size``, the recipe's batch)
  from the same (seed, epoch)-determined order and keeps its slice ``batch[rank::world]``, so a
  run sees the same data on 1 or 8 devices;
* evaluation: rank ``r`` gets batches ``r, r + world, ...``; ranks with fewer batches repeat one
  (sharded strategies need the same number of forward calls on every rank), and
  :func:`gather_unique` drops the repeats, so each example counts exactly once.

The training loader implements ``state_dict``/``load_state_dict`` (Lightning stores it in every
checkpoint): a run resumed mid-epoch skips the batches it already trained on instead of
replaying the epoch from its start.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader


def rank_and_world(trainer: Any) -> tuple[int, int]:
    """``(global_rank, world_size)`` of an attached trainer; ``(0, 1)`` without one."""
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)


class ShardedResumableBatchSampler:
    """Wraps a batch sampler: slices each global batch per rank and can skip consumed batches.

    Args:
        batch_sampler: Yields global batches (lists of dataset indices); its order must be a
            pure function of the epoch (``set_epoch``), as ``MixtureSampler``'s is.
        rank: This process's global rank.
        world: Number of ranks.
    """

    def __init__(self, batch_sampler, rank: int = 0, world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside a world of {world}")
        self.batch_sampler = batch_sampler
        self.sampler = getattr(batch_sampler, "sampler", None)  # Lightning's set_epoch finds it here too
        self.rank, self.world = rank, world
        self.epoch = 0
        self.start = 0  # global batches of the current epoch skipped before the first yielded one
        self._skip: tuple[int, int] | None = None  # (epoch, batches) to skip once, after a restore

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for obj in (self.batch_sampler, self.sampler):
            if obj is not None and callable(getattr(obj, "set_epoch", None)):
                obj.set_epoch(epoch)

    def skip_once(self, epoch: int, batches: int) -> None:
        """Makes the next iteration of ``epoch`` start after ``batches`` global batches."""
        if batches >= len(self):  # the checkpoint closed its epoch: continue with the next one
            epoch, batches = epoch + 1, 0
        self.set_epoch(epoch)
        self._skip = (epoch, batches)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[list[int]]:
        # Decided when the iterator is created (DataLoader does that eagerly), after the restore.
        skip, self._skip = self._skip, None
        self.start = skip[1] if skip is not None and skip[0] == self.epoch else 0
        return self._batches(self.start)

    def _batches(self, start: int) -> Iterator[list[int]]:
        for i, batch in enumerate(self.batch_sampler):
            if i < start:
                continue  # indices only: nothing is loaded or collated for skipped batches
            batch = list(batch)
            # A last partial batch smaller than the world would leave a rank empty; it repeats
            # one example instead (every rank must take the same number of steps).
            yield batch[self.rank :: self.world] or batch[-1:]


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ShardedResumableBatchSampler` that Lightning can checkpoint.

    ``state_dict`` records the epoch and how many batches of it were delivered to the training
    loop (counted here, not in the sampler, which worker prefetching runs ahead of).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.batch_sampler, ShardedResumableBatchSampler):
            raise TypeError("ResumableDataLoader needs a ShardedResumableBatchSampler as batch_sampler")
        self._delivered = 0

    def __iter__(self):
        iterator = super().__iter__()  # creates the batch sampler's iterator: decides the skip
        self._delivered = self.batch_sampler.start
        return _Counting(iterator, self)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.batch_sampler.epoch, "batches": self._delivered}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.skip_once(int(state["epoch"]), int(state["batches"]))


class _Counting:
    def __init__(self, iterator, loader: ResumableDataLoader) -> None:
        self.iterator, self.loader = iterator, loader

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.iterator)
        self.loader._delivered += 1
        return batch

    def __len__(self) -> int:
        return len(self.iterator)


def resumable(loader: DataLoader, rank: int = 0, world: int = 1) -> ResumableDataLoader:
    """The same loader (dataset, batches, collation, workers), sharded per rank and resumable."""
    if loader.batch_sampler is None:
        raise ValueError("a resumable training loader needs batches (batch_size or batch_sampler)")
    return ResumableDataLoader(
        loader.dataset,
        batch_sampler=ShardedResumableBatchSampler(loader.batch_sampler, rank, world),
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers,
        # A private generator: creating an iterator draws a base seed, and drawing it from the
        # global stream would make dropout depend on how often loaders were created.
        generator=loader.generator or torch.Generator().manual_seed(0),
    )


def shard_eval_batches(batches: Sequence[list[int]], rank: int, world: int) -> list[list[int]]:
    """Rank ``rank``'s evaluation batches: every ``world``-th, padded to the same count on all ranks.

    A pad repeats one of the rank's own batches (or the first batch); :func:`gather_unique`
    drops the repeated predictions, unlike a ``DistributedSampler`` whose padding is scored.
    """
    if world == 1:
        return list(batches)
    mine = list(batches[rank::world])
    per_rank = -(-len(batches) // world)
    while len(mine) < per_rank:
        mine.append(mine[-1] if mine else list(batches[0]))
    return mine


def gather_unique(items: list[Any], key: Callable[[Any], Hashable]) -> list[Any]:
    """All ranks' ``items`` on every rank, each ``key`` once, in rank order.

    Evaluation items carry their ``Example`` (frozen, equal by value, unique within an evaluation
    set: it carries its record id), so a repeated key can only be an evaluation pad.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, items)
    seen, merged = set(), []
    for part in parts:
        for item in part:
            if key(item) not in seen:
                seen.add(key(item))
                merged.append(item)
    return merged
