"""Prompt tuning (Lester et al. 2021): a frozen T5 conditioned by P trainable input vectors.

Only the soft prompt trains. It is prepended to the encoder's input embeddings (never to the
decoder), the attention mask is extended with ones, and because T5 applies dropout to the
encoder input embeddings, dropout reaches the prompt too, as in the paper. Inputs drop the
task-name prefix: the prompt is what tells the frozen model the task.
"""

from __future__ import annotations

from typing import Any

import torch

from promptscale.data.tasks import get_task
from promptscale.methods.base import TextToTextModule
from promptscale.modules.soft_prompt import (
    PROMPT_INITS,
    SoftPrompt,
    init_class_label,
    init_random_uniform,
    init_sampled_vocab,
    prepend,
)

MAX_PROMPT_LENGTH = 4096  # 8x T5's 512-token training inputs: anything longer is a typo, not a prompt


class PromptTuning(TextToTextModule):
    """Frozen backbone plus one ``SoftPrompt`` of ``prompt_length`` x ``d_model``.

    Args:
        prompt_length: Number of prompt vectors P (paper default 100).
        init: ``random_uniform``, ``sampled_vocab`` or ``class_label`` (paper default).
        init_top_k: Vocabulary rows (most frequent first) that vocab sampling draws from.
        init_seed: Seed of the initialisation draw.
        **kwargs: ``TextToTextModule`` arguments.
    """

    name = "prompt_tuning"
    task_prefix = False
    frozen_backbone = True

    def __init__(
        self,
        *,
        prompt_length: int = 100,
        init: str = "class_label",
        init_top_k: int = 5000,
        init_seed: int = 0,
        **kwargs,
    ) -> None:
        check_prompt(prompt_length, init, init_top_k)
        super().__init__(**kwargs)
        self.model.requires_grad_(False)
        self.init, self.init_top_k = init, init_top_k
        self.prompt = SoftPrompt(prompt_length, self.model.config.d_model)
        with torch.no_grad():
            self.prompt.embedding.copy_(self.initial_prompt(prompt_length, init_seed))

    def initial_prompt(self, length: int, seed: int) -> torch.Tensor:
        """The paper's three initialisations, drawn with a fixed seed: [P, H]."""
        gen = torch.Generator().manual_seed(seed)
        vocab = self.model.get_input_embeddings().weight.detach().float().cpu()  # [V, H]
        if self.init == "random_uniform":
            return init_random_uniform(length, vocab.shape[1], gen)
        if self.init == "sampled_vocab":
            return init_sampled_vocab(length, vocab, self.init_top_k, gen)
        words = [w for task in self.tasks for w in get_task(task).label_words]
        label_ids = [self.tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
        return init_class_label(length, vocab, label_ids, self.init_top_k, gen)

    def encoder_inputs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompts: Any = None
    ) -> dict[str, torch.Tensor]:
        """The prompt (or per-row ``prompts``, see ``modules.soft_prompt.prepend``) before the inputs."""
        embeds = self.model.get_input_embeddings()(input_ids)  # [B, T, H]
        embeds, mask = prepend(embeds, attention_mask, self.prompt.embedding if prompts is None else prompts)
        return {"inputs_embeds": embeds, "attention_mask": mask}  # [B, P+T, H], [B, P+T]


def check_prompt(length: int, init: str, top_k: int) -> None:
    """Refuses impossible prompt settings before the backbone is built, naming the key."""
    if init not in PROMPT_INITS:
        raise ValueError(f"method.init={init!r} is not one of {PROMPT_INITS}")
    if not 0 < length <= MAX_PROMPT_LENGTH:
        raise ValueError(f"method.prompt_length must be in 1..{MAX_PROMPT_LENGTH}, got {length}")
    if top_k <= 0:
        raise ValueError(f"method.init_top_k must be positive, got {top_k}")
    if init != "random_uniform" and length > top_k:
        raise ValueError(
            f"method.prompt_length={length} cannot be drawn without replacement from the "
            f"method.init_top_k={top_k} most frequent vocabulary rows (method.init={init}): "
            f"raise init_top_k or use method.init=random_uniform"
        )
