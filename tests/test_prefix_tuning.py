"""Prefix tuning: shapes and counts, where the prefixes reach, PEFT cross-check, generation, artifact."""

import copy
import warnings

import lightning
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from safetensors.torch import load_file
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration

from promptscale.methods.prefix_tuning import PrefixTuning
from promptscale.modules.prefix import PrefixEncoder, attach_prefixes, extend_bias, extend_mask
from promptscale.optim import OptimizerSpec

from conftest import CONF_DIR

SPEC = instantiate(OmegaConf.load(CONF_DIR / "model" / "tiny_s.yaml"))  # L=2, H=4, d_kv=8, d_model=32
L, H, D, DM = SPEC.num_layers, SPEC.num_heads, SPEC.d_kv, SPEC.d_model


def make_method(seed: int = 0, **kwargs) -> PrefixTuning:
    """Same seed, same backbone: variants differ only in their prefixes."""
    torch.manual_seed(seed)
    kwargs = {"prefix_length": 4, **kwargs}
    return PrefixTuning(model=SPEC, tasks=["rte"], **kwargs).eval()


def inputs(batch: int = 2, length: int = 7, target: int = 3, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 200, (batch, length), generator=gen)  # [B, T]
    mask = torch.ones_like(ids)
    mask[-1, length - 2 :] = 0  # a padded row, so the extended mask matters
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(3, 200, (batch, target), generator=gen)}


def logits(model: nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits  # [B, L, V]


# -- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize("length", [0, -3])
def test_impossible_prefix_length_names_the_key(make_job, length):
    with pytest.raises(ValueError, match=r"method\.prefix_length"):
        make_job("method=prefix_tuning", f"method.prefix_length={length}")


def test_all_prefix_sets_off_is_an_error(make_job):
    off = ["method.encoder_self=false", "method.decoder_self=false", "method.decoder_cross=false"]
    with pytest.raises(ValueError, match="at least one prefix set"):
        make_job("method=prefix_tuning", *off)


def test_trainable_parameters_follow_the_formula_and_backbone_is_frozen():
    P = 5
    direct = make_method(prefix_length=P, reparameterize=False)
    assert direct.parameter_counts()["trainable_params"] == 3 * L * 2 * H * D * P  # L enc = L dec here
    assert not any(p.requires_grad for p in direct.model.parameters())
    mlp = make_method(prefix_length=P, hidden=16)
    per_set = P * DM + (DM * 16 + 16) + (16 * L * 2 * H * D + L * 2 * H * D)
    assert mlp.parameter_counts()["trainable_params"] == 3 * per_set
    assert {n.split(".")[0] for n, p in mlp.named_parameters() if p.requires_grad} == {"prefixes"}


def test_prefix_width_is_heads_times_d_kv_not_d_model():
    encoder = PrefixEncoder(7, layers=3, heads=6, head_dim=64, embed_dim=512, hidden=32)  # T5 Small's 384
    assert encoder().shape == (3, 2, 6, 7, 64)
    assert encoder.mlp[-1].out_features == 3 * 2 * 6 * 64


def test_optimizer_is_adamw_with_linear_decay_per_step(make_job):
    recipe = make_job("method=prefix_tuning", "recipe.optimizer.weight_decay=0.01", "recipe.max_steps=10").spec.recipe
    assert recipe.optimizer == OptimizerSpec("adamw", lr=5e-5, weight_decay=0.01, schedule="linear", total_steps=10)
    spec = OptimizerSpec("adamw", lr=1e-3, weight_decay=0.01, schedule="linear", total_steps=10)
    config = make_method(optimizer=spec).configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.AdamW) and config["lr_scheduler"]["interval"] == "step"
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(0.01 / 1e-3)  # torch multiplies by lr
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.6)


# -- attention mechanics ------------------------------------------------------------------------
def test_prefix_keys_get_zero_bias_and_are_always_visible():
    bias = torch.randn(1, H, 3, 5)  # [1, H, Q, K]
    extended = extend_bias(bias, 2)
    assert torch.equal(extended[..., :2], torch.zeros(1, H, 3, 2)) and torch.equal(extended[..., 2:], bias)
    query, key = torch.zeros(1, H, 3, D), torch.zeros(1, H, 5, D)
    causal = extend_mask(None, query, key, 2, causal=True, additive=False)[0, 0]  # [Q, P+K], cached: K > Q
    assert causal[:, :2].all() and torch.equal(causal[:, 2:], torch.ones(3, 5, dtype=torch.bool).tril(2))
    padded = torch.tensor([0.0, 0.0, -1e9, -1e9, -1e9]).expand(1, 1, 3, 5)
    extended = extend_mask(padded, query, key, 2, causal=False, additive=True)  # [1, 1, Q, P+K]
    assert torch.equal(extended[..., :2], torch.zeros(1, 1, 3, 2)) and torch.equal(extended[..., 2:], padded)


