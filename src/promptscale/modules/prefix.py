"""Prefix tuning for T5 (Li & Liang 2021): trainable keys and values in front of every attention.

An encoder-decoder has three attention kinds, and the paper's method prefixes all three: encoder
self-attention, decoder self-attention and decoder cross-attention, each at every layer, each
with its own ``PrefixEncoder`` producing ``[layers, 2 (key, value), heads, P, d_kv]``. The width
is ``heads x d_kv``, the attention's inner width, which need not be ``d_model`` (T5 1.1 Small:
6 x 64 = 384 != 512).

The prefix joins where keys meet queries: T5's own attention code runs unchanged (projections,
KV cache, relative position bias) and a registered transformers attention backend (the
documented ``AttentionInterface`` extension point) concatenates the prefix right before the
scores. Two consequences make this the right place:

* The KV cache never holds the prefix, so during ``generate`` the decoder self-attention prefix
  is added exactly once per step instead of accumulating, and the cached cross-attention keys of
  the encoder output stay prefix-free.
* The prefix is expanded to whatever batch the attention sees: rank classification runs the
  decoder on one row per *choice*, not per example.

The prefix has no position, so its keys get a zero relative position bias; real tokens keep
exactly the bias T5 gives them. (PEFT instead treats a prefix as past tokens at positions
0..P-1, which gives prefix keys a position-dependent bias.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from transformers import AttentionInterface, T5ForConditionalGeneration
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.models.t5.modeling_t5 import eager_attention_forward

PREFIX_SETS = ("encoder_self", "decoder_self", "decoder_cross")
PREFIX_ATTR = "promptscale_prefix"  # set on each prefixed T5Attention: its layer's [2, H, P, D]
BACKENDS = {"sdpa": sdpa_attention_forward, "eager": eager_attention_forward}
BACKEND_PREFIX = "promptscale_prefix_"


class PrefixEncoder(nn.Module):
    """One prefix set: keys and values for every layer of one attention kind.

    Reparameterised (Li & Liang's MLP, which stabilises training): ``Embedding(P, d)`` ->
    ``Linear(d, hidden)`` -> ``Tanh`` -> ``Linear(hidden, layers x 2 x heads x d_kv)``. Direct:
    the projected tensor itself is the parameter. ``fold`` turns the first into the second, which
    is how the MLP is dropped after training.

    Args:
        length: Prefix length P.
        layers: Attention layers of this kind.
        heads: Attention heads H.
        head_dim: Width of one head, ``d_kv``.
        embed_dim: Width ``d`` of the MLP's input embedding (``d_model``); unused when direct.
        hidden: MLP hidden width (512 in Li & Liang); ``None`` for direct prefixes.
        init_std: Standard deviation of direct prefixes at initialisation.
    """

    def __init__(
        self,
        length: int,
        layers: int,
        heads: int,
        head_dim: int,
        embed_dim: int,
        hidden: int | None = 512,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        if length <= 0:
            raise ValueError(f"prefix length must be positive, got {length}")
        self.shape = (layers, 2, heads, length, head_dim)  # [L, 2, H, P, D]
        if hidden is None:
            self.prefix = nn.Parameter(torch.randn(self.shape) * init_std)  # [L, 2, H, P, D]
        else:
            self.embedding = nn.Embedding(length, embed_dim)  # [P, d]
            self.mlp = nn.Sequential(
                nn.Linear(embed_dim, hidden), nn.Tanh(), nn.Linear(hidden, layers * 2 * heads * head_dim)
            )

    @property
    def reparameterized(self) -> bool:
        return hasattr(self, "mlp")

    def forward(self) -> torch.Tensor:
        """The projected prefixes ``[L, 2, H, P, D]``."""
        if not self.reparameterized:
            return self.prefix
        layers, _, heads, length, head_dim = self.shape
        flat = self.mlp(self.embedding.weight)  # [P, L*2*H*D]
        return flat.view(length, layers, 2, heads, head_dim).permute(1, 2, 3, 0, 4)  # [L, 2, H, P, D]

    @torch.no_grad()
    def fold(self) -> None:
        """Replaces the embedding and MLP by the prefixes they currently produce."""
        if self.reparameterized:
            projected = self().detach().clone()
            del self.embedding, self.mlp
            self.prefix = nn.Parameter(projected)


def attention_modules(model: T5ForConditionalGeneration, name: str) -> list[nn.Module]:
    """The ``T5Attention`` module of every layer for one prefix set."""
    if name == "encoder_self":
        return [block.layer[0].SelfAttention for block in model.encoder.block]
    if name == "decoder_self":
        return [block.layer[0].SelfAttention for block in model.decoder.block]
    if name == "decoder_cross":
        return [block.layer[1].EncDecAttention for block in model.decoder.block]
    raise ValueError(f"unknown prefix set {name!r}; expected one of {PREFIX_SETS}")


def attach_prefixes(model: T5ForConditionalGeneration, encoders: nn.ModuleDict) -> None:
    """Makes ``model`` attend to the prefixes of ``encoders`` (keyed by ``PREFIX_SETS`` names).

    Each stack's forward pre-hook projects its sets once per call and hands every layer its
    slice; the prefix attention backend then reads it. Hooks read ``encoders`` at call time, so
    folding or loading new prefixes needs no re-attachment.
    """
    use_prefix_attention(model)
    for stack, names in ((model.encoder, ("encoder_self",)), (model.decoder, ("decoder_self", "decoder_cross"))):
        targets = {name: attention_modules(model, name) for name in names if name in encoders}
        if targets:
            stack.register_forward_pre_hook(_installer(encoders, targets))


def _installer(encoders: nn.ModuleDict, targets: dict[str, list[nn.Module]]) -> Callable:
    def install(stack: nn.Module, args: tuple) -> None:
        for name, modules in targets.items():
            kv = encoders[name]()  # [L, 2, H, P, D]
            for module, layer_kv in zip(modules, kv):
                setattr(module, PREFIX_ATTR, layer_kv)  # [2, H, P, D]

    return install


def use_prefix_attention(model: T5ForConditionalGeneration) -> None:
    """Switches ``model`` to the prefix-aware wrapper of its current attention backend."""
    base = model.config._attn_implementation
    if base.startswith(BACKEND_PREFIX):
        return
    if base not in BACKENDS:
        raise ValueError(f"prefix tuning supports attention backends {sorted(BACKENDS)}, not {base!r}")
    name = BACKEND_PREFIX + base
    AttentionInterface.register(name, prefix_attention(BACKENDS[base], additive_mask=base == "eager"))
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])  # masks as the base builds them
    model.set_attn_implementation(name)


def prefix_attention(base: Callable, additive_mask: bool) -> Callable:
    """An attention function that prepends the module's prefix (if any), then calls ``base``."""

    def attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None, **kw):
        """transformers' attention-function signature; ``kw`` holds ``position_bias`` [B|1, H, Q, K] or None."""
        kv = getattr(module, PREFIX_ATTR, None)  # [2, H, P, D]
        if kv is not None:
            attention_mask = extend_mask(attention_mask, query, key, kv.shape[2], module.is_causal, additive_mask)
            kw["position_bias"] = extend_bias(kw.get("position_bias"), kv.shape[2])
            key, value = extend_kv(kv, key, value)
        return base(module, query, key, value, attention_mask, **kw)

    return attention


