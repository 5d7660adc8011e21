"""Preemption: a signal mid-training saves ``last.ckpt`` and exits; re-running resumes from that
step (not from 0) and ends with exactly the numbers of an uninterrupted run."""

import os
import signal
from pathlib import Path

import lightning as L
import pytest

from promptscale.resume import Preempted
from promptscale.store.results import ResultsStore
from promptscale.train import run

from conftest import FAST, compose_config

# 16 CB examples in batches of 4: 4 steps per epoch, so step 5 is mid-epoch; evaluation every 4
# steps; dropout on (tiny_s has 0.1), so a resume that got the RNG wrong would show.
SETUP = [
    "task=cb",
    "data.train_limit=16",
    "data.eval_limit=8",
    "recipe.max_steps=12",
    "recipe.val_check_interval=4",
    "callbacks.resume.every_n_steps=3",
]


# one intra-op thread for the whole module (conftest.one_thread); requested first, so
# module fixtures that train (test_preemption's `uninterrupted`) see the same threads
pytestmark = pytest.mark.usefixtures("one_thread")


class SignalAtStep(L.Callback):
    """Sends ``signum`` to this process from inside training step ``step`` (counted from 1)."""

    def __init__(self, step: int, signum: str) -> None:
        self.step, self.signum = step, signal.Signals[signum]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step - 1:
            os.kill(os.getpid(), self.signum)


class FirstStep(L.Callback):
    """Records the global step of the first training batch of each fit."""

    seen: list[int] = []

    def on_train_start(self, trainer, pl_module):
        self.recorded = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self.recorded:
            FirstStep.seen.append(trainer.global_step)
            self.recorded = True


def with_method(extra: tuple[str, ...]) -> tuple[str, ...]:
    """Model tuning unless the case names its method."""
    return extra if any(e.startswith("method=") for e in extra) else ("method=model_tuning", *extra)


def values(rows):
    return {(r["task"], r["metric"], r.get("protocol")): (r["value"], r["step"]) for r in rows}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = {}

    def rows(*extra: str):
        if extra not in runs:
            runs[extra] = run(
                compose_config(
                    tmp_path_factory.mktemp("unbroken"),
                    [*FAST, *SETUP, *with_method(extra)],  # the interrupted runs' own settings
                )
            )
        return runs[extra]

    return rows


@pytest.mark.parametrize(
    "signum,step,extra",
    [
        ("SIGUSR1", 5, ()),  # mid-epoch
        ("SIGTERM", 8, ()),  # an evaluation step: saved after the evaluation
        ("SIGUSR1", 5, ("trainer.accumulate_grad_batches=2",)),  # signal mid-accumulation: saved after the step
        # frozen-backbone methods: last.ckpt holds what trains (prefix tuning: its MLP too) + optimizer
        ("SIGUSR1", 5, ("method=prompt_tuning",)),
        ("SIGUSR1", 5, ("method=prefix_tuning",)),
        ("SIGUSR1", 5, ("method=lora",)),
    ],
)
def test_signal_saves_exits_and_resumes_where_it_stopped(make_config, uninterrupted, signum, step, extra):
    probe = "+callbacks.probe={_target_:test_preemption.FirstStep}"
    extra = with_method(extra)
    cfg = make_config(
        *SETUP,
        *extra,
        f"+callbacks.signal={{_target_:test_preemption.SignalAtStep,step:{step},signum:{signum}}}",
        probe,
    )
    handler_before = signal.getsignal(signal.Signals[signum])
    FirstStep.seen.clear()
    with pytest.raises(Preempted) as stop:
        run(cfg)
    assert stop.value.code == 128 + signal.Signals[signum] and stop.value.step == step
    assert signal.getsignal(signal.Signals[signum]) == handler_before  # our handler is gone again
    assert ResultsStore(cfg.results).rows() == []  # an unfinished job writes no rows
    last = list(Path(cfg.paths.root).glob("checkpoints/*/last.ckpt"))
    assert len(last) == 1

    rows = run(make_config(*SETUP, *extra, probe))  # the requeued job: same config, no signal
    assert FirstStep.seen == [0, step]  # the second attempt started at the saved step, not at 0
    assert values(rows) == values(uninterrupted(*extra))
    assert not last[0].exists()  # finished: the resume checkpoint is cleaned up


def test_truncated_last_checkpoint_resumes_from_the_one_before(make_config, uninterrupted):
    """Issue 11, case 2: before, every relaunch failed with ``PytorchStreamReader failed reading
    zip archive`` until someone deleted the folder by hand."""
    probe = "+callbacks.probe={_target_:test_preemption.FirstStep}"
    extra = with_method(())
    FirstStep.seen.clear()
    with pytest.raises(Preempted):  # saves at step 3 (every 3 steps), then at 5 on the signal
        run(
            make_config(
                *SETUP, *extra, "+callbacks.signal={_target_:test_preemption.SignalAtStep,step:5,signum:SIGUSR1}", probe
            )
        )
    (last,) = Path(make_config().paths.root).glob("checkpoints/*/last.ckpt")
    assert (last.parent / "last.prev.ckpt").exists()
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # e.g. a node crash while the filesystem flushed it
    with pytest.warns(UserWarning, match=rf"{last}: damaged checkpoint"):
        rows = run(make_config(*SETUP, *extra, probe))
    assert FirstStep.seen == [0, 3]  # resumed from the save before the damaged one
    assert values(rows) == values(uninterrupted(*extra))
    assert not last.parent.exists()  # finished: its folder is gone, quarantined checkpoint included
