"""T5 attention: the position-bias mask built once per stack, and a direct CPU training path.

Shared bias (always on, bitwise identical). transformers' SDPA path for T5 merges the relative
position bias [1|B, H, Q, K] with the padding mask (``torch.where``) in every layer, although T5
computes the bias once per stack and shares the same tensor across its layers. With long inputs
that merge costs more than the attention itself on CPU (BoolQ-length batches: ~45% of an
evaluation pass). This backend memoises the merged mask on the bias tensor, keyed by the mask
tensor, so it lives exactly as long as that stack call's bias does and every layer after the
first reuses it. Only when the bias itself trains (model tuning's relative attention bias) is
the per-layer merge kept, so gradients accumulate exactly as before.

Direct training attention (``speed.attention=direct``, CPU only). With dropout on the attention
probabilities (T5 trains with it), torch's SDPA on CPU cannot use its fused kernel and falls
back to a composite one that upcasts query, key and value to fp32 under bf16 autocast, runs all
six attention matmuls of forward + backward in fp32 and guards the softmax against fully masked
rows (``isneginf`` + ``all``): about a third of a prompt-tuning step at the recipe batch. The
direct path computes the scores in fp32 (T5's unscaled logits are large: rounding them to bf16
would move probabilities by percents), the softmax in fp32 (the mask is finite, ``finfo.min``,
so even a fully masked row gives no NaN), dropout with ``F.dropout`` (or
``modules.dropout.bits_dropout``), and probabilities x values under the run's autocast (a bf16
matmul under ``bf16-mixed``, as every other matmul of the step): 1.23-1.27x faster prompt-tuning
steps at Small, batch 32, 256 + 100 tokens. In fp32 training it computes what SDPA's composite
kernel computes, in the same precision (within 1e-5); under bf16 it is no further from the fp32
result than SDPA under bf16 (tests/test_speed.py). Evaluation (no dropout) and other devices use
SDPA as before.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import create_position_bias_mask, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from promptscale.modules.dropout import bits_dropout

SHARED_BIAS_SDPA = "promptscale_sdpa"
DIRECT_CPU_TRAINING = "promptscale_direct"  # shared bias + the direct CPU training path
DIRECT_CPU_TRAINING_BITS = "promptscale_direct_bits"  # ... with dropout masks from random bits
BACKENDS = (SHARED_BIAS_SDPA, DIRECT_CPU_TRAINING, DIRECT_CPU_TRAINING_BITS)
_CACHE = "_promptscale_bias_masks"  # attribute on the position-bias tensor: {key: (mask, merged)}


def merged_bias_mask(
    position_bias: torch.Tensor, attention_mask: torch.Tensor | None, query: torch.Tensor, key: torch.Tensor
) -> torch.Tensor:
    """Position bias + padding/causal mask as one additive float mask [B|1, H, Q, K], once per stack.

    ``attention_mask`` is ``None`` when no row is padded (and the attention not causal): the
    bias alone is the mask. With a mask given, the merge does not depend on causality (the mask
    already encodes it).
    """
    if position_bias.requires_grad:  # the bias trains: merge per layer so its gradient accumulates as before
        return create_position_bias_mask(position_bias, attention_mask, False, query, key)
    cache = getattr(position_bias, _CACHE, None)
    if cache is None:
        cache = {}
        setattr(position_bias, _CACHE, cache)
    slot = (id(attention_mask), key.dtype)
    entry = cache.get(slot)
    if entry is None or entry[0] is not attention_mask:  # holding the mask keeps its id unique
        entry = (attention_mask, create_position_bias_mask(position_bias, attention_mask, False, query, key))
        cache[slot] = entry
    return entry[1]


def causal_without_mask(module: nn.Module, query: torch.Tensor, attention_mask: torch.Tensor | None, kwargs) -> bool:
    """Whether SDPA would apply causality itself (``is_causal``): a decoder's self-attention with no
    padding mask. Such calls keep the stock path (decoder targets are a few tokens)."""
    if attention_mask is not None or query.shape[2] <= 1:
        return False
    is_causal = kwargs.get("is_causal")
    return bool(getattr(module, "is_causal", True) if is_causal is None else is_causal)


def shared_bias_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_bias: torch.Tensor | None = None,
    *,
    direct: bool = False,
    bits: bool = False,
    **kwargs,
):
    """``sdpa_attention_forward`` with the merged bias + mask computed once per (bias, mask); with
    ``direct``, CPU training steps with attention dropout take ``direct_attention`` instead (its
    masks from ``bits_dropout`` with ``bits``)."""
    if position_bias is None or causal_without_mask(module, query, attention_mask, kwargs):
        return sdpa_attention_forward(module, query, key, value, attention_mask, position_bias=position_bias, **kwargs)
    merged = merged_bias_mask(position_bias, attention_mask, query, key)  # [B|1, H, Q, K]
    dropout = kwargs.get("dropout", 0.0)
    if direct and dropout > 0.0 and query.device.type == "cpu":
        return direct_attention(query, key, value, merged, dropout, kwargs.get("scaling"), bits), None
    # A float mask and no bias: SDPA receives exactly the merged mask the stock path would build.
    return sdpa_attention_forward(module, query, key, value, merged, position_bias=None, **kwargs)


def direct_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    bias_mask: torch.Tensor,
    dropout: float,
    scaling: float | None = None,
    bits: bool = False,
) -> torch.Tensor:
    """Attention with dropout, scores and softmax in fp32, probabilities x values in the run's precision.

    Args:
        query: [B, H, Q, D]; key, value: [B, H, K, D] (bf16 under bf16 autocast).
        bias_mask: Additive position bias + mask [B|1, H, Q, K] (fp32).
        dropout: Dropout probability of the attention probabilities.
        scaling: Score scale (T5: 1.0, its logits are unscaled); ``None``: 1 / sqrt(D).
        bits: Dropout masks from ``modules.dropout.bits_dropout`` instead of ``F.dropout``.

    Returns:
        The attention output [B, Q, H, D], as transformers' backends return it.
    """
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    with torch.autocast(query.device.type, enabled=False):
        scores = torch.matmul(query.float(), key.float().transpose(-1, -2))  # [B, H, Q, K] fp32
    if scale != 1.0:
        scores.mul_(scale)  # in place: the matmul's backward needs its inputs, not its output
    probs = torch.softmax(scores.add_(bias_mask), dim=-1)  # [B, H, Q, K] fp32; no second score-sized tensor
    probs = bits_dropout(probs, dropout) if bits else F.dropout(probs, dropout)
    out = torch.matmul(probs.to(value.dtype), value)  # [B, H, Q, D]; bf16 under bf16 autocast
    return out.transpose(1, 2).contiguous()  # [B, Q, H, D]


def use_shared_bias_attention(model: nn.Module, direct: bool = False, bits: bool = False) -> bool:
    """Switches a T5 on plain ``sdpa`` (or on one of ours) to the shared-bias backend; with ``direct``,
    to the one that also takes the direct CPU training path (``bits``: its dropout masks from random
    bits). Other backends (prefix tuning's) are left alone; returns whether the model now runs one of ours."""
    config = model.config
    if config._attn_implementation not in ("sdpa", *BACKENDS):
        return False
    AttentionInterface.register(SHARED_BIAS_SDPA, shared_bias_attention)
    AttentionInterface.register(DIRECT_CPU_TRAINING, functools.partial(shared_bias_attention, direct=True))
    AttentionInterface.register(
        DIRECT_CPU_TRAINING_BITS, functools.partial(shared_bias_attention, direct=True, bits=True)
    )
    for name in BACKENDS:  # masks as sdpa's
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    wanted = (DIRECT_CPU_TRAINING_BITS if bits else DIRECT_CPU_TRAINING) if direct else SHARED_BIAS_SDPA
    if config._attn_implementation != wanted:
        model.set_attn_implementation(wanted)
    return True
