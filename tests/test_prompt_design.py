"""Prompt design: no training at all, seeded K-shot demonstrations, inputs built to fit."""

import re

import lightning as L
import pytest
from test_templates import CB, RTE

from promptscale.data.templates import GPT3
from promptscale.train import run


def build(make_job, *overrides, task="cb"):
    job = make_job("method=prompt_design", f"task={task}", *overrides)
    return job.method, job.spec.cfg


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
    "override,message",
    [
        ("method.shots=-1", "method.shots must be >= 0"),
        ("method.template=nope", "method.template='nope'"),
        ("recipe.optimizer={name:adamw,lr:0.1}", "no training step and no learning rate"),
        ("+method.lr=0.1", "set recipe.optimizer.lr instead"),
        ("+method.eval_mode=generate", "set evaluation.protocol instead"),
    ],
)
def test_invalid_or_training_options_fail_naming_the_key(make_job, override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build(make_job, override)


def test_zero_shot_needs_no_train_split(make_config, tmp_path):
    """A folder with only ReCoRD's val split is enough for zero-shot prompt design."""
    from promptscale.data.sources import SAMPLE_DIR

    (tmp_path / "data" / "ReCoRD").mkdir(parents=True)
    (tmp_path / "data" / "ReCoRD" / "val.jsonl").write_bytes((SAMPLE_DIR / "ReCoRD" / "val.jsonl").read_bytes())
    rows = run(make_config("method=prompt_design", "task=record", f"data.dir={tmp_path / 'data'}"))
    assert {r["task"] for r in rows} == {"record"} and {r["protocol"] for r in rows} == {"generate", "rank"}
    with pytest.raises(FileNotFoundError, match="train.jsonl"):  # K-shot draws demonstrations from train
        run(make_config("method=prompt_design", "task=record", "method.shots=1", f"data.dir={tmp_path / 'data'}"))


def test_zero_shot_is_the_template_and_nothing_trains(make_job):
    method, _ = build(make_job)
    assert method.trains is False
    assert not [p for p in method.parameters() if p.requires_grad]
    assert method.format("cb", CB, train=False) == GPT3["cb"](CB)
    assert method.format("cb", CB, train=True) == []  # no training examples are even tokenised


def test_demonstrations_are_seeded_solved_train_examples(make_job):
    method, _ = build(make_job, "method.shots=3")
    train = cb_records(10)
    method.bind_records({("cb", "train"): train, ("cb", "val"): [CB]})
    [ex] = method.format("cb", CB, train=False)
    parts = ex.inputs.split("\n\n")
    assert len(parts) == 4 and parts[-1] == GPT3["cb"](CB)[0].inputs
    solved = {f"{e.inputs} {e.targets}" for r in train for e in GPT3["cb"](r)}
    assert set(parts[:3]) <= solved and len(set(parts[:3])) == 3
    assert method.format("cb", CB, train=False) == [ex]  # deterministic
    other, _ = build(make_job, "method.shots=3", "method.demo_seed=1")
    other.bind_records({("cb", "train"): train})
    assert other.format("cb", CB, train=False)[0].inputs != ex.inputs


def test_the_evaluated_example_is_never_its_own_demonstration(make_job):
    method, _ = build(make_job, "method.shots=5")
    method.bind_records({("cb", "train"): [CB, *cb_records(5)]})  # dev text also in train
    for seed in range(20):
        method.demo_seed = seed
        demos = method.format("cb", CB, train=False)[0].inputs.split("\n\n")[:-1]
        assert len(demos) == 5
        assert not any(d.startswith(GPT3["cb"](CB)[0].inputs) for d in demos)


def test_shots_need_train_records(make_job):
    method, _ = build(make_job, "method.shots=2")
    with pytest.raises(ValueError, match="train records"):
        method.bind_records({("cb", "val"): [CB]})


def test_demonstrations_are_dropped_before_the_example_is_cut(make_job):
    method, _ = build(make_job, "method.shots=8", "data.max_input_length=120")
    method.bind_records({("cb", "train"): cb_records(20)})
    [ex] = method.format("cb", CB, train=False)
    assert ex.inputs.endswith(GPT3["cb"](CB)[0].inputs)  # the evaluated example is whole
    assert len(method.tokenizer(ex.inputs)["input_ids"]) <= 120
    assert 0 < ex.inputs.count("\n\n") < 8  # some, not all, demonstrations fit


def test_datamodule_inputs_fit_and_an_overlong_example_keeps_its_question(make_job):
    job = make_job("method=prompt_design", "task=rte", "method.shots=4", "data.max_input_length=24")
    data, method = job.data, job.method
    long_rte = {**RTE, "premise": "word " * 200, "idx": 99}
    data.records[("rte", "val")].append(long_rte)
    data.attach(method.tokenizer, method.format)
    assert data.train_items == []
    assert all(len(item.input_ids) <= 24 for item in data.eval_items)
    tail = method.tokenizer(GPT3["rte"](long_rte)[0].inputs)["input_ids"][-10:]
    assert data.eval_items[-1].input_ids[-10:] == tail  # left truncation: "... True or False? Answer:" </s>
