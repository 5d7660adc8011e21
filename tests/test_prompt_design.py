"""Prompt design: no training at all, seeded K-shot demonstrations, inputs built to fit."""

import lightning as L
import pytest
from hydra.utils import instantiate
from test_templates import CB, RTE

from promptscale.data.templates import GPT3
from promptscale.train import run


def build(make_config, *overrides, task="cb"):
    cfg = make_config("method=prompt_design", f"task={task}", *overrides)
    return instantiate(cfg.method, _partial_=True)(model=instantiate(cfg.model), tasks=[task]), cfg


def cb_records(n: int) -> list[dict]:
    return [{**CB, "premise": f"Premise number {i}.", "idx": i} for i in range(n)]


def test_run_never_fits_and_rows_record_template_and_shots(make_config, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("prompt design must not train")

    monkeypatch.setattr(L.Trainer, "fit", no_fit)
    rows = run(make_config("method=prompt_design", "task=cb", "method.shots=2", "method.demo_seed=3"))
    assert {r["task"] for r in rows} == {"cb"}
    assert all((r["template"], r["shots"], r["demo_seed"]) == ("gpt3", 2, 3) for r in rows)
    assert all(r["trainable_params"] == 0 and r["method_params"] == 0 for r in rows)


@pytest.mark.parametrize(
    "override",
    ["method.shots=-1", "+method.lr=0.1", "+method.max_steps=10", "method.template=nope", "+method.eval_mode=generate"],
)
def test_invalid_or_training_options_fail_at_construction(make_config, override):
    with pytest.raises(ValueError, match="shots|no training step|template|eval_mode"):
        build(make_config, override)


def test_zero_shot_is_the_template_and_nothing_trains(make_config):
    method, _ = build(make_config)
    assert method.trains is False
    assert not [p for p in method.parameters() if p.requires_grad]
    assert method.format("cb", CB, train=False) == GPT3["cb"](CB)
    assert method.format("cb", CB, train=True) == []  # no training examples are even tokenised


def test_demonstrations_are_seeded_solved_train_examples(make_config):
    method, _ = build(make_config, "method.shots=3")
    train = cb_records(10)
    method.bind_records({("cb", "train"): train, ("cb", "val"): [CB]})
    [ex] = method.format("cb", CB, train=False)
    parts = ex.inputs.split("\n\n")
    assert len(parts) == 4 and parts[-1] == GPT3["cb"](CB)[0].inputs
    solved = {f"{e.inputs} {e.targets}" for r in train for e in GPT3["cb"](r)}
    assert set(parts[:3]) <= solved and len(set(parts[:3])) == 3
    assert method.format("cb", CB, train=False) == [ex]  # deterministic
    other, _ = build(make_config, "method.shots=3", "method.demo_seed=1")
    other.bind_records({("cb", "train"): train})
    assert other.format("cb", CB, train=False)[0].inputs != ex.inputs


def test_the_evaluated_example_is_never_its_own_demonstration(make_config):
    method, _ = build(make_config, "method.shots=5")
    method.bind_records({("cb", "train"): [CB, *cb_records(5)]})  # dev text also in train
    for seed in range(20):
        method.demo_seed = seed
        demos = method.format("cb", CB, train=False)[0].inputs.split("\n\n")[:-1]
        assert len(demos) == 5
        assert not any(d.startswith(GPT3["cb"](CB)[0].inputs) for d in demos)


def test_shots_need_train_records(make_config):
    method, _ = build(make_config, "method.shots=2")
    with pytest.raises(ValueError, match="train records"):
        method.bind_records({("cb", "val"): [CB]})


def test_demonstrations_are_dropped_before_the_example_is_cut(make_config):
    method, _ = build(make_config, "method.shots=8", "data.max_input_length=120")
    method.bind_records({("cb", "train"): cb_records(20)})
    [ex] = method.format("cb", CB, train=False)
    assert ex.inputs.endswith(GPT3["cb"](CB)[0].inputs)  # the evaluated example is whole
    assert len(method.tokenizer(ex.inputs)["input_ids"]) <= 120
    assert 0 < ex.inputs.count("\n\n") < 8  # some, not all, demonstrations fit


def test_datamodule_inputs_fit_and_an_overlong_example_keeps_its_question(make_config):
    cfg = make_config("method=prompt_design", "task=rte", "method.shots=4", "data.max_input_length=24")
    data = instantiate(cfg.data, seed=0)
    data.load()
    long_rte = {**RTE, "premise": "word " * 200, "idx": 99}
    data.records[("rte", "val")].append(long_rte)
    method = instantiate(cfg.method, _partial_=True)(model=instantiate(cfg.model), tasks=["rte"])
    method.bind_records(data.records)
    data.attach(method.tokenizer, method.format, 4)
    assert data.train_items == []
    assert all(len(item.input_ids) <= 24 for item in data.eval_items)
    tail = method.tokenizer(GPT3["rte"](long_rte)[0].inputs)["input_ids"][-10:]
    assert data.eval_items[-1].input_ids[-10:] == tail  # left truncation: "... True or False? Answer:" </s>
