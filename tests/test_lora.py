"""LoRA through PEFT: parameter counts, frozen untied backbone, LoRA-only checkpoints."""

import pytest
import torch
from hydra.utils import instantiate
from transformers.optimization import Adafactor as HFAdafactor

from promptscale.optim.adafactor import Adafactor
from promptscale.train import run


def build(make_job, *overrides, task="rte"):
    job = make_job("method=lora", f"task={task}", *overrides)
    return job.method, job.spec.cfg


def formula(method, r: int, targets: set[str]) -> int:
    """r * (d_in + d_out) for every adapted nn.Linear of the backbone."""
    base = method.model.get_base_model()
    return sum(
        r * (m.base_layer.in_features + m.base_layer.out_features)
        for name, m in base.named_modules()
        if name.rsplit(".", 1)[-1] in targets and hasattr(m, "base_layer")
    )


@pytest.mark.parametrize("r,targets", [(8, "[q,v]"), (3, "[q,k,v,o,wi_0,wi_1,wo]")])
def test_trainable_count_equals_peft_and_the_formula(make_job, r, targets):
    method, cfg = build(make_job, f"method.r={r}", f"method.target_modules={targets}")
    names = set(targets.strip("[]").split(","))
    trainable = method.parameter_counts()["trainable_params"]
    assert trainable == method.model.get_nb_trainable_parameters()[0] == formula(method, r, names)
    # tiny_s: every q and v is d_model x heads*d_kv = 32 x 32; 2 encoder + 2x2 decoder attentions
    if names == {"q", "v"}:
        assert trainable == 2 * 6 * r * (32 + 32)
    assert all("lora_" in n for n, p in method.named_parameters() if p.requires_grad)
    assert method.parameter_counts()["model_params"] == instantiate(cfg.model).count_parameters()


def test_backbone_frozen_and_lm_head_untied(make_job):
    method, _ = build(make_job)
    base = method.model.get_base_model()
    assert base.lm_head.weight is not base.shared.weight
    assert base.lm_head.weight.data_ptr() != base.shared.weight.data_ptr()
    assert not base.lm_head.weight.requires_grad and not base.shared.weight.requires_grad


def test_update_starts_at_zero_and_the_base_interface_still_works(make_job):
    method, _ = build(make_job)
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
    encoded = method.encode(ids, mask)
    assert method.generate(encoded, max_new_tokens=3).shape[0] == 2  # generate through the PeftModel


def test_checkpoint_holds_only_lora_tensors_and_reloads(make_config, make_job, tmp_path):
    cfg = make_config("method=lora", "task=rte")
    assert run(cfg)
    [ckpt] = (tmp_path / "run" / "checkpoints").glob("*.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert state and all(".lora_A." in k or ".lora_B." in k for k in state)
    assert any(v.abs().sum() > 0 for k, v in state.items() if ".lora_B." in k)  # it trained
    fresh, _ = build(make_job)
    fresh.load_state_dict(state, strict=fresh.strict_loading)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())


def test_optimizers(make_job):
    adamw, _ = build(make_job)
    assert isinstance(adamw.configure_optimizers(), torch.optim.AdamW)
    adafactor, _ = build(make_job, "recipe.optimizer.name=adafactor")
    assert isinstance(adafactor.configure_optimizers(), Adafactor)  # ours, vectorised
    hf, _ = build(make_job, "recipe.optimizer.name=adafactor", "+recipe.optimizer.implementation=hf")
    assert isinstance(hf.configure_optimizers(), HFAdafactor)
    with pytest.raises(ValueError, match="recipe.optimizer.name='sgd'"):
        build(make_job, "recipe.optimizer.name=sgd")
    with pytest.raises(ValueError, match="target_modules"):
        build(make_job, "method.target_modules=[]")
