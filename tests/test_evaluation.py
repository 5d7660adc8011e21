"""Evaluation: both protocols from one encoder pass, rank classification against a per-choice
forward, T5's decoding of generated text, invalid rates, metric names, the primary protocol."""

import lightning as L
import pytest
import torch

from promptscale.evaluation import (
    EvaluationSpec,
    ExampleResult,
    decode_generated,
    evaluate_batch,
    log_items,
    task_metrics,
)
from promptscale.train import run

from conftest import METHODS


def setup(make_job, method="prompt_tuning", task="cb", *overrides):
    job = make_job(f"method={method}", f"task={task}", *overrides)
    return job.method.eval(), job.data


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
def test_rank_classification_matches_per_choice_forward_and_encodes_once(make_job, method, task):
    module, data = setup(make_job, method, task)
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


@pytest.mark.parametrize("task", ["cb", "wsc", "record"])
def test_both_protocols_come_from_one_encoder_pass(make_job, task):
    module, data = setup(make_job, "prompt_tuning", task)
    batch = next(iter(data.val_dataloader()))
    calls = []
    hook = module.model.encoder.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        results = evaluate_batch(module, batch, EvaluationSpec(max_new_tokens=4))
    hook.remove()
    assert len(calls) == 1  # generation reuses the encoder output of the rank pass
    assert [r.example for r in results] == batch["examples"]
    with torch.no_grad():
        slow = naive_scores(module, batch).tolist() if "choice_labels" in batch else []
    flat = [s for r in results for s in r.scores]
    assert flat == pytest.approx(slow, abs=1e-4)
    for r in results:
        if r.scores:  # the rank prediction is the most likely choice
            assert r.ranked == max(range(len(r.scores)), key=r.scores.__getitem__)
        else:  # WSC: no choices, its rank protocol is its generation
            assert r.ranked == r.generated and isinstance(r.generated, str)


def test_generation_equals_plain_greedy_decoding(make_job):
    """The shared encoder pass and the early stop change nothing a full greedy decode decides."""
    module, data = setup(make_job, "model_tuning", "rte")
    batch = next(iter(data.val_dataloader()))
    with torch.no_grad():
        results = evaluate_batch(module, batch, EvaluationSpec(max_new_tokens=12))
        full = module.model.generate(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=12, do_sample=False
        )
    texts = decode_generated(module.tokenizer, full)
    for r, text in zip(results, texts):
        assert text.startswith(r.text)  # stopped early at most, never different
        assert r.generated == (r.example.choices.index(text) if text in r.example.choices else -1)
        assert r.valid == (text in r.example.choices)


def test_decoding_keeps_sentinels_unless_targets_carried_one(make_job):
    tok = setup(make_job, "prompt_tuning", "rte")[0].tokenizer
    sentinel = tok.convert_tokens_to_ids("<extra_id_0>")
    word = tok("entailment", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[0, sentinel, *word, 1, 0], [0, *word, 1, 0, 0]])  # [B, L]: start, ..., </s>, pad
    assert decode_generated(tok, ids) == ["<extra_id_0> entailment", "entailment"]
    assert decode_generated(tok, ids, strip_sentinel=True) == ["entailment", "entailment"]


def example(task, choices, label, group="0"):
    from promptscale.data.example import Example

    return Example(task, "x", choices[label] if choices else "", choices, label, group, ())


def test_invalid_rate_and_metrics_per_protocol_on_a_literal_batch():
    nli = ("entailment", "not_entailment")
    results = [  # (gold, rank prediction via scores, generated text)
        ExampleResult(example("rte", nli, 0, "0"), (-1.0, -2.0), "entailment", 0, True),
        ExampleResult(example("rte", nli, 1, "1"), (-1.0, -2.0), "not_entailment", 1, True),
        ExampleResult(example("rte", nli, 1, "2"), (-3.0, -2.0), "maybe", -1, False),
        ExampleResult(example("rte", nli, 0, "3"), (-3.0, -2.0), "<extra_id_0>", -1, False),
    ]
    metrics = task_metrics(results)["rte"]
    assert metrics["rank"] == {"accuracy": 50.0}  # ranks 0, 0, 1, 1 against 0, 1, 1, 0
    assert metrics["generate"] == {"accuracy": 50.0, "invalid": 50.0}  # 2 right, 2 invalid (= wrong)
    items = log_items({"rte": metrics}, primary="generate")
    assert items["val/rte/accuracy"] == 50.0 and items["val_rank/rte/accuracy"] == 50.0
    assert items["val/rte/invalid"] == 50.0 and items["val/score"] == 50.0
    assert "val_rank/rte/invalid" not in items and "val/rte/score" in items


@pytest.mark.parametrize("method", METHODS)
def test_metrics_are_logged_per_task_and_protocol(make_job, method):
    module, data = setup(make_job, method, "cb")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.validate(module, datamodule=data, verbose=False)
    keys = set(trainer.callback_metrics)
    primary = module.evaluation.protocol
    other = "rank" if primary == "generate" else "generate"
    assert {"val/cb/accuracy", "val/cb/f1_macro", "val/cb/score", "val/score", "val/cb/invalid"} <= keys
    assert {f"val_{other}/cb/accuracy", f"val_{other}/score"} <= keys
    assert module.best["cb"].metrics.keys() == {"generate", "rank"}
    assert module.best["cb"].metrics["rank"].keys() == {"accuracy", "f1_macro"}
    assert len(module.best["cb"].predictions) == module.best["cb"].examples > 0


def test_primary_protocol_selects_and_is_recorded(make_config):
    rows = run(make_config("task=rte", "evaluation.protocol=rank"))
    assert {r["selected_by"] for r in rows} == {"rank"}
    rows = run(make_config("task=cb", "method=prompt_design", "evaluation.protocol=generate"))
    assert {r["selected_by"] for r in rows} == {"rank"}  # prompt design ranks, like GPT-3


def test_bad_protocol_fails_before_any_data_loads(make_config, monkeypatch):
    from promptscale.data import datamodule

    monkeypatch.setattr(datamodule.SuperGlueDataModule, "load", lambda *a, **k: pytest.fail("data was read"))
    with pytest.raises(ValueError, match=r"evaluation.protocol='beam'"):
        run(make_config("evaluation.protocol=beam"))
