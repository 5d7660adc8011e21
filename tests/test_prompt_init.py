"""Prompt initialisation from a text and from a saved prompt (ours, PEFT, the official ``.npy``).

Bad input fails before the backbone is built (minutes at XXL), naming the key or the file.
"""

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException

from promptscale.models import ModelSpec
from promptscale.modules.soft_prompt import init_from_text
from promptscale.prompts.files import PromptFileError, export_peft, read_prompt, save_prompt
from promptscale.train import run

D_MODEL = 32  # tiny_s
TEXT = "Does the premise entail the hypothesis?"


def build(make_job, *overrides):
    return make_job("method=prompt_tuning", "task=rte", *overrides).method


def token_ids(method, text=TEXT):
    return method.tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.fixture
def no_backbone(monkeypatch):
    """Fails the test if a backbone is built: the error must come first."""

    def refuse(self):
        raise AssertionError("the backbone was built before the bad input was refused")

    monkeypatch.setattr(ModelSpec, "build", refuse)


def test_text_init_embeds_the_text_then_samples_the_top_vocabulary(make_job):
    method = build(make_job, "method.init=text", f"method.init_text='{TEXT}'", "method.prompt_length=20",
                   "method.init_top_k=50")  # fmt: skip
    vocab = method.model.get_input_embeddings().weight.detach()
    ids = token_ids(method)
    assert 1 < len(ids) < 20 and method.tokenizer.eos_token_id not in ids  # no </s>, as the official code
    prompt = method.prompt.embedding.detach()
    assert torch.equal(prompt[: len(ids)], vocab[ids])
    drawn = [next(j for j in range(50) if torch.equal(row, vocab[j])) for row in prompt[len(ids) :]]
    assert len(set(drawn)) == 20 - len(ids)  # distinct rows of the 50 most frequent pieces


def test_text_init_can_repeat_the_text_as_peft_does(make_job):
    method = build(make_job, "method.init=text", f"method.init_text='{TEXT}'", "method.prompt_length=20",
                   "method.init_text_fill=repeat")  # fmt: skip
    vocab = method.model.get_input_embeddings().weight.detach()
    ids = token_ids(method)
    cycled = [ids[i % len(ids)] for i in range(20)]
    assert torch.equal(method.prompt.embedding.detach(), vocab[cycled])


def test_text_fill_literal():
    vocab = torch.arange(12.0).view(6, 2)  # row i = [2i, 2i+1]
    rows = init_from_text(5, vocab, [4, 1], "repeat", top_k=6, generator=torch.Generator())
    assert rows.tolist() == [[8, 9], [2, 3], [8, 9], [2, 3], [8, 9]]


def test_text_longer_than_the_prompt_is_refused_naming_the_keys(make_job, no_backbone):
    with pytest.raises((ValueError, InstantiationException), match=r"method.init_text is \d+ tokens long but "
                       r"method.prompt_length=2"):  # fmt: skip
        build(make_job, "method.init=text", f"method.init_text='{TEXT}'", "method.prompt_length=2")


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["method.init=text"], "method.init=text needs method.init_text"),
        (["method.init=file"], "method.init=file needs method.init_file"),
        (["method.init_text=hello"], "method.init_text is set but method.init=class_label ignores it"),
        (["method.init=text", "method.init_text=hi", "method.init_text_fill=pad"], "method.init_text_fill='pad'"),
    ],
)
def test_inconsistent_init_keys_are_refused(make_job, no_backbone, overrides, message):
    with pytest.raises((ValueError, InstantiationException), match=message):
        build(make_job, *overrides)


def saved(tmp_path, kind: str, prompt: torch.Tensor):
    """The prompt written in one of the three formats ``method.init_file`` reads."""
    if kind == "safetensors":
        return save_prompt(prompt, tmp_path / "prompt.safetensors", model="tiny_s", task="rte")
    if kind == "peft":
        return export_peft(prompt, "tiny_s", tmp_path / "adapter")
    path = tmp_path / "prompt.npy"
    np.save(path, prompt.numpy())  # the official repository's format: a float32 array [P, d_model]
    return path