def extend_kv(kv: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepends prefix keys and values ``kv`` [2, H, P, D] to ``key``/``value`` [B, H, K, D]."""
    batch = key.shape[0]
    kv = kv.to(key.dtype).unsqueeze(1).expand(-1, batch, -1, -1, -1)  # [2, B, H, P, D]
    return torch.cat([kv[0], key], dim=2), torch.cat([kv[1], value], dim=2)  # [B, H, P+K, D] each


def extend_bias(position_bias: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """Zero bias for the prefix keys: ``[b, H, Q, K]`` -> ``[b, H, Q, P+K]``."""
    if position_bias is None:
        return None
    zeros = position_bias.new_zeros(*position_bias.shape[:-1], length)  # [b, H, Q, P]
    return torch.cat([zeros, position_bias], dim=-1)


def extend_mask(
    mask: torch.Tensor | None, query: torch.Tensor, key: torch.Tensor, length: int, causal: bool, additive: bool
) -> torch.Tensor | None:
    """Lets every query see every prefix key: ``[b, 1, Q, K]`` -> ``[b, 1, Q, P+K]``.

    A ``None`` mask of a causal attention means "causal" to the backend, which it would align to
    the first key (the prefix); it is made explicit here, aligned to the last key so that cached
    decoding (Q < K) stays right. Boolean masks mark allowed keys; additive masks add 0 to them.
    """
    q_len, k_len = query.shape[2], key.shape[2]
    if mask is None:
        if not causal or q_len == 1:
            return None  # every key is visible, the prefix included
        rows = torch.arange(q_len, device=key.device)[:, None] + (k_len - q_len)
        mask = (torch.arange(k_len, device=key.device)[None, :] <= rows)[None, None]  # [1, 1, Q, K]
        if additive:
            mask = torch.zeros(mask.shape, dtype=query.dtype, device=key.device).masked_fill(
                ~mask, torch.finfo(query.dtype).min
            )
    if mask.dtype == torch.bool:
        visible = mask.new_ones(*mask.shape[:-1], length)  # [b, 1, Q, P]
    else:
        visible = mask.new_zeros(*mask.shape[:-1], length)  # [b, 1, Q, P]
    return torch.cat([visible, mask], dim=-1)
