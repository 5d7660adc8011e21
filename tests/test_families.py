"""T5 families: tiny models of each family's architecture, built offline, behave as that family.

The family configs differ from T5 1.1 in what changes logits (original T5: ReLU, a tied LM head
and decoder outputs scaled by d_model**-0.5 before it) or only in size (mT5's vocabulary). Each
family config is shrunk to a tiny shape here, keeping every architectural flag it sets.
"""

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from transformers.models.t5.modeling_t5 import T5DenseActDense, T5DenseGatedActDense

from promptscale.families import FAMILIES, legacy_family, model_family
from promptscale.job import compose
from promptscale.models import ModelSpec
from promptscale.train import run

# Each family's smallest config (the family's flags; its shape is shrunk below).
FAMILY_CONFIGS = {
    "t5_1_1_lm_adapt": "small",
    "t5_1_1": "t5_1_1_small",
    "flan_t5": "flan_t5_small",
    "mt5": "mt5_small",
    "t5": "t5_small",
    "tiny": "tiny_s",
}
TINY = {
    "init": "random",
    "hub_id": "null",
    "tokenizer": "embedded",
    "vocab_size": 2048,
    "d_model": 32,
    "d_ff": 64,
    "d_kv": 8,
    "num_layers": 2,
    "num_heads": 4,
}
TIED = {"t5"}  # the original T5 ties its LM head to the input embedding


def tiny_overrides(family: str, **more) -> list[str]:
    return [f"model={FAMILY_CONFIGS[family]}", *(f"model.{k}={v}" for k, v in {**TINY, **more}.items())]


def tiny_spec(family: str, **more) -> ModelSpec:
    return instantiate(compose(tiny_overrides(family, **more)).model)


def test_every_family_has_a_config():
    assert set(FAMILY_CONFIGS) == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tiny_model_of_each_family_has_its_architecture(family):
    spec = tiny_spec(family)
    model = spec.build()
    assert spec.family == family
    tied = family in TIED
    assert (model.lm_head.weight is model.shared.weight) == tied
    assert model.config.scale_decoder_outputs == tied
    ff = model.encoder.block[0].layer[-1].DenseReluDense
    assert isinstance(ff, T5DenseActDense if family == "t5" else T5DenseGatedActDense)
    if family == "t5":
        assert model.config.dense_act_fn == "relu"
    # a tied head is one tensor, counted once, in the build and in the meta-device count
    assert spec.count_parameters() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", ["t5", "t5_1_1_lm_adapt"])
def test_logits_follow_the_family_head(family):
    """Original T5: logits = (h * d**-0.5) @ E.T with E the input embedding; T5 1.1: h @ W.T, W its own."""
    model = tiny_spec(family).build().eval()
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randint(3, 2048, (2, 7), generator=gen)
    decoder = torch.randint(3, 2048, (2, 4), generator=gen)
    with torch.no_grad():
        logits = model(input_ids=inputs, decoder_input_ids=decoder).logits  # [B, L, V]
        hidden = model.decoder(
            input_ids=decoder, encoder_hidden_states=model.encoder(input_ids=inputs).last_hidden_state
        ).last_hidden_state  # [B, L, H]
        if family == "t5":
            expected = (hidden * model.config.d_model**-0.5) @ model.shared.weight.T
        else:
            expected = hidden @ model.lm_head.weight.T
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
        # moving the input embedding moves the head of the tied family only
        before = model.lm_head.weight.clone()
        model.shared.weight.add_(1.0)
        assert torch.equal(model.lm_head.weight, before) == (family != "t5")


def test_tied_checkpoint_roundtrip_stays_tied_and_scaled(tmp_path):
    original = tiny_spec("t5").build().eval()
    original.save_pretrained(tmp_path)
    loaded = tiny_spec("t5", init="pretrained", path=str(tmp_path)).build().eval()
    assert loaded.lm_head.weight is loaded.shared.weight
    assert loaded.config.scale_decoder_outputs
    ids = torch.arange(3, 10).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(input_ids=ids, decoder_input_ids=ids).logits, original(input_ids=ids, decoder_input_ids=ids).logits
        )


