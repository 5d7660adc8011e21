"""Prompt tuning as in Lester et al. 2021: encoder-only prompt, the three inits, tiny checkpoints."""

import pytest
import torch

from promptscale.data.tasks import get_task
from promptscale.modules.soft_prompt import SoftPrompt, init_class_label, init_sampled_vocab


def build(make_job, *overrides, task="rte"):
    job = make_job("method=prompt_tuning", f"task={task}", *overrides)
    return job.method, job.spec.cfg


def test_only_the_prompt_trains(make_job):
    method, cfg = build(make_job, "method.prompt_length=10")
    trainable = {n for n, p in method.named_parameters() if p.requires_grad}
    assert trainable == {"prompt.embedding"}
    assert method.parameter_counts()["trainable_params"] == 10 * cfg.model.d_model


def test_prompt_is_prepended_to_encoder_inputs_only(make_job):
    method, _ = build(make_job, "method.prompt_length=5")
    ids = torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]])  # [B=2, T=4]
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    kwargs = method.encoder_inputs(ids, mask)
    assert kwargs["inputs_embeds"].shape == (2, 9, method.model.config.d_model)  # [B, P+T, H]
    assert torch.equal(kwargs["attention_mask"][:, :5], torch.ones(2, 5, dtype=torch.long))
    assert torch.equal(kwargs["attention_mask"][:, 5:], mask)
    assert torch.equal(kwargs["inputs_embeds"][0, :5], method.prompt.embedding)
    # the decoder sees the encoder output of length P+T, nothing prepended on its own inputs
    method.eval()
    labels = torch.tensor([[11, 1], [12, 1]])
    seen = {}
    hook = method.model.decoder.register_forward_pre_hook(
        lambda mod, args, kw: seen.update(dec=kw["input_ids"].shape, enc=kw["encoder_hidden_states"].shape),
        with_kwargs=True,
    )
    method(ids, mask, labels)
    hook.remove()
    assert seen["dec"] == (2, 2) and seen["enc"][1] == 9


def test_class_label_init_uses_label_embeddings_then_top_vocab(make_job):
    method, _ = build(make_job, "method.prompt_length=6", "method.init=class_label", "method.init_top_k=50")
    vocab = method.model.get_input_embeddings().weight.detach()
    words = get_task("rte").label_words  # entailment, not_entailment
    for i, word in enumerate(words):
        ids = method.tokenizer(word, add_special_tokens=False)["input_ids"]
        assert torch.allclose(method.prompt.embedding[i], vocab[ids].mean(0))
    for row in method.prompt.embedding[len(words) :]:
        assert any(torch.equal(row, vocab[j]) for j in range(50))


def test_sampled_vocab_draws_distinct_top_k_rows():
    vocab = torch.randn(100, 4)
    rows = init_sampled_vocab(10, vocab, top_k=20, generator=torch.Generator().manual_seed(0))
    idx = [next(j for j in range(20) if torch.equal(r, vocab[j])) for r in rows]
    assert len(set(idx)) == 10


def test_class_label_init_with_prompt_shorter_than_labels_keeps_first_labels():
    vocab = torch.randn(30, 4)
    rows = init_class_label(1, vocab, [[3, 4], [5]], top_k=30, generator=torch.Generator().manual_seed(0))
    assert rows.shape == (1, 4) and torch.allclose(rows[0], vocab[[3, 4]].mean(0))


def test_random_uniform_init_is_in_range(make_job):
    method, _ = build(make_job, "method.prompt_length=20", "method.init=random_uniform")
    assert method.prompt.embedding.abs().max() <= 0.5


@pytest.mark.parametrize("init", ["random_uniform", "sampled_vocab", "class_label"])
def test_inits_are_seeded(make_job, init):
    a, _ = build(make_job, f"method.init={init}")
    torch.manual_seed(123)  # whatever was drawn before: the backbone and the init follow the seeds
    b, _ = build(make_job, f"method.init={init}")
    assert torch.equal(a.prompt.embedding, b.prompt.embedding)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["method.prompt_length=1000000"], r"method\.prompt_length must be in 1\.\.4096"),
        (["method.prompt_length=60", "method.init_top_k=50"], r"method\.prompt_length=60 .* method\.init_top_k=50"),
    ],
)
def test_impossible_prompt_lengths_name_the_key_before_the_backbone_is_built(make_job, monkeypatch, overrides, message):
    from promptscale.models import ModelSpec

    monkeypatch.setattr(ModelSpec, "build", lambda self: pytest.fail("the backbone was built"))
    with pytest.raises(ValueError, match=message):
        build(make_job, *overrides)


def test_bad_prompt_settings_fail_before_training(make_job):
    with pytest.raises(Exception, match="prompt_length"):
        build(make_job, "method.prompt_length=0")
    with pytest.raises(Exception, match="init"):
        build(make_job, "method.init=zeros")


def test_checkpoint_holds_only_the_prompt(make_config, make_job, tmp_path):
    from promptscale.train import run

    cfg = make_config("method=prompt_tuning", "task=cb", "method.prompt_length=4")
    run(cfg)
    ckpts = list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert len(ckpts) == 1
    state = torch.load(ckpts[0], map_location="cpu", weights_only=False)
    assert set(state["state_dict"]) == {"prompt.embedding"}
    assert state["state_dict"]["prompt.embedding"].shape == (4, cfg.model.d_model)
    assert ckpts[0].stat().st_size < 100_000  # kilobytes, not the model
    # and it loads back into a fresh module
    method, _ = build(make_job, "method.prompt_length=4", task="cb")
    method.load_state_dict(state["state_dict"], strict=False)
    assert torch.equal(method.prompt.embedding, state["state_dict"]["prompt.embedding"])


def test_soft_prompt_shapes():
    prompt = SoftPrompt(3, 8)
    embeds, mask = prompt(torch.zeros(2, 5, 8), torch.ones(2, 5, dtype=torch.long))
    assert embeds.shape == (2, 8, 8) and mask.shape == (2, 8)
