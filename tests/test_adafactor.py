"""``optim.adafactor.Adafactor`` against HF's Adafactor as the recipes configured it, and torch's.

Equality is checked per tensor, relative to the tensor's scale: ``|ours - hf| <= 1e-6 (|hf| +
max |hf|)``. A purely elementwise relative bound cannot hold for any implementation that is not
bitwise HF's: updates are of size ``lr`` and an fp32 rounding of one (1e-7 of ``lr``) is a large
relative error on an element that an update has brought close to zero. By this measure HF's own
fp32 result is ~2e-7 from the float64 one. The float64 test bounds the displacement from the
initial values, so the update itself is checked at 1e-6 even where ``lr`` is small next to the
weights.
"""

import copy
import io

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration
from transformers.optimization import Adafactor as HFAdafactor

from promptscale.optim import adafactor as module
from promptscale.optim.adafactor import Adafactor

pytestmark = pytest.mark.usefixtures("one_thread")

RTOL = 1e-6
STEPS = 10
CONFIGS = [(1e-3, 0.0), (1e-3, 1e-2), (0.3, 0.0), (0.3, 1e-5)]  # (lr, per-step weight decay)
# Vectors, a scalar-like [1], a 0-d scalar, matrices, 3-D, a prefix-tuning-like [L, 2, H, P, D]
# and 5 x [32, 32]: more than the 64 x 64 scratch holds, so that bucket runs in two chunks.
SHAPES = [(7,), (1,), (), (5, 3), (3, 4, 6), (2, 2, 3, 4, 5), (64, 16), (16, 64), (64, 64)] + [(32, 32)] * 5
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def hf_adafactor(params, lr: float, weight_decay: float) -> HFAdafactor:
    """The optimizer the recipes trained with (HF multiplies weight decay by lr, hence / lr)."""
    return HFAdafactor(
        params,
        lr=lr,
        weight_decay=weight_decay / lr,
        decay_rate=-0.8,
        clip_threshold=1.0,
        beta1=None,
        scale_parameter=False,
        relative_step=False,
        warmup_init=False,
    )


def random_params(dtype=torch.float32, device="cpu", seed=0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen).to(device, dtype)) for s in SHAPES]


def clone(params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def random_grads(params, gen: torch.Generator) -> list[torch.Tensor]:
    """Gradients whose scale jumps by decades between tensors and steps (second moments lag)."""
    out = []
    for p in params:
        scale = 10.0 ** int(torch.randint(-3, 3, (), generator=gen))
        out.append((torch.randn(p.shape, generator=gen) * scale).to(p.device, p.dtype))
    return out


def set_grads(params, grads) -> None:
    for p, g in zip(params, grads):
        p.grad = g.clone()


def assert_equivalent(ours: torch.Tensor, ref: torch.Tensor, rtol: float = RTOL, what: str = "") -> None:
    """``|ours - ref| <= rtol (|ref| + max |ref|)`` elementwise (see the module docstring)."""
    scale = ref.abs().max().item() if ref.numel() else 0.0
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=rtol * scale, msg=lambda m: f"{what}: {m}")


def run_pair(ours, theirs, a, b, steps=STEPS, seed=1, grad_for=None, check=None) -> None:
    """Steps both optimizers on identical gradients, calling ``check(step)`` after each step."""
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        grads = random_grads(a, gen) if grad_for is None else grad_for(step)
        set_grads(a, grads)
        set_grads(b, grads)
        ours.step()
        theirs.step()
        if check is not None:
            check(step)


