"""Rank classification (encode once, score every choice), generation, and metric logging."""

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from promptscale.train import run

from conftest import METHODS


def setup(make_config, method="prompt_tuning", task="cb", *overrides):
    cfg = make_config(f"method={method}", f"task={task}", *overrides)
    data = instantiate(cfg.data, seed=0)
    data.load()
    module = instantiate(cfg.method, _partial_=True)(model=instantiate(cfg.model), tasks=[task])
    data.attach(module.tokenizer, module.format, 4)
    return module.eval(), data


def naive_scores(module, batch):
    """Full forward pass per (example, choice): the slow reference."""
    scores = []
    for owner, labels in zip(batch["choice_owner"].tolist(), batch["choice_labels"]):
        ids = batch["input_ids"][owner : owner + 1]
        mask = batch["attention_mask"][owner : owner + 1]
        target = labels[labels >= 0].unsqueeze(0)  # [1, L]
        logits = module.model(**module.encoder_inputs(ids, mask), labels=target).logits  # [1, L, V]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, target.unsqueeze(-1)).sum()
        scores.append(logp.item())
    return torch.tensor(scores)


@pytest.mark.parametrize("task", ["cb", "copa", "record", "multirc"])
@pytest.mark.parametrize("method", ["model_tuning", "prompt_tuning"])
def test_rank_classification_matches_per_choice_forward_and_encodes_once(make_config, method, task):
    module, data = setup(make_config, method, task)
    batch = next(iter(data.val_dataloader()))
    calls = []
    hook = module.model.encoder.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        fast = module.choice_log_likelihoods(batch)
    hook.remove()
    assert len(calls) == 1  # one encoder pass for all examples and all their choices
    with torch.no_grad():
        slow = naive_scores(module, batch)
    assert torch.allclose(fast, slow, atol=1e-4)
    preds = module.rank(batch)
    for b, ex in enumerate(batch["examples"]):
        mine = [s for s, o in zip(slow.tolist(), batch["choice_owner"].tolist()) if o == b]
        assert preds[b] == max(range(len(mine)), key=mine.__getitem__)
        assert 0 <= preds[b] < len(ex.choices)


def test_generation_mode_runs_end_to_end(make_config):
    rows = run(make_config("task=rte", "method.eval_mode=generate"))
    assert {r["metric"] for r in rows} == {"accuracy"}


def test_wsc_is_always_generated(make_config):
    module, data = setup(make_config, "prompt_tuning", "wsc")
    batch = next(iter(data.val_dataloader()))
    assert "choice_labels" not in batch
    with torch.no_grad():
        preds = module.predict_batch(batch)
    assert all(isinstance(p, str) for p in preds)


@pytest.mark.parametrize("method", METHODS)
def test_metrics_are_logged_per_task(make_config, method):
    module, data = setup(make_config, method, "cb")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.validate(module, datamodule=data, verbose=False)
    keys = set(trainer.callback_metrics)
    assert {"val/cb/accuracy", "val/cb/f1_macro", "val/cb/score", "val/score"} <= keys
    assert module.best["cb"].metrics.keys() == {"accuracy", "f1_macro"}
