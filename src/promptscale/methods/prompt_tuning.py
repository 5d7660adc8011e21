"""Prompt tuning (Lester et al. 2021): a frozen T5 conditioned by P trainable input vectors.

Only the soft prompt trains. It is prepended to the encoder's input embeddings (never to the
decoder), the attention mask is extended with ones, and because T5 applies dropout to the
encoder input embeddings, dropout reaches the prompt too, as in the paper. Inputs drop the
task-name prefix: the prompt is what tells the frozen model the task.
"""

from __future__ import annotations

import torch

from promptscale.data.tasks import get_task
from promptscale.methods.base import TextToTextModule
from promptscale.modules.soft_prompt import (
    PROMPT_INITS,
    SoftPrompt,
    init_class_label,
    init_random_uniform,
    init_sampled_vocab,
)


class PromptTuning(TextToTextModule):
    """Frozen backbone plus one ``SoftPrompt`` of ``prompt_length`` x ``d_model``.

    Args:
        prompt_length: Number of prompt vectors P (paper default 100).
        init: ``random_uniform``, ``sampled_vocab`` or ``class_label`` (paper default).
        init_top_k: Vocabulary rows (most frequent first) that vocab sampling draws from.
        init_seed: Seed of the initialisation draw.
        **kwargs: ``TextToTextModule`` arguments (Adafactor lr 0.3, weight decay 1e-5, ...).
    """

    task_prefix = False
    frozen_backbone = True

    def __init__(
        self,
        *,
        prompt_length: int = 100,
        init: str = "class_label",
        init_top_k: int = 5000,
        init_seed: int = 0,
        lr: float = 0.3,
        weight_decay: float = 1e-5,
        batch_size: int = 32,
        **kwargs,
    ) -> None:
        if init not in PROMPT_INITS:
            raise ValueError(f"method.init={init!r} is not one of {PROMPT_INITS}")
        if prompt_length <= 0:
            raise ValueError(f"method.prompt_length must be positive, got {prompt_length}")
        super().__init__(lr=lr, weight_decay=weight_decay, batch_size=batch_size, **kwargs)
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

    def encoder_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        embeds = self.model.get_input_embeddings()(input_ids)  # [B, T, H]
        embeds, mask = self.prompt(embeds, attention_mask)  # [B, P+T, H], [B, P+T]
        return {"inputs_embeds": embeds, "attention_mask": mask}