def test_eager_and_sdpa_backends_agree():
    config = T5Config(
        vocab_size=200,
        d_model=24,
        d_ff=32,
        d_kv=8,
        num_layers=2,
        num_heads=4,
        dropout_rate=0.0,
        decoder_start_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    sdpa = T5ForConditionalGeneration(config).eval()
    eager = copy.deepcopy(sdpa)
    eager.set_attn_implementation("eager")
    prefixes = nn.ModuleDict(
        {
            name: PrefixEncoder(3, 2, 4, 8, 24, hidden=None, init_std=1.0)
            for name in ("encoder_self", "decoder_self", "decoder_cross")
        }
    )
    attach_prefixes(sdpa, prefixes)
    attach_prefixes(eager, prefixes)
    batch = inputs()
    torch.testing.assert_close(logits(sdpa, batch), logits(eager, batch), atol=1e-5, rtol=1e-5)


# -- where the prefixes reach ---------------------------------------------------------------------
def test_encoder_and_cross_prefixes_change_outputs_beyond_decoder_only():
    batch = inputs()
    torch.manual_seed(0)
    plain = SPEC.build().eval()
    full = make_method(reparameterize=False, init_std=1.0)
    decoder_only = make_method(reparameterize=False, init_std=1.0, encoder_self=False, decoder_cross=False)
    decoder_only.prefixes["decoder_self"].load_state_dict(full.prefixes["decoder_self"].state_dict())
    with torch.no_grad():
        base_states = plain.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        full_states = full.encode(batch["input_ids"], batch["attention_mask"])[0].last_hidden_state
        dec_states = decoder_only.encode(batch["input_ids"], batch["attention_mask"])[0].last_hidden_state
    assert torch.equal(dec_states, base_states)  # decoder-only leaves the encoder alone
    assert not torch.allclose(full_states, base_states, atol=1e-3)
    assert not torch.allclose(logits(full.model, batch), logits(decoder_only.model, batch), atol=1e-3)
    assert not torch.allclose(logits(decoder_only.model, batch), logits(plain, batch), atol=1e-3)


def test_rank_classification_expands_decoder_prefixes_to_the_choices():
    method = make_method(init_std=1.0)
    batch = inputs(batch=2)
    owner = torch.tensor([0, 0, 0, 1, 1])  # 5 choices for 2 examples
    labels = torch.randint(3, 200, (5, 3))
    labels[1, 2] = -100
    scores = method.choice_log_likelihoods({**batch, "choice_owner": owner, "choice_labels": labels})
    with torch.no_grad():
        full = method.model(
            input_ids=batch["input_ids"][owner], attention_mask=batch["attention_mask"][owner], labels=labels
        ).logits.log_softmax(-1)  # [C, L, V], encoder run per choice
    expected = (full.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * (labels >= 0)).sum(-1)
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)