# -- equal to HF's ----------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("lr,weight_decay", CONFIGS)
def test_matches_hf_on_random_tensors(lr, weight_decay, foreach, device):
    a, b = random_params(device=device), random_params(device=device)
    ours, hf = Adafactor(a, lr=lr, weight_decay=weight_decay, foreach=foreach), hf_adafactor(b, lr, weight_decay)

    def check(step):
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equivalent(x.detach(), y.detach(), what=f"step {step} param {SHAPES[i]}")
            for key in ("exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq"):
                if key in hf.state[y]:
                    assert_equivalent(ours.state[x][key], hf.state[y][key], what=f"step {step} {key}")
            assert ours.state[x]["step"] == hf.state[y]["step"] == step + 1

    run_pair(ours, hf, a, b, check=check)


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("lr,weight_decay", CONFIGS)
def test_update_matches_hf_in_float64(lr, weight_decay, foreach):
    """Displacement from the initial values within 1e-6: the update itself, even at lr 1e-3."""
    a, b = random_params(torch.float64), random_params(torch.float64)
    start = [p.detach().clone() for p in a]
    ours, hf = Adafactor(a, lr=lr, weight_decay=weight_decay, foreach=foreach), hf_adafactor(b, lr, weight_decay)

    def check(step):
        for x, y, x0 in zip(a, b, start):
            assert_equivalent(x.detach() - x0, y.detach() - x0, what=f"step {step}")

    run_pair(ours, hf, a, b, check=check)


def test_reference_path_is_hf_bitwise():
    """``foreach=False`` performs HF's operations in HF's order: bit-identical results."""
    a, b = random_params(), random_params()
    ours, hf = Adafactor(a, lr=0.3, weight_decay=1e-2, foreach=False), hf_adafactor(b, 0.3, 1e-2)
    run_pair(
        ours, hf, a, b, check=lambda step: [torch.testing.assert_close(x, y, rtol=0, atol=0) for x, y in zip(a, b)]
    )


def tiny_t5() -> T5ForConditionalGeneration:
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=128,
        d_model=32,
        d_ff=64,
        d_kv=8,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5ForConditionalGeneration(config)


@pytest.mark.parametrize("lr,weight_decay", CONFIGS)
def test_matches_hf_on_tiny_t5(lr, weight_decay):
    """Real T5 gradients (unused embedding rows are zero) from the HF side, copied to ours."""
    hf_model = tiny_t5()
    our_model = copy.deepcopy(hf_model)
    a, b = list(our_model.parameters()), list(hf_model.parameters())
    ours, hf = Adafactor(a, lr=lr, weight_decay=weight_decay), hf_adafactor(b, lr, weight_decay)
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randint(2, 64, (4, 12), generator=gen)  # [B, T]: half the vocabulary unused
    labels = torch.randint(2, 64, (4, 5), generator=gen)  # [B, L]

    def grads(step):
        hf.zero_grad(set_to_none=True)
        hf_model(input_ids=inputs, labels=labels).loss.backward()
        out = [p.grad.clone() for p in b]
        assert all(torch.isfinite(g).all() for g in out)
        return out

    def check(step):
        for (name, x), y in zip(our_model.named_parameters(), b):
            assert_equivalent(x.detach(), y.detach(), what=f"step {step} {name}")

    run_pair(ours, hf, a, b, grad_for=grads, check=check)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("foreach", [True, False])
def test_low_precision_like_hf(dtype, foreach):
    """fp32 state and update on an fp32 copy, as HF: equal up to one rounding to ``dtype``."""
    a, b = random_params(dtype), random_params(dtype)
    ours, hf = Adafactor(a, lr=0.3, weight_decay=1e-2, foreach=foreach), hf_adafactor(b, 0.3, 1e-2)

    def check(step):
        for x, y in zip(a, b):
            assert x.dtype == dtype
            rtol = torch.finfo(dtype).eps  # an fp32 difference of 1e-7 may round either way
            assert_equivalent(x.detach().float(), y.detach().float(), rtol=rtol, what=f"step {step}")
            for key in ("exp_avg_sq_row", "exp_avg_sq"):
                if key in hf.state[y]:
                    assert ours.state[x][key].dtype == torch.float32
                    assert_equivalent(ours.state[x][key], hf.state[y][key], rtol=rtol)

    run_pair(ours, hf, a, b, check=check)


