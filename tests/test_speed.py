"""The ``speed`` switches keep results within stated tolerances (never timed here).

* ``speed.dropout=bits`` (an option, off): the same Bernoulli(1 - p) noise as ``F.dropout`` (keep
  rate within 5 binomial standard deviations, kept values x / (1 - p), gradient = the same noise).
* ``speed.attention=direct``: with the dropout draws taken out, the same attention as SDPA: fp32
  within 1e-5 (outputs, loss and prompt gradients of a tiny T5); under bf16 autocast no further
  from the fp32 result than SDPA under bf16 (gradients within 3% relative, loss within 0.2%).
* ``speed.fused``: T5's norm and GELU as fused kernels: logits and gradients within 1e-5 in fp32;
  under bf16 autocast no further from fp32 than the unfused ops.
* ``speed.checkpoint``: the same loss and prompt gradient (the same dropout draws replayed).
* ``speed.threads``: the auto rule (config-only, so resumes reproduce), float results within 1e-5
  across thread counts.
* ``speed.compile`` (slow): compiled training loss and gradients equal eager's within 1e-5.
* The block is checked, typed, and not hashed (runs differing only in it are one config).
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from promptscale import speed
from promptscale.modules import attention as attention_module
from promptscale.modules.attention import direct_attention, merged_bias_mask, use_shared_bias_attention
from promptscale.modules.dropout import BitsDropout, bits_dropout, keep_mask, use_bits_dropout
from promptscale.modules.fused import FusedNewGELU, FusedT5LayerNorm, use_fused_t5_ops
from promptscale.speed import SpeedSpec, auto_threads

pytestmark = pytest.mark.usefixtures("one_thread")


# -- the config block ---------------------------------------------------------------------------
def test_block_is_typed_checked_and_not_hashed(make_config):
    from promptscale.job import JobSpec

    default = JobSpec.from_config(make_config())
    assert default.speed == SpeedSpec()  # attention=direct, fused, dropout=torch, compile off, threads auto
    other = JobSpec.from_config(make_config("speed.dropout=bits", "speed.attention=sdpa", "speed.threads=1"))
    assert other.speed == SpeedSpec(attention="sdpa", dropout="bits", threads=1)
    assert other.config_hash == default.config_hash  # how steps run is not what a run is
    assert other.config["speed"]["dropout"] == "bits"  # but the run's saved config says it
    with pytest.raises(ValueError, match="speed.dropuot"):
        JobSpec.from_config(make_config("+speed.dropuot=bits"))
    with pytest.raises(ValueError, match="speed.attention='flash'"):
        JobSpec.from_config(make_config("speed.attention=flash"))
    with pytest.raises(ValueError, match="speed.threads"):
        SpeedSpec(threads=0)
    with pytest.raises(ValueError, match="speed.compile"):
        SpeedSpec(compile="yes")


def test_auto_threads_depend_only_on_the_model(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert auto_threads(180_864) == 1  # tiny_s: one thread
    assert auto_threads(76_961_152) == speed.TORCH_THREADS  # T5 Small: torch's choice, whatever ran before
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert auto_threads(180_864) is None  # the user's explicit choice wins


def test_configure_sets_threads_and_hands_switches_to_the_method(monkeypatch):
    method = nn.Module()
    assert speed.switches(method) == SpeedSpec()  # built outside a job: the defaults
    before = torch.get_num_threads()
    try:
        speed.configure(method, SpeedSpec(threads=2, dropout="bits"))
        assert torch.get_num_threads() == 2 and speed.switches(method).dropout == "bits"
    finally:
        torch.set_num_threads(before)


# -- dropout masks from random bits ----------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_bits_dropout_is_bernoulli_noise_scaled_like_torch(p):
    torch.manual_seed(0)
    n = 1_000_000
    x = torch.rand(n) + 0.5  # [N], no zeros: dropped elements are the zeros of the output
    out = bits_dropout(x, p)
    kept = out != 0
    rate, sd = kept.float().mean().item(), ((1 - p) * p / n) ** 0.5
    assert abs(rate - (1 - p)) < 5 * sd  # Bernoulli(1 - p), 5 binomial standard deviations
    assert torch.allclose(out[kept], x[kept] / (1 - p), rtol=1e-6, atol=0)  # kept: scaled as F.dropout scales
    again = keep_mask((n,), p)  # consecutive draws are independent: agreement of two masks ~ p^2 + (1-p)^2
    agree = (again == kept).float().mean().item()
    assert abs(agree - (p * p + (1 - p) ** 2)) < 0.005


def test_bits_dropout_gradient_is_the_same_noise_and_eval_is_identity():
    x = torch.randn(64, 32, requires_grad=True)  # [B, H]
    torch.manual_seed(1)
    out = bits_dropout(x, 0.1)
    out.backward(torch.ones_like(out))
    noise = out.detach() / x.detach()
    assert torch.allclose(x.grad, noise)  # d out / d x = noise
    torch.manual_seed(1)
    assert torch.equal(bits_dropout(x, 0.1), out)  # a pure function of the generator's state
    assert bits_dropout(x, 0.1, training=False) is x and bits_dropout(x, 0.0) is x
    module = nn.Dropout(0.3)
    use_bits_dropout(nn.Sequential(module))
    assert type(module) is BitsDropout and module.p == 0.3
    assert torch.equal(module.eval()(x), x)


def test_swapping_dropout_keeps_state_dict_and_eval_outputs(make_job):
    job = make_job("method=prompt_tuning", "task=cb")
    model = job.method.model.eval()
    ids = torch.randint(3, 100, (2, 12))  # [B, T]
    labels = ids[:, :3].contiguous()  # [B, L]
    before = model(input_ids=ids, labels=labels).logits
    keys = list(model.state_dict())
    assert use_bits_dropout(model) > 0
    assert list(model.state_dict()) == keys
    assert torch.equal(model(input_ids=ids, labels=labels).logits, before)


# -- direct attention ---------------------------------------------------------------------------
def attention_inputs(seed=0, batch=3, heads=4, length=10, dim=8):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, length, dim, generator=gen) for _ in range(3))  # [B, H, T, D]
    bias = torch.randn(1, heads, length, length, generator=gen)  # [1, H, T, T]
    mask = torch.ones(batch, 1, 1, length, dtype=torch.bool)  # [B, 1, 1, T]
    mask[0, ..., 7:] = False  # a padded row
    return q, k, v, bias, mask


def test_direct_attention_equals_sdpa_without_dropout_draws():
    q, k, v, bias, mask = attention_inputs()
    merged = merged_bias_mask(bias, mask, q, k)  # [B, H, T, T]
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=merged, scale=1.0).transpose(1, 2)
    assert torch.allclose(direct_attention(q, k, v, merged, 0.0, 1.0), reference, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = direct_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), merged, 0.0, 1.0)
    assert low.dtype == torch.bfloat16 and torch.allclose(low.float(), reference, atol=2e-2)


@pytest.mark.parametrize("bits", [False, True])
def test_direct_attention_applies_one_dropout_mask_to_the_probabilities(bits):
    q, k, v, bias, mask = attention_inputs(seed=1)
    merged = merged_bias_mask(bias, mask, q, k)
    torch.manual_seed(5)
    out = direct_attention(q, k, v, merged, 0.25, 1.0, bits)
    torch.manual_seed(5)
    shape = (3, 4, 10, 10)  # [B, H, T, T]: the same draws as the attention's
    noise = keep_mask(shape, 0.25).float() / 0.75 if bits else F.dropout(torch.ones(shape), 0.25)
    probs = torch.softmax(q @ k.transpose(-1, -2) + merged, dim=-1)
    assert torch.allclose(out, ((probs * noise) @ v).transpose(1, 2), atol=1e-5)


def train_mode_loss(job, direct: bool, autocast: bool):
    """Loss and prompt gradient of a train-mode forward with every dropout draw taken out.

    Dropout modules get p = 0; encoder and cross-attention keep p = 0.1 so the direct path runs,
    with its mask forced to keep everything (the tests patch it): what remains is the attention
    arithmetic itself. The decoder's self-attention over unpadded targets stays on SDPA (p = 0).
    """
    method = job.method.train()
    use_shared_bias_attention(method.model, direct=direct, bits=True)  # bits: the masks the tests patch
    for module in method.model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if hasattr(module, "has_relative_attention_bias"):  # T5Attention; the decoder's causal
            module.dropout = 0.1 if direct and not module.is_causal else 0.0  # self-attention keeps SDPA
    batch = next(iter(job.data.train_dataloader()))
    method.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = method(batch["input_ids"], batch["attention_mask"], batch["labels"])
    loss.backward()
    return loss.detach(), method.prompt.embedding.grad.clone()


@pytest.fixture
def no_attention_draws(monkeypatch):
    monkeypatch.setattr(attention_module, "bits_dropout", lambda x, p, training=True: x)


def test_direct_attention_in_a_training_step_matches_sdpa(make_job, no_attention_draws):
    job = make_job("method=prompt_tuning", "task=cb", "data.train_limit=8")
    direct_loss, direct_grad = train_mode_loss(job, True, False)
    stock_loss, stock_grad = train_mode_loss(job, False, False)
    assert torch.allclose(direct_loss, stock_loss, rtol=1e-5)
    assert (direct_grad - stock_grad).abs().max() <= 1e-5 * stock_grad.abs().max()


def test_direct_attention_under_bf16_is_as_close_to_fp32_as_sdpa(make_job, no_attention_draws):
    """bf16-mixed moves results anyway; the direct path must not move them further than SDPA does."""
    job = make_job("method=prompt_tuning", "task=cb", "data.train_limit=8")
    reference_loss, reference = train_mode_loss(job, False, False)  # fp32

    def error(direct: bool) -> tuple[float, float]:
        loss, grad = train_mode_loss(job, direct, True)
        return abs(loss / reference_loss - 1).item(), ((grad - reference).norm() / reference.norm()).item()

    (direct_loss, direct_grad), (_, stock_grad) = error(True), error(False)
    assert direct_loss < 2e-3 and direct_grad < 3e-2  # bf16-mixed's own tolerance on this tiny T5
    assert direct_grad <= 1.25 * stock_grad  # measured: 0.0113 vs 0.0118 (relative gradient error)


def test_thread_count_changes_results_only_by_float_rounding(make_job):
    job = make_job("method=prompt_tuning", "task=cb", "data.train_limit=8")
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        results.append(train_mode_loss(job, True, False))
    torch.set_num_threads(1)
    assert torch.allclose(results[0][0], results[1][0], rtol=1e-5)
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)


# -- fused norm and GELU -------------------------------------------------------------------------
def loss_and_grads(model, ids, labels, autocast: bool):
    """Loss and every gradient of a train-mode step with dropout off."""
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_fused_norm_and_gelu_compute_the_same_functions(make_job):
    job = make_job("method=model_tuning", "task=cb", "model.dropout_rate=0.0")
    model = job.method.model.train()
    ids, labels = torch.randint(3, 100, (4, 20)), torch.randint(3, 100, (4, 3))  # [B, T], [B, L]
    stock = {autocast: loss_and_grads(model, ids, labels, autocast) for autocast in (False, True)}
    keys = list(model.state_dict())
    assert use_fused_t5_ops(model) > 0 and list(model.state_dict()) == keys
    assert any(type(m) is FusedT5LayerNorm for m in model.modules())
    assert any(type(m) is FusedNewGELU for m in model.modules())
    fused = {autocast: loss_and_grads(model, ids, labels, autocast) for autocast in (False, True)}
    (loss, grads), (stock_loss, stock_grads) = fused[False], stock[False]
    assert torch.allclose(loss, stock_loss, rtol=1e-5) and torch.allclose(grads, stock_grads, rtol=1e-4, atol=1e-6)

    def error(result):  # relative to fp32
        return ((result[1] - stock_grads).norm() / stock_grads.norm()).item()

    assert error(fused[True]) <= 1.25 * error(stock[True]) and error(fused[True]) < 0.05


# -- activation checkpointing --------------------------------------------------------------------
def test_checkpointing_replays_the_same_dropout_and_gives_the_same_gradients(make_job):
    job = make_job("method=prompt_tuning", "task=cb", "data.train_limit=8")
    method = job.method.train()
    batch = next(iter(job.data.train_dataloader()))

    def step():
        torch.manual_seed(3)  # the same dropout draws in both runs (dropout on: 0.1)
        method.zero_grad()
        loss = method(batch["input_ids"], batch["attention_mask"], batch["labels"])
        loss.backward()
        return loss.detach(), method.prompt.embedding.grad.clone()

    speed.apply(method.model, SpeedSpec())  # the defaults, then checkpointing on top
    plain = step()
    speed.apply(method.model, SpeedSpec(checkpoint=True))
    assert method.model.encoder.gradient_checkpointing
    again = step()
    assert torch.allclose(again[0], plain[0], rtol=1e-6) and torch.allclose(again[1], plain[1], rtol=1e-5, atol=1e-7)


# -- compile ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_compiled_training_forward_matches_eager(make_job):
    job = make_job("method=prompt_tuning", "task=cb", "data.train_limit=8", "model.dropout_rate=0.0")
    method = job.method.train()
    batch = next(iter(job.data.train_dataloader()))

    def loss_and_grad():
        method.zero_grad()
        loss = method(batch["input_ids"], batch["attention_mask"], batch["labels"])
        loss.backward()
        return loss.detach(), method.prompt.embedding.grad.clone()

    eager = loss_and_grad()
    speed.compile_training_forward(method.model)
    compiled = loss_and_grad()
    assert torch.allclose(compiled[0], eager[0], rtol=1e-5) and torch.allclose(compiled[1], eager[1], atol=1e-5)
    from torch._dynamo.utils import counters

    frames = sum(counters["frames"].values())
    method.eval()
    with torch.no_grad():  # evaluation keeps the eager forward: nothing more is compiled
        method(batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert sum(counters["frames"].values()) == frames