def test_an_mt5_checkpoint_loads_with_mt5_logits(tmp_path):
    """transformers 5's MT5Config saves tie_word_embeddings=true, yet MT5 never ties nor rescales: read as mT5."""
    from transformers import MT5Config, MT5ForConditionalGeneration

    config = MT5Config(vocab_size=2048, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4)
    reference = MT5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        reference.lm_head.weight = torch.nn.Parameter(torch.randn_like(reference.shared.weight))  # a head of its own
    reference.save_pretrained(tmp_path)
    loaded = tiny_spec("mt5", init="pretrained", path=str(tmp_path), dropout_rate=0.0).build().eval()
    assert loaded.lm_head.weight is not loaded.shared.weight and not loaded.config.scale_decoder_outputs
    ids = torch.arange(3, 12).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(input_ids=ids, decoder_input_ids=ids).logits, reference(input_ids=ids, decoder_input_ids=ids).logits
        )


def test_a_checkpoint_of_the_other_head_is_refused(tmp_path):
    """A T5 1.1 checkpoint configured as original T5 (or the reverse) would give wrong logits silently."""
    tiny_spec("t5_1_1", feed_forward_proj="relu").build().save_pretrained(tmp_path / "untied")
    with pytest.raises(ValueError, match="tied_embeddings=True"):
        tiny_spec("t5", init="pretrained", path=str(tmp_path / "untied")).build()
    tiny_spec("t5").build().save_pretrained(tmp_path / "tied")
    with pytest.raises(ValueError, match="feed_forward_proj"):
        tiny_spec("t5_1_1", init="pretrained", path=str(tmp_path / "tied")).build()
    with pytest.raises(ValueError, match="ties its input and output embeddings"):
        tiny_spec("t5_1_1", feed_forward_proj="relu", init="pretrained", path=str(tmp_path / "tied")).build()


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["model=t5_small", "model.family=t6"], "model.family='t6'"),
        (["model=t5_small", "model.size=xl"], "model.size='xl' is not a size of family 't5'"),
        (["model=mt5_small", "model.size=3b"], "model.size='3b' is not a size of family 'mt5'"),
    ],
)
def test_unknown_family_or_size_is_an_error_naming_the_key(overrides, key):
    with pytest.raises((ValueError, InstantiationException), match=key):
        instantiate(compose(overrides).model)


def test_configs_saved_before_families_read_their_family_from_the_name():
    assert [legacy_family(n) for n in ("base", "t5_1_1_xl", "tiny_m")] == ["t5_1_1_lm_adapt", "t5_1_1", "tiny"]
    assert model_family({"name": "t5_1_1_small"}) == "t5_1_1"
    assert model_family({"name": "small", "family": "flan_t5"}) == "flan_t5"
    old = ModelSpec(name="t5_1_1_small", size="small", vocab_size=8, d_model=8, d_ff=8, d_kv=8, num_layers=1,
                    num_heads=1, init="random")  # fmt: skip
    assert old.family == "t5_1_1"


def test_rows_carry_the_family_and_the_measured_tied_count(make_config, one_thread):
    """A prompt-tuning job on a tiny original-T5 model: rows say family t5, the backbone counted once."""
    cfg = make_config(*tiny_overrides("t5"), "method=prompt_tuning", "method.prompt_length=4")
    rows = run(cfg)
    assert {r["family"] for r in rows} == {"t5"}
    assert rows[0]["total_params"] == instantiate(cfg.model).count_parameters()
    assert rows[0]["trainable_params"] == 4 * 32


def test_bf16_storage_of_frozen_linears_leaves_a_tied_embedding_alone():
    """The original T5's LM head is its input embedding: storing frozen Linear weights in bf16
    (bf16-mixed, frozen backbones) must not turn the embedding lookups into bf16."""
    from promptscale.methods.base import cast_frozen_linears

    model = tiny_spec("t5").build().requires_grad_(False)
    assert model.lm_head.weight is model.shared.weight
    cast_frozen_linears(model, torch.bfloat16)
    assert model.shared.weight.dtype == torch.float32 and model.lm_head.weight is model.shared.weight
    assert model.encoder.block[0].layer[0].SelfAttention.q.weight.dtype == torch.bfloat16
