"""Numerics: a non-finite loss stops the run naming the step, before the update, keeps the last
good checkpoint and records a ``failed`` row that the skip and the figures ignore."""

import lightning as L
import pytest
import torch

from promptscale.report.scores import score_table
from promptscale.resume import NonFiniteLossError
from promptscale.store.results import ResultsStore
from promptscale.train import run

# one intra-op thread for the whole module (conftest.one_thread); requested first, so
# module fixtures that train (test_preemption's `uninterrupted`) see the same threads
pytestmark = pytest.mark.usefixtures("one_thread")


class PoisonAtStep(L.Callback):
    """Makes the loss of training step ``step`` (counted from 1) NaN."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step - 1:
            with torch.no_grad():
                pl_module.prompt.embedding.fill_(float("nan"))


def test_nan_loss_stops_with_the_step_keeps_checkpoint_and_records_failure(make_config, tmp_path):
    cfg = make_config(
        "method=prompt_tuning",
        "task=cb",
        "data.train_limit=16",
        "recipe.max_steps=8",
        "recipe.val_check_interval=4",
        "callbacks.resume.every_n_steps=3",
        "+callbacks.poison={_target_:test_numerics.PoisonAtStep,step:5}",
    )
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss \(nan\) at step 5") as err:
        run(cfg)
    (last,) = tmp_path.glob("checkpoints/*/last.ckpt")
    assert str(last) in str(err.value)
    saved = torch.load(last, weights_only=False)
    assert saved["global_step"] == 3  # the last periodic save before the bad step
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())

    store = ResultsStore(cfg.results)
    (row,) = store.rows()
    assert row["status"] == "failed" and row["step"] == 5 and "non-finite" in row["error"]
    assert row["task"] == "cb" and row["value"] is None
    assert not store.has_config(row["config_hash"])  # a re-launch runs the job again
    with pytest.raises(ValueError, match="no status 'ok'"):
        score_table(store.rows())  # figures read only status "ok" rows
