"""T5 attention with the position-bias mask built once per stack, not once per layer.

transformers' SDPA path for T5 merges the relative position bias [1|B, H, Q, K] with the padding
mask (``torch.where``) in every layer, although T5 computes the bias once per stack and shares
the same tensor across its layers. With long inputs that merge costs more than the attention
itself on CPU (BoolQ-length batches: ~45% of an evaluation pass). This backend memoises the
merged mask on the bias tensor, keyed by the mask tensor, so it lives exactly as long as that
stack call's bias does and every layer after the first reuses it. The merged values, and so the
outputs, are identical; only when the bias itself trains (model tuning's relative attention bias)
is the per-layer merge kept, so gradients accumulate exactly as before.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import create_position_bias_mask, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

SHARED_BIAS_SDPA = "promptscale_sdpa"
_CACHE = "_promptscale_bias_masks"  # attribute on the position-bias tensor: {key: (mask, merged)}


def shared_bias_sdpa(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_bias: torch.Tensor | None = None,
    **kwargs,
):
    """``sdpa_attention_forward`` with the merged bias + mask computed once per (bias, mask)."""
    if position_bias is None or attention_mask is None or position_bias.requires_grad:
        return sdpa_attention_forward(module, query, key, value, attention_mask, position_bias=position_bias, **kwargs)
    cache = getattr(position_bias, _CACHE, None)
    if cache is None:
        cache = {}
        setattr(position_bias, _CACHE, cache)
    slot = (id(attention_mask), key.dtype)
    entry = cache.get(slot)
    if entry is None or entry[0] is not attention_mask:  # holding the mask keeps its id unique
        # With a mask given, the merge does not depend on causality (the mask already encodes it).
        entry = (attention_mask, create_position_bias_mask(position_bias, attention_mask, False, query, key))
        cache[slot] = entry
    # A float mask and no bias: SDPA receives exactly the merged mask the stock path would build.
    return sdpa_attention_forward(module, query, key, value, entry[1], position_bias=None, **kwargs)


def use_shared_bias_attention(model: nn.Module) -> bool:
    """Switches a T5 on plain ``sdpa`` to the shared-bias backend; other backends are left alone."""
    config = model.config
    if config._attn_implementation != "sdpa":
        return config._attn_implementation == SHARED_BIAS_SDPA
    AttentionInterface.register(SHARED_BIAS_SDPA, shared_bias_sdpa)
    AttentionMaskInterface.register(SHARED_BIAS_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])  # masks as sdpa's
    model.set_attn_implementation(SHARED_BIAS_SDPA)
    return True