# -- the two paths, resume, edges ---------------------------------------------------------------
def test_foreach_matches_reference_with_missing_grads():
    """Parameters skipped on some steps have other step counts: they land in other buckets."""
    a, b = random_params(), random_params()
    fast, ref = Adafactor(a, lr=0.3, weight_decay=1e-2), Adafactor(b, lr=0.3, weight_decay=1e-2, foreach=False)
    gen = torch.Generator().manual_seed(2)
    for step in range(STEPS):
        grads = random_grads(a, gen)
        for i, g in enumerate(grads):
            skip = (i + step) % 3 == 0
            a[i].grad = None if skip else g.clone()
            b[i].grad = None if skip else g.clone()
        fast.step()
        ref.step()
        for x, y in zip(a, b):
            assert_equivalent(x.detach(), y.detach(), what=f"step {step}")
            assert fast.state[x].get("step") == ref.state[y].get("step")


def test_accelerator_fill_matches_cpu_fill(monkeypatch):
    """The stack + multiply variant of ``fill`` (used off CPU) computes the same products."""
    a, b = random_params(), random_params()
    per_tensor, stacked = Adafactor(a, lr=0.3), Adafactor(b, lr=0.3)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        grads = random_grads(a, gen)
        set_grads(a, grads)
        set_grads(b, grads)
        per_tensor.step()
        with monkeypatch.context() as patch:
            patch.setattr(module, "per_tensor_fill", lambda device: False)
            stacked.step()
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("foreach", [True, False])
def test_state_dict_resume_continues_identically(foreach):
    a = random_params()
    opt = Adafactor(a, lr=0.3, weight_decay=1e-2, foreach=foreach)
    gen = torch.Generator().manual_seed(4)
    grads = [random_grads(a, gen) for _ in range(STEPS)]
    for g in grads[:4]:
        set_grads(a, g)
        opt.step()
    buffer = io.BytesIO()
    torch.save({"params": [p.detach().clone() for p in a], "optimizer": opt.state_dict()}, buffer)
    for g in grads[4:]:
        set_grads(a, g)
        opt.step()

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    b = [torch.nn.Parameter(p) for p in saved["params"]]
    resumed = Adafactor(b, lr=1.0, foreach=foreach)  # hyperparameters come from the state dict
    resumed.load_state_dict(saved["optimizer"])
    assert resumed.param_groups[0]["lr"] == 0.3 and resumed.param_groups[0]["weight_decay"] == 1e-2
    for g in grads[4:]:
        set_grads(b, g)
        resumed.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_loads_hf_state_and_continues_like_hf():
    """A checkpoint written with HF's optimizer resumes here with the same semantics."""
    lr, weight_decay = 0.3, 1e-2
    a = random_params()
    hf = hf_adafactor(a, lr, weight_decay)
    gen = torch.Generator().manual_seed(5)
    for _ in range(4):
        set_grads(a, random_grads(a, gen))
        hf.step()
    b = clone(a)
    ours = Adafactor(b, lr=1.0)
    ours.load_state_dict(copy.deepcopy(hf.state_dict()))
    group = ours.param_groups[0]
    assert group["lr"] == lr and group["decay_rate"] == 0.8 and group["foreach"] is True
    assert group["weight_decay"] == pytest.approx(weight_decay, rel=1e-12)
    assert "RMS" not in ours.state[b[3]] and ours.state[b[3]]["step"] == 4

    def check(step):
        for x, y in zip(b, a):
            assert_equivalent(x.detach(), y.detach(), what=f"step {step}")

    run_pair(ours, hf, b, a, steps=6, check=check)