def test_cached_generation_applies_the_decoder_prefix_once_per_step():
    method = make_method(init_std=1.0)
    batch = inputs()
    out = method.model.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        max_new_tokens=6,
        min_new_tokens=6,
        do_sample=False,
        num_beams=1,
        output_scores=True,
        return_dict_in_generate=True,
    )
    decoder_ids = out.sequences[:, :1]  # [B, 1] the start token
    for scores in out.scores:  # full recomputation without any cache
        with torch.no_grad():
            full = method.model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                decoder_input_ids=decoder_ids,
                use_cache=False,
            ).logits[:, -1]  # [B, V]
        eos = method.model.generation_config.eos_token_id
        full[:, eos] = scores[:, eos]  # min_new_tokens masks EOS in the generated scores
        torch.testing.assert_close(scores, full, atol=1e-5, rtol=1e-5)
        decoder_ids = torch.cat([decoder_ids, full.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(decoder_ids, out.sequences)


# -- PEFT cross-check (decoder self-attention, the only place PEFT's T5 prefix reaches) ----------
def peft_layout_to_ours(weight: torch.Tensor, layers: int, heads: int, head_dim: int) -> torch.Tensor:
    """PEFT's embedding [P, 2L*H*D] -> the decoder self-attention prefixes it yields, [L, 2, H, P, D].

    For seq2seq PEFT views the row as 2L slots, concatenates them with themselves (4L) and cuts
    every 4 as (self k, self v, cross k, cross v) of one layer: layer l reads slots 4l, 4l+1
    modulo 2L. So layers l and l+L/2 share their prefix, and the cross slots are discarded.
    """
    length = weight.shape[0]
    slots = weight.view(length, 2 * layers, heads, head_dim).permute(1, 2, 0, 3)  # [2L, H, P, D]
    index = torch.tensor([[(4 * layer + kv) % (2 * layers) for kv in (0, 1)] for layer in range(layers)])
    return slots[index]  # [L, 2, H, P, D]


@pytest.fixture
def peft_pair():
    peft = pytest.importorskip("peft")
    # d_model=24 != heads x d_kv = 32, and odd depth, to exercise PEFT's layout
    config = T5Config(
        vocab_size=200,
        d_model=24,
        d_ff=32,
        d_kv=8,
        num_layers=3,
        num_heads=4,
        dropout_rate=0.0,
        decoder_start_token_id=0,
        tie_word_embeddings=False,
        feed_forward_proj="gated-gelu",
    )
    torch.manual_seed(0)
    backbone = T5ForConditionalGeneration(config).eval()
    P = 5
    peft_config = peft.PrefixTuningConfig(
        task_type="SEQ_2_SEQ_LM", num_virtual_tokens=P, token_dim=4 * 8, num_attention_heads=4, num_layers=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.get_peft_model(copy.deepcopy(backbone), peft_config).eval()
    weight = theirs.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        weight.normal_()
    ours = copy.deepcopy(backbone)
    prefixes = nn.ModuleDict({"decoder_self": PrefixEncoder(P, 3, 4, 8, 24, hidden=None)})
    with torch.no_grad():
        prefixes["decoder_self"].prefix.copy_(peft_layout_to_ours(weight, 3, 4, 8))
    attach_prefixes(ours, prefixes)
    return theirs, ours, prefixes


def test_peft_t5_prefix_reaches_decoder_self_attention_only(peft_pair):
    theirs, _, prefixes = peft_pair
    cache = theirs.get_prompt(batch_size=1)
    assert len(cache.cross_attention_cache) == 0  # cross-attention prefixes are dropped; the encoder gets none
    expected = prefixes["decoder_self"]()  # [L, 2, H, P, D]
    for layer, layer_cache in enumerate(cache.self_attention_cache.layers):
        assert torch.equal(layer_cache.keys[0], expected[layer, 0])  # [H, P, D]
        assert torch.equal(layer_cache.values[0], expected[layer, 1])


def test_decoder_self_prefix_matches_peft_without_relative_bias(peft_pair):
    theirs, ours, _ = peft_pair
    batch = inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # PEFT passes the prefix as past tokens at positions 0..P-1, so their keys get T5's relative
        # bias; ours get none. With the decoder's relative bias zeroed the two definitions agree.
        assert not torch.allclose(logits(theirs, batch), logits(ours, batch), atol=1e-3)
        for model in (theirs.get_base_model(), ours):
            model.decoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight.data.zero_()
        torch.testing.assert_close(logits(ours, batch), logits(theirs, batch), atol=1e-5, rtol=1e-5)


# -- the artifact ---------------------------------------------------------------------------------
def test_checkpoint_holds_only_projected_prefixes_and_reloads_the_same_logits(tmp_path):
    method = make_method(prefix_length=3, hidden=16)
    checkpoint = {
        "state_dict": method.state_dict(),
        "optimizer_states": [{}],
        "lr_schedulers": [{}],
        "pytorch-lightning_version": lightning.__version__,
    }  # what Trainer.save_checkpoint passes
    method.on_save_checkpoint(checkpoint)
    state = checkpoint["state_dict"]
    assert set(state) == {f"prefixes.{n}.prefix" for n in ("encoder_self", "decoder_self", "decoder_cross")}
    assert all(v.shape == (L, 2, H, 3, D) for v in state.values())
    assert "optimizer_states" not in checkpoint  # it described the MLP, which the artifact drops
    path = tmp_path / "best.ckpt"
    torch.save(checkpoint, path)
    assert path.stat().st_size < 3 * L * 2 * H * 3 * D * 4 + 20_000  # the prefixes, no backbone, no MLP
    torch.manual_seed(0)  # the same backbone as ``method``
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-strict load: the frozen backbone's keys are absent by design
        loaded = PrefixTuning.load_from_checkpoint(path, model=SPEC, tasks=["rte"], prefix_length=3, hidden=16).eval()
    assert not any(e.reparameterized for e in loaded.prefixes.values())
    batch = inputs()
    torch.testing.assert_close(logits(loaded.model, batch), logits(method.model, batch), atol=1e-6, rtol=1e-6)


def test_export_prefixes_writes_the_projected_tensors(tmp_path):
    method = make_method(prefix_length=3, hidden=16, decoder_cross=False)
    method.export_prefixes(tmp_path / "prefixes.safetensors")
    saved = load_file(tmp_path / "prefixes.safetensors")
    assert set(saved) == {"encoder_self", "decoder_self"}
    torch.testing.assert_close(saved["decoder_self"], method.prefixes["decoder_self"]())
