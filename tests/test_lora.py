"""LoRA through PEFT: parameter counts, frozen untied backbone, LoRA-only checkpoints."""

import pytest
import torch
from hydra.utils import instantiate
from transformers.optimization import Adafactor

from promptscale.train import run


def build(make_config, *overrides, task="rte"):
    cfg = make_config("method=lora", f"task={task}", *overrides)
    return instantiate(cfg.method, _partial_=True)(model=instantiate(cfg.model), tasks=[task]), cfg


def formula(method, r: int, targets: set[str]) -> int:
    """r * (d_in + d_out) for every adapted nn.Linear of the backbone."""
    base = method.model.get_base_model()
    return sum(
        r * (m.base_layer.in_features + m.base_layer.out_features)
        for name, m in base.named_modules()
        if name.rsplit(".", 1)[-1] in targets and hasattr(m, "base_layer")
    )


@pytest.mark.parametrize("r,targets", [(8, "[q,v]"), (3, "[q,k,v,o,wi_0,wi_1,wo]")])
def test_trainable_count_equals_peft_and_the_formula(make_config, r, targets):
    method, cfg = build(make_config, f"method.r={r}", f"method.target_modules={targets}")
    names = set(targets.strip("[]").split(","))
    trainable = method.parameter_counts()["trainable_params"]
    assert trainable == method.model.get_nb_trainable_parameters()[0] == formula(method, r, names)
    # tiny_s: every q and v is d_model x heads*d_kv = 32 x 32; 2 encoder + 2x2 decoder attentions
    if names == {"q", "v"}:
        assert trainable == 2 * 6 * r * (32 + 32)
    assert all("lora_" in n for n, p in method.named_parameters() if p.requires_grad)
    assert method.parameter_counts()["model_params"] == instantiate(cfg.model).count_parameters()


def test_backbone_frozen_and_lm_head_untied(make_config):
    method, _ = build(make_config)
    base = method.model.get_base_model()
    assert base.lm_head.weight is not base.shared.weight
    assert base.lm_head.weight.data_ptr() != base.shared.weight.data_ptr()
    assert not base.lm_head.weight.requires_grad and not base.shared.weight.requires_grad


def test_update_starts_at_zero_and_the_base_interface_still_works(make_config):
    method, _ = build(make_config)
    method.eval()
    ids = torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]])  # [B, T]
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    labels = torch.tensor([[11, 1], [12, 1]])  # [B, L]
    with method.model.disable_adapter():
        frozen = method(ids, mask, labels)
    assert torch.allclose(method(ids, mask, labels), frozen)  # B = 0 at init
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "choice_owner": torch.tensor([0, 0, 1]),
        "choice_labels": torch.tensor([[11, 1], [12, 1], [13, 1]]),
        "examples": [None, None],
    }
    assert method.choice_log_likelihoods(batch).shape == (3,)  # encoder + forward(encoder_outputs=...)
    assert len(method.generate_texts(batch)) == 2  # generate through the PeftModel


def test_checkpoint_holds_only_lora_tensors_and_reloads(make_config, tmp_path):
    cfg = make_config("method=lora", "task=rte")
    assert run(cfg)
    [ckpt] = (tmp_path / "run" / "checkpoints").glob("*.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert state and all(".lora_A." in k or ".lora_B." in k for k in state)
    assert any(v.abs().sum() > 0 for k, v in state.items() if ".lora_B." in k)  # it trained
    fresh, _ = build(make_config)
    fresh.load_state_dict(state, strict=fresh.strict_loading)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())


def test_optimizers(make_config):
    adamw, _ = build(make_config)
    assert isinstance(adamw.configure_optimizers(), torch.optim.AdamW)
    adafactor, _ = build(make_config, "method.optimizer=adafactor")
    assert isinstance(adafactor.configure_optimizers(), Adafactor)
    with pytest.raises(ValueError, match="optimizer"):
        build(make_config, "method.optimizer=sgd")
    with pytest.raises(ValueError, match="target_modules"):
        build(make_config, "method.target_modules=[]")