@pytest.mark.parametrize("kind", ["safetensors", "peft", "npy"])
def test_file_init_loads_the_saved_prompt(make_job, tmp_path, kind):
    prompt = torch.randn(6, D_MODEL, generator=torch.Generator().manual_seed(1))
    path = saved(tmp_path, kind, prompt)
    method = build(make_job, "method.init=file", f"method.init_file={path}", "method.prompt_length=6")
    assert torch.equal(method.prompt.embedding.detach(), prompt)
    assert method.prompt.embedding.requires_grad  # a starting point: it trains (prompt transfer)


@pytest.mark.parametrize("kind", ["safetensors", "peft", "npy"])
def test_a_prompt_of_another_width_is_refused_naming_the_file(make_job, tmp_path, no_backbone, kind):
    path = saved(tmp_path, kind, torch.zeros(6, 48))
    with pytest.raises((PromptFileError, InstantiationException), match=rf"{tmp_path}.*d_model 48.*d_model 32"):
        build(make_job, "method.init=file", f"method.init_file={path}", "method.prompt_length=6")


def test_a_prompt_of_another_length_is_refused_naming_file_and_key(make_job, tmp_path, no_backbone):
    path = saved(tmp_path, "npy", torch.zeros(6, D_MODEL))
    with pytest.raises(
        (PromptFileError, InstantiationException),
        match=rf"{path}: prompt has 6 vectors but method.prompt_length=100: set method.prompt_length=6",
    ):
        build(make_job, "method.init=file", f"method.init_file={path}")


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((2, 6, D_MODEL), np.float32), r"shape \(2, 6, 32\), expected a prompt \[P, d_model\]"),
        (np.zeros((6, D_MODEL), np.int64), "dtype int64, expected floats"),
        (np.array([{"a": 1}], dtype=object), "not a readable .npy array"),  # pickled: never unpickled
    ],
)
def test_bad_npy_files_are_refused_naming_the_file(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(PromptFileError, match=rf"{path}: .*{message}"):
        read_prompt(path, D_MODEL)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(PromptFileError, match=rf"{tmp_path}/nope.npy: no such prompt file"):
        read_prompt(tmp_path / "nope.npy")


def test_evaluating_a_saved_prompt_trains_nothing_and_scores_it(make_config, tmp_path, one_thread):
    """The documented command for an official prompt: init=file, train_prompt=false."""
    prompt = torch.randn(5, D_MODEL, generator=torch.Generator().manual_seed(2))
    path = saved(tmp_path, "npy", prompt)
    cfg = make_config("method=prompt_tuning", "task=rte", "method.init=file", f"method.init_file={path}",
                      "method.prompt_length=5", "method.train_prompt=false")  # fmt: skip
    rows = run(cfg)
    assert {r["step"] for r in rows} == {0}  # one evaluation, no optimizer step
    assert {(r["prompt_trained"], r["prompt_file"]) for r in rows} == {(False, str(path))}
    assert rows[0]["trainable_params"] == 0 and rows[0]["method_params"] == 5 * D_MODEL
    assert {r["protocol"] for r in rows} == {"generate", "rank"}


def test_an_evaluate_only_job_reads_no_training_data(make_job, tmp_path):
    path = saved(tmp_path, "npy", torch.zeros(3, D_MODEL))
    job = make_job("method=prompt_tuning", "method.init=file", f"method.init_file={path}", "method.prompt_length=3",
                   "method.train_prompt=false")  # fmt: skip
    assert not job.method.trains
    assert all(split != "train" for _, split in job.data.records)


def test_a_prompt_saved_for_another_model_loads_with_a_warning(tmp_path, caplog):
    """Same width, other model: a transfer, allowed, but said (the metadata names the model)."""
    from promptscale.prompts.files import read_init_prompt

    path = save_prompt(torch.zeros(3, D_MODEL), tmp_path / "p.safetensors", model="google/t5-base-lm-adapt")
    with caplog.at_level("WARNING"):
        read_init_prompt(path, 3, D_MODEL, known_as=("google/t5-base-lm-adapt", "base"))
    assert "saved for model" not in caplog.text
    with caplog.at_level("WARNING"):
        read_init_prompt(path, 3, D_MODEL, known_as=(None, "tiny_s", None))
    assert f"{path} was saved for model google/t5-base-lm-adapt; loading it into tiny_s" in caplog.text