def test_hf_state_under_a_schedule_keeps_the_configured_decay():
    """HF decays by weight_decay * lr(t); the configured per-step decay used the base rate."""
    p = random_params()[:2]
    hf = hf_adafactor(p, 1e-3, 1e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(hf, lambda step: 0.5)  # records initial_lr
    assert scheduler.get_last_lr() == [5e-4]
    ours = Adafactor(clone(p), lr=1.0)
    ours.load_state_dict(hf.state_dict())
    assert ours.param_groups[0]["weight_decay"] == pytest.approx(1e-5, rel=1e-12)
    assert ours.param_groups[0]["lr"] == 5e-4


def test_refuses_hf_state_it_cannot_represent():
    p = random_params()[:2]
    state = HFAdafactor(p, lr=None).state_dict()  # relative step and parameter scaling
    with pytest.raises(ValueError, match="no equivalent"):
        Adafactor(p, lr=1e-3).load_state_dict(state)


def test_closure_runs_with_gradients_and_returns_its_loss():
    model = torch.nn.Linear(4, 3)
    opt = Adafactor(model.parameters(), lr=1e-3)
    x = torch.randn(5, 4)
    before = model.weight.detach().clone()

    def closure():
        opt.zero_grad()
        loss = model(x).square().mean()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss is not None and loss.requires_grad
    assert not torch.equal(model.weight, before)


@pytest.mark.parametrize("foreach", [True, False])
def test_empty_parameters_are_harmless(foreach):
    params = [torch.nn.Parameter(torch.ones(s)) for s in [(0, 5), (5, 0), (0,), (2, 0, 3), (3, 4)]]
    for p in params:
        p.grad = torch.ones_like(p)
    opt = Adafactor(params, lr=0.1, foreach=foreach)
    opt.step()
    assert [tuple(p.shape) for p in params[:4]] == [(0, 5), (5, 0), (0,), (2, 0, 3)]
    assert torch.isfinite(params[4]).all() and opt.state[params[0]]["step"] == 1


def test_refusals():
    with pytest.raises(ValueError, match="negated"):
        Adafactor([torch.nn.Parameter(torch.ones(2))], lr=1e-3, decay_rate=-0.8)  # HF's convention
    emb = torch.nn.Embedding(10, 4, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        Adafactor(emb.parameters(), lr=1e-3).step()


# -- torch.optim.Adafactor ----------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(torch.optim, "Adafactor"), reason="torch.optim.Adafactor needs torch >= 2.5")
@pytest.mark.parametrize("lr,weight_decay", CONFIGS)
def test_torch_adafactor_needs_a_workaround_to_match(lr, weight_decay):
    """torch's always scales the step: alpha_t = max(eps[1], RMS(p)) * min(lr, t ** -0.5).

    Configured plainly (lr, eps=(1e-15, 1e-3), weight_decay per lr) the update is multiplied by
    the parameters' RMS, so it differs by far more than the tolerance. It matches only through a
    workaround: eps[1] = E larger than any parameter's RMS and lr / E in place of lr, so that
    alpha_t = E * lr / E = lr while t < (E / lr)^2 (weight decay, applied as lr * weight_decay,
    becomes weight_decay * E / lr). Even so it differs for bf16 / fp16 parameters (its state and
    update stay in the parameter's dtype), reads every parameter's norm back to the host on every
    step, and materialises each factored second moment; ``Adafactor`` here is used instead.
    """
    big = 1e6
    plain_params, trick_params, hf_params = random_params(), random_params(), random_params()
    plain = torch.optim.Adafactor(plain_params, lr=lr, eps=(1e-15, 1e-3), weight_decay=weight_decay / lr, d=1.0)
    trick = torch.optim.Adafactor(
        trick_params, lr=lr / big, eps=(1e-15, big), weight_decay=weight_decay * big / lr, beta2_decay=-0.8, d=1.0
    )
    hf = hf_adafactor(hf_params, lr, weight_decay)
    gen = torch.Generator().manual_seed(6)
    worst_plain = 0.0
    for step in range(STEPS):
        grads = random_grads(hf_params, gen)
        for params in (plain_params, trick_params, hf_params):
            set_grads(params, grads)
        for opt in (plain, trick, hf):
            opt.step()
        for x, y, z in zip(plain_params, trick_params, hf_params):
            assert_equivalent(y.detach(), z.detach(), what=f"workaround, step {step}")
            worst_plain = max(worst_plain, ((x - z).abs().max() / z.abs().max()).item())
    assert worst_plain > 1e-4  # >100x the tolerance (3e-4 at lr 1e-3, 0.17 at lr 0.3 here)

    low = [torch.nn.Parameter(torch.randn(8, 4, dtype=torch.bfloat16))]
    low[0].grad = torch.randn(8, 4, dtype=torch.bfloat16)
    bf16 = torch.optim.Adafactor(low, lr=lr / big, eps=(1e-15, big))
    bf16.step()
    assert bf16.state[low[0]]["row_var"].dtype == torch.bfloat16  # HF's and ours: float32
