"""Adafactor as the T5 recipes run it, vectorised over parameters of the same shape.

The recipes have trained with ``transformers.optimization.Adafactor`` configured as

    Adafactor(params, lr=lr, weight_decay=w / lr, decay_rate=-0.8, clip_threshold=1.0, beta1=None,
              scale_parameter=False, relative_step=False, warmup_init=False)

whose per-parameter Python loop (about twenty operations and several full-size temporaries per
tensor) is about half of a small-batch model-tuning step on CPU. ``Adafactor`` here computes the
same update (it is checked against HF's within 1e-6 relative over ten steps) with fewer passes
over memory and no full-size allocations:

* Factored tensors of one shape are processed together: their squared gradients go into one
  reusable buffer ``[n, ..., R, C]`` whose row and column means are one batched reduction each.
* The update's RMS (for clipping) is ``sum_i r_i^2 sum_j g_ij^2 c_j^2``: one batched matrix-vector
  product over that buffer instead of materialising ``r c^T``, the update, and its norm.
* The update is written into the same buffer and applied with one ``_foreach_addcmul_``.

The update of one parameter ``p`` with gradient ``g`` at step ``t`` (1-based; HF's semantics):

    beta_t = 1 - t ** -decay_rate
    factored (ndim >= 2, the last two dims [R, C]; leading dims are batched):
        row = beta_t * row + (1 - beta_t) * mean_C(g^2 + eps[0])        # [..., R]
        col = beta_t * col + (1 - beta_t) * mean_R(g^2 + eps[0])        # [..., C]
        u = g * rsqrt(row / mean_R(row))[..., :, None] * rsqrt(col)[..., None, :]
    unfactored (ndim <= 1):
        v = beta_t * v + (1 - beta_t) * (g^2 + eps[0]);   u = g * rsqrt(v)
    u = lr * u / max(1, rms(u) / clip_threshold)          # rms over the whole tensor
    p = p - weight_decay * p - u                          # decay of the pre-update value

Why this module is long: one optimizer with two code paths (the vectorised one and the plain
per-parameter reference it is tested against) and the translation of HF optimizer states, kept
together so the paths cannot drift apart.

No parameter scaling, no relative step, no first moment. The state uses HF's keys
(``step``, ``exp_avg_sq_row``, ``exp_avg_sq_col``, ``exp_avg_sq``), so an optimizer state saved
by the HF optimizer loads here (``load_state_dict`` translates its hyperparameters).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import astuple, dataclass

import torch
from torch import Tensor

ROW, COL, VAR = "exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq"
LOW_PRECISION = (torch.float16, torch.bfloat16)
HF_ONLY_KEYS = ("beta1", "scale_parameter", "relative_step", "warmup_init")


class Adafactor(torch.optim.Optimizer):
    """Adafactor with T5X's per-step weight decay, equal to the HF configuration the recipes used.

    Mapping to ``transformers.optimization.Adafactor`` (same ``lr``, constant):

    * ``weight_decay=w`` here is HF's ``weight_decay=w / lr``: HF multiplies its weight decay by
      the learning rate (``p -= hf_weight_decay * lr * p``), T5X and this class do not
      (``p -= w * p``). Both decay the value before the step's update is subtracted. Under a
      learning-rate schedule the two differ: HF's decay follows ``lr(t)``, this one stays ``w``.
    * ``decay_rate=0.8`` here is HF's ``decay_rate=-0.8`` (the sign is folded in:
      ``beta2_t = 1 - t ** -decay_rate``); a negative value is refused, to catch HF's convention.
    * Always ``beta1=None, scale_parameter=False, relative_step=False, warmup_init=False``.

    Low-precision (bf16 / fp16) parameters are handled as HF handles them: the state is fp32,
    the update is computed in fp32 on an fp32 copy of the parameter and copied back. Note that
    ``torch.optim.Optimizer.load_state_dict`` casts floating state to the parameter's dtype, so a
    resumed low-precision parameter's state has been rounded through it (as with HF's).

    The vectorised path keeps one scratch buffer per device and compute dtype, as large as the
    largest factored parameter (HF allocates two to three such temporaries per step); it is not
    part of the state dict.

    Args:
        params: Parameters or parameter groups.
        lr: Learning rate (constant in the recipes).
        weight_decay: Decay per step, not multiplied by ``lr`` (T5X's ``weight_decay_rate``).
        decay_rate: Second-moment decay exponent, positive (T5X: 0.8).
        clip_threshold: Updates are scaled down to this RMS at most (per tensor).
        eps: ``eps[0]`` is added to the squared gradient; ``eps[1]`` (HF's parameter-scale floor)
            is unused without parameter scaling and kept for HF's signature.
        foreach: Vectorised path (grouped by shape, dtype and device); ``False`` runs the plain
            per-parameter reference loop (same math, HF's order of operations).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float,
        weight_decay: float = 0.0,
        decay_rate: float = 0.8,
        clip_threshold: float = 1.0,
        eps: tuple[float, float] = (1e-30, 1e-3),
        foreach: bool = True,
    ) -> None:
        check_hyperparameters(lr, weight_decay, decay_rate, clip_threshold, eps)
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "decay_rate": decay_rate,
            "clip_threshold": clip_threshold,
            "eps": tuple(eps),
            "foreach": foreach,
        }
        super().__init__(params, defaults)
        self._buffers: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._buffers = {}  # scratch is never pickled
        for group in self.param_groups:
            group.setdefault("foreach", True)

    def load_state_dict(self, state_dict: dict) -> None:
        """Loads a state dict of this class or of HF's Adafactor (translated, see ``from_hf_state``)."""
        if any("scale_parameter" in group for group in state_dict["param_groups"]):
            state_dict = from_hf_state(state_dict, foreach=self.defaults["foreach"])
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter that has a gradient.

        Args:
            closure: Re-evaluates the model and returns the loss (run with gradients enabled).

        Returns:
            The closure's loss, or ``None`` without a closure.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                self._prepare_state(p)
            hyper = Hyper(
                group["lr"], group["weight_decay"], group["decay_rate"], group["clip_threshold"], group["eps"][0]
            )
            if group["foreach"]:
                self._foreach_step(params, hyper)
            else:
                for p in params:
                    reference_update(p, p.grad, self.state[p], hyper)
        return loss

    # -- state ------------------------------------------------------------------------------
    def _prepare_state(self, p: Tensor) -> None:
        """Refuses unsupported gradients; creates the state or moves it to the compute dtype."""
        if p.grad.is_sparse:
            raise RuntimeError("Adafactor does not support sparse gradients.")
        if p.is_complex():
            raise RuntimeError("Adafactor does not support complex parameters.")
        state, dtype = self.state[p], compute_dtype(p)
        if not state:
            state["step"] = 0
            shape = p.shape
            if factored(shape):
                state[ROW] = torch.zeros(shape[:-1], dtype=dtype, device=p.device)  # [..., R]
                state[COL] = torch.zeros(shape[:-2] + shape[-1:], dtype=dtype, device=p.device)  # [..., C]
            else:
                state[VAR] = torch.zeros(shape, dtype=dtype, device=p.device)
        for key in (ROW, COL, VAR):
            if key in state and state[key].dtype != dtype:  # e.g. rounded to bf16 by load_state_dict
                state[key] = state[key].to(dtype)

    # -- vectorised path --------------------------------------------------------------------
    def _foreach_step(self, params: list[Tensor], hyper: Hyper) -> None:
        """Updates ``params`` in buckets of equal device, dtype, step and (when factored) shape.

        Factored buckets are cut into chunks that fit the scratch buffer, which is as large as
        the largest factored parameter on its device (so that one always fits alone).
        """
        buckets: dict[tuple, list[Tensor]] = defaultdict(list)
        capacity: dict[tuple[torch.device, torch.dtype], int] = defaultdict(int)
        for p in params:
            shape = tuple(p.shape) if factored(p.shape) else None
            buckets[(shape, self.state[p]["step"], p.device, p.dtype)].append(p)
            if shape is not None:
                key = (p.device, compute_dtype(p))
                capacity[key] = max(capacity[key], p.numel())
        for (shape, step, device, _), bucket in buckets.items():
            for p in bucket:
                self.state[p]["step"] += 1
            if shape is None:
                self._apply(bucket, step + 1, None, hyper)
                continue
            key = (device, compute_dtype(bucket[0]))
            buffer = self._buffer(*key, capacity[key])
            per_chunk = max(1, capacity[key] // max(1, math.prod(shape)))
            for start in range(0, len(bucket), per_chunk):
                self._apply(bucket[start : start + per_chunk], step + 1, buffer, hyper)

    def _apply(self, params: list[Tensor], step: int, buffer: Tensor | None, hyper: Hyper) -> None:
        """Runs one chunk in the compute dtype and copies low-precision results back."""
        dtype = compute_dtype(params[0])
        work = params if params[0].dtype == dtype else [p.to(dtype) for p in params]
        grads = [p.grad if p.grad.dtype == dtype else p.grad.to(dtype) for p in params]
        states = [self.state[p] for p in params]
        if buffer is None:
            unfactored_update(work, grads, [s[VAR] for s in states], step, hyper)
        else:
            rows, cols = [s[ROW] for s in states], [s[COL] for s in states]
            factored_update(work, grads, rows, cols, buffer, step, hyper)
        if work is not params:
            torch._foreach_copy_(params, work)

    def _buffer(self, device: torch.device, dtype: torch.dtype, numel: int) -> Tensor:
        """The reusable scratch of ``numel`` elements (grown, never shrunk)."""
        buffer = self._buffers.get((device, dtype))
        if buffer is None or buffer.numel() < numel:
            buffer = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[(device, dtype)] = buffer
        return buffer


# -- the math ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hyper:
    """One parameter group's settings, as every update function takes them."""

    lr: float
    weight_decay: float
    decay_rate: float
    clip_threshold: float
    eps: float  # added to the squared gradient (HF's eps[0])


def factored(shape: Sequence[int]) -> bool:
    """Whether the second moment is factored (HF: every tensor with two dims or more)."""
    return len(shape) >= 2


def compute_dtype(p: Tensor) -> torch.dtype:
    """The dtype of the state and of the update: fp32 for bf16 / fp16 parameters (as HF)."""
    return torch.float32 if p.dtype in LOW_PRECISION else p.dtype


def beta2(step: int, decay_rate: float) -> float:
    """Second-moment decay at 1-based ``step``: ``1 - step ** -decay_rate`` (0 at step 1)."""
    return 1.0 - math.pow(step, -decay_rate)


def reference_update(
    p: Tensor,
    grad: Tensor,
    state: dict,
    hyper: Hyper,
) -> None:
    """One parameter's update in HF's order of operations (the ``foreach=False`` path).

    Args:
        p: The parameter, updated in place.
        grad: Its gradient (same shape).
        state: Its state (``step`` and the second-moment tensors), updated in place.
    """
    lr, weight_decay, decay_rate, clip_threshold, eps = astuple(hyper)
    dtype = compute_dtype(p)
    grad = grad.to(dtype)
    work = p if p.dtype == dtype else p.to(dtype)
    state["step"] += 1
    beta = beta2(state["step"], decay_rate)
    squared = grad.square().add_(eps)  # [*shape]
    if factored(grad.shape):
        row, col = state[ROW], state[COL]  # [..., R], [..., C]
        row.mul_(beta).add_(squared.mean(dim=-1), alpha=1.0 - beta)
        col.mul_(beta).add_(squared.mean(dim=-2), alpha=1.0 - beta)
        r = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)  # [..., R, 1]
        c = col.unsqueeze(-2).rsqrt()  # [..., 1, C]
        update = torch.mul(r, c).mul_(grad)  # [..., R, C]
    else:
        second = state[VAR]
        second.mul_(beta).add_(squared, alpha=1.0 - beta)
        update = second.rsqrt().mul_(grad)
    rms = update.norm(2) / (update.numel() ** 0.5)
    update.div_((rms / clip_threshold).clamp_(min=1.0)).mul_(lr)
    if weight_decay != 0:
        work.add_(work, alpha=-weight_decay)
    work.sub_(update)
    if work is not p:
        p.copy_(work)


def factored_update(
    params: list[Tensor],
    grads: list[Tensor],
    rows: list[Tensor],
    cols: list[Tensor],
    buffer: Tensor,
    step: int,
    hyper: Hyper,
) -> None:
    """Updates ``n`` parameters of one shape ``[*B, R, C]`` with a handful of batched operations.

    Args:
        params: The parameters (compute dtype), updated in place.
        grads: Their gradients (compute dtype).
        rows, cols: Their second-moment factors ``[*B, R]`` and ``[*B, C]``, updated in place.
        buffer: Scratch of at least ``n * numel`` elements (its contents are overwritten).
        step: The 1-based step shared by the chunk.
    """
    lr, weight_decay, decay_rate, clip_threshold, eps = astuple(hyper)
    n, shape = len(params), params[0].shape
    numel, (height, width) = math.prod(shape), shape[-2:]
    lead = math.prod(shape[:-2])  # leading dims, batched like HF's
    m = n * lead  # slices: parameters times leading dims
    scratch = buffer[: n * numel].view(n, *shape)  # [n, *B, R, C]
    flat = scratch.view(m, height, width)  # [m, R, C]

    fill(scratch, grads)  # g^2
    beta = beta2(step, decay_rate)
    # mean(g^2) + eps equals HF's mean(g^2 + eps) up to rounding, without another full pass.
    row_mean = flat.mean(dim=-1).add_(eps)  # [m, R]
    col_mean = flat.mean(dim=-2).add_(eps)  # [m, C]
    torch._foreach_mul_(rows, beta)
    torch._foreach_add_(rows, list(row_mean.view(n, *shape[:-1]).unbind(0)), alpha=1.0 - beta)
    torch._foreach_mul_(cols, beta)
    torch._foreach_add_(cols, list(col_mean.view(n, *shape[:-2], width).unbind(0)), alpha=1.0 - beta)

    row = torch.stack(rows).view(m, height)  # [m, R]
    r = (row / row.mean(dim=-1, keepdim=True)).rsqrt_()  # [m, R]
    c = torch.stack(cols).view(m, width).rsqrt_()  # [m, C]
    # sum_ij (g_ij r_i c_j)^2 = sum_i r_i^2 (g^2 c^2)_i: one matrix-vector pass, no [R, C] temporary.
    per_row = torch.bmm(flat, c.square().unsqueeze(-1)).squeeze(-1)  # [m, R]
    sum_sq = per_row.mul_(r.square()).sum(dim=-1).view(n, lead).sum(dim=-1)  # [n]
    rms = sum_sq.div_(numel).sqrt_()  # [n]
    scale = lr / (rms / clip_threshold).clamp_(min=1.0)  # [n]

    fill(scratch, grads, r.view(n, *shape[:-1], 1))  # g * r, [n, *B, R, C]
    c_scaled = (c.view(n, lead, width) * scale.view(n, 1, 1)).view(n, *shape[:-2], 1, width)  # [n, *B, 1, C]
    if weight_decay != 0:
        torch._foreach_add_(params, params, alpha=-weight_decay)
    torch._foreach_addcmul_(params, list(scratch.unbind(0)), list(c_scaled.unbind(0)), value=-1.0)


def fill(out: Tensor, grads: list[Tensor], factors: Tensor | None = None) -> None:
    """Writes ``grads[k] * factors[k]`` (``grads[k]^2`` without factors) into ``out[k]``.

    Args:
        out: ``[n, *shape]``, contiguous (a view of the scratch buffer).
        grads: ``n`` tensors of ``shape``.
        factors: ``[n, ...]`` broadcastable to ``[n, *shape]``, or ``None`` to square.
    """
    if per_tensor_fill(out.device):
        for g, f, o in zip(grads, grads if factors is None else factors.unbind(0), out.unbind(0)):
            torch.mul(g, f, out=o)
        return
    torch.stack(grads, out=out)
    out.mul_(out if factors is None else factors)


def per_tensor_fill(device: torch.device) -> bool:
    """Whether ``fill`` runs one ``torch.mul(..., out=)`` per tensor rather than stack + multiply.

    On CPU the per-tensor form reads each gradient once and writes the buffer once (dispatch
    costs microseconds, a pass over memory milliseconds); stacking first would add a pass. On
    accelerators, where a launch costs more than bandwidth, two launches per chunk win.
    """
    return device.type == "cpu"


def unfactored_update(
    params: list[Tensor],
    grads: list[Tensor],
    variances: list[Tensor],
    step: int,
    hyper: Hyper,
) -> None:
    """Updates vectors and scalars (any shapes, one step) with foreach operations, in HF's order.

    These are layer norms and biases: small, so the temporaries cost nothing.
    """
    lr, weight_decay, decay_rate, clip_threshold, eps = astuple(hyper)
    beta = beta2(step, decay_rate)
    squared = torch._foreach_mul(grads, grads)
    torch._foreach_add_(squared, eps)
    torch._foreach_mul_(variances, beta)
    torch._foreach_add_(variances, squared, alpha=1.0 - beta)
    updates = torch._foreach_rsqrt(variances)
    torch._foreach_mul_(updates, grads)
    norms = torch.stack(torch._foreach_norm(updates))  # [n]
    roots = torch.tensor([u.numel() ** 0.5 for u in updates], dtype=norms.dtype, device=norms.device)  # [n]
    denominators = (norms / roots / clip_threshold).clamp_(min=1.0)  # [n]
    torch._foreach_div_(updates, list(denominators.unbind(0)))
    torch._foreach_mul_(updates, lr)
    if weight_decay != 0:
        torch._foreach_add_(params, params, alpha=-weight_decay)
    torch._foreach_sub_(params, updates)


# -- configuration ----------------------------------------------------------------------------
def check_hyperparameters(
    lr: float, weight_decay: float, decay_rate: float, clip_threshold: float, eps: Sequence[float]
) -> None:
    """Refuses values that would silently train something else (e.g. HF's negative decay_rate)."""
    if not lr >= 0:
        raise ValueError(f"Adafactor lr must be >= 0, got {lr}")
    if not weight_decay >= 0:
        raise ValueError(f"Adafactor weight_decay must be >= 0, got {weight_decay}")
    if not decay_rate > 0:
        raise ValueError(
            f"Adafactor decay_rate must be positive (beta2_t = 1 - t ** -decay_rate), got {decay_rate}; "
            "HF's Adafactor takes it negated (-0.8)"
        )
    if not clip_threshold > 0:
        raise ValueError(f"Adafactor clip_threshold must be positive, got {clip_threshold}")
    if len(eps) != 2 or not eps[0] >= 0:
        raise ValueError(f"Adafactor eps must be two numbers, eps[0] >= 0, got {eps}")


def from_hf_state(state_dict: dict, foreach: bool = True) -> dict:
    """Translates a state dict of HF's Adafactor (configured as the recipes did) to this class.

    Only HF's configuration without parameter scaling, relative step or first moment has an
    equivalent; anything else is refused rather than resumed with different semantics. The
    per-step decay is HF's ``weight_decay`` times the base rate (``initial_lr``, which an LR
    scheduler records, else ``lr``): the recipes passed ``weight_decay / lr`` with the base rate.
    """
    groups = []
    for group in state_dict["param_groups"]:
        if group.get("scale_parameter") or group.get("relative_step") or group.get("warmup_init"):
            raise ValueError("HF Adafactor state with scale_parameter / relative_step / warmup_init has no equivalent")
        if group.get("beta1") is not None or group.get("lr") is None:
            raise ValueError("HF Adafactor state with beta1 or without lr has no equivalent")
        new = {k: v for k, v in group.items() if k not in HF_ONLY_KEYS}
        new["weight_decay"] = group["weight_decay"] * group.get("initial_lr", group["lr"])
        new["decay_rate"] = -group["decay_rate"]
        new["eps"] = tuple(group["eps"])
        new["foreach"] = foreach
        groups.append(new)
    state = {k: {key: v for key, v in s.items() if key != "RMS"} for k, s in state_dict["state"].items()}
    return {"state": state, "param_groups": groups}
