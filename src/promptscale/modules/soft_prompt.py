"""A soft prompt: P trainable vectors prepended to the encoder's input embeddings.

Lester et al. 2021: the prompt is concatenated in front of the embedded input, the attention
mask is extended with ones, and nothing else in the model changes. Initialisation matters at
small scale (their Figure 3b), so the three inits of the paper live here, with the embedding of
a text (google-research/prompt-tuning's ``from_embedded_string``, PEFT's ``TEXT`` init). A prompt
read from a file (``init: file``) is ``prompts.files.read_prompt``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

PROMPT_INITS = ("random_uniform", "sampled_vocab", "class_label", "text", "file")
TEXT_FILLS = ("sampled_vocab", "repeat")  # what follows a text shorter than the prompt


class SoftPrompt(nn.Module):
    """Trainable prompt ``[P, H]`` prepended to a batch of input embeddings.

    Args:
        length: Number of prompt vectors P.
        dim: Embedding width H (the model's ``d_model``).
    """

    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        if length <= 0:
            raise ValueError(f"prompt length must be positive, got {length}")
        self.embedding = nn.Parameter(torch.zeros(length, dim))  # [P, H]

    @property
    def length(self) -> int:
        return self.embedding.shape[0]

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepends the prompt to ``embeds`` [B, T, H] and ones to ``mask`` [B, T]."""
        return prepend(embeds, mask, self.embedding)


Prompts = torch.Tensor | Sequence[torch.Tensor]
"""One prompt [P, H] for every row, one per row [B, P, H], or a list of B prompts [P_b, H]."""


def prepend(embeds: torch.Tensor, mask: torch.Tensor, prompts: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row becomes ``[its prompt ; its tokens]``: the one place prompts meet inputs.

    Training, evaluation, prompt ensembles (a batch replicated once per prompt) and prompt
    banks (a different task, so a different prompt length, per row) all prepend through here.
    Rows stay right-padded: with prompts of different lengths each row's real tokens sit at
    positions ``P_b .. P_b + T_b - 1``, exactly as in a batch of its own prompt, which T5's
    relative position bias needs; the padding goes to the end and is masked out.

    Args:
        embeds: Input embeddings [B, T, H] (right-padded).
        mask: Their attention mask [B, T].
        prompts: See :data:`Prompts`.

    Returns:
        Embeddings [B, P + T, H] and mask [B, P + T] (P the longest prompt).
    """
    batch = embeds.shape[0]
    if isinstance(prompts, torch.Tensor):
        rows = prompts.to(embeds.dtype)
        rows = rows.unsqueeze(0).expand(batch, -1, -1) if rows.dim() == 2 else rows  # [B, P, H]
        ones = mask.new_ones(batch, rows.shape[1])  # [B, P]
        return torch.cat([rows, embeds], dim=1), torch.cat([ones, mask], dim=1)  # [B, P+T, H], [B, P+T]
    if len(prompts) != batch:
        raise ValueError(f"{len(prompts)} prompts for a batch of {batch} rows")
    longest = max(p.shape[0] for p in prompts)
    out = embeds.new_zeros(batch, longest + embeds.shape[1], embeds.shape[2])  # [B, P+T, H]
    out_mask = mask.new_zeros(batch, longest + mask.shape[1])  # [B, P+T]
    for b, prompt in enumerate(prompts):
        length = prompt.shape[0]
        out[b, :length] = prompt.to(embeds.dtype)
        out[b, length : length + embeds.shape[1]] = embeds[b]
        out_mask[b, :length] = 1
        out_mask[b, length : length + mask.shape[1]] = mask[b]
    return out, out_mask


def init_random_uniform(length: int, dim: int, generator: torch.Generator, scale: float = 0.5) -> torch.Tensor:
    """Uniform in [-scale, scale] (Lester et al. 2021 use 0.5)."""
    return (torch.rand(length, dim, generator=generator) * 2 - 1) * scale  # [P, H]


def init_sampled_vocab(
    length: int, vocab_embeddings: torch.Tensor, top_k: int, generator: torch.Generator
) -> torch.Tensor:
    """Rows drawn without replacement from the first ``top_k`` embedding rows.

    The first 5,000 ids of T5's SentencePiece vocabulary are its most frequent pieces, which is
    why the paper restricts sampling to them.
    """
    top_k = min(top_k, vocab_embeddings.shape[0])
    if length > top_k:
        raise ValueError(f"cannot sample {length} distinct rows from the top {top_k} vocabulary rows")
    ids = torch.randperm(top_k, generator=generator)[:length]  # [P]
    return vocab_embeddings[ids].detach().clone()  # [P, H]


def init_class_label(
    length: int,
    vocab_embeddings: torch.Tensor,
    label_token_ids: list[list[int]],
    top_k: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Position i = mean embedding of label i's sub-tokens; the rest sampled from the vocabulary.

    Labels beyond the prompt length are dropped (a prompt of length 1 keeps the first label).
    """
    labels = [ids for ids in label_token_ids if ids][:length]
    label_rows = [vocab_embeddings[ids].mean(dim=0) for ids in labels]  # each [H]
    rest = (
        init_sampled_vocab(length - len(label_rows), vocab_embeddings, top_k, generator)
        if length > len(label_rows)
        else vocab_embeddings.new_zeros(0, vocab_embeddings.shape[1])
    )
    if not label_rows:
        return rest
    return torch.cat([torch.stack(label_rows).detach(), rest], dim=0)  # [P, H]


def init_from_text(
    length: int,
    vocab_embeddings: torch.Tensor,
    token_ids: list[int],
    fill: str,
    top_k: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Position i = embedding of the text's i-th token; the positions after it are filled.

    The official code (google-research/prompt-tuning, ``from_embedded_string``) writes the
    text's token embeddings over the first positions of a prompt drawn by another initializer
    (sampled vocabulary in their configs): ``fill="sampled_vocab"``. PEFT's ``TEXT`` init
    repeats the text's tokens until the prompt is full: ``fill="repeat"``.

    Args:
        length: Prompt length P.
        vocab_embeddings: The input embedding table [V, H].
        token_ids: The text's token ids, no special tokens; at most ``length`` of them (the
            official code silently drops the rest, a config error here: see ``PromptTuning``).
        fill: One of :data:`TEXT_FILLS`.
        top_k: Vocabulary rows (most frequent first) that ``sampled_vocab`` draws from.
        generator: Seeded generator of the draw.
    """
    if not token_ids or len(token_ids) > length:
        raise ValueError(f"a text init needs 1..{length} tokens, got {len(token_ids)}")
    rows = vocab_embeddings[token_ids].detach().clone()  # [n, H]
    if fill == "repeat":
        return rows.repeat(-(-length // len(token_ids)), 1)[:length]  # [P, H]
    if fill != "sampled_vocab":
        raise ValueError(f"text fill {fill!r} is not one of {TEXT_FILLS}")
    rest = init_sampled_vocab(length - len(token_ids), vocab_embeddings, top_k, generator)  # [P-n, H]
    return torch.cat([rows, rest], dim=0)  # [P, H]
