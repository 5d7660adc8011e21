"""Prompt tuning (Lester et al. 2021): a frozen T5 conditioned by P trainable input vectors.

Only the soft prompt trains. It is prepended to the encoder's input embeddings (never to the
decoder), the attention mask is extended with ones, and because T5 applies dropout to the
encoder input embeddings, dropout reaches the prompt too, as in the paper. Inputs drop the
task-name prefix: the prompt is what tells the frozen model the task.

Beyond the paper's three inits, a prompt can start from the embedding of a text (``init: text``)
or from a saved prompt (``init: file``: ours, a PEFT adapter, or an official ``.npy``), e.g. to
transfer a prompt trained on another task (SPoT, Vu et al. 2022). With ``train_prompt: false``
the job only evaluates the initial prompt: how a released prompt is scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from promptscale.data.tasks import get_task
from promptscale.methods.base import TextToTextModule
from promptscale.modules.soft_prompt import (
    PROMPT_INITS,
    TEXT_FILLS,
    SoftPrompt,
    init_class_label,
    init_from_text,
    init_random_uniform,
    init_sampled_vocab,
    prepend,
)

MAX_PROMPT_LENGTH = 4096  # 8x T5's 512-token training inputs: anything longer is a typo, not a prompt


class PromptTuning(TextToTextModule):
    """Frozen backbone plus one ``SoftPrompt`` of ``prompt_length`` x ``d_model``.

    Args:
        prompt_length: Number of prompt vectors P (paper default 100).
        init: ``random_uniform``, ``sampled_vocab``, ``class_label`` (paper default), ``text``
            or ``file``.
        init_top_k: Vocabulary rows (most frequent first) that vocab sampling draws from.
        init_seed: Seed of the initialisation draw.
        init_text: ``init=text``: the string whose token embeddings start the prompt (at most
            P tokens, no end-of-sequence token).
        init_text_fill: ``init=text``: what follows a text shorter than P: ``sampled_vocab``
            (the official code) or ``repeat`` (PEFT).
        init_file: ``init=file``: a prompt ``[P, d_model]`` (our ``.safetensors``, a PEFT
            adapter folder or a ``.npy`` array); P must equal ``prompt_length``.
        train_prompt: ``False`` evaluates the initial prompt as it is: nothing trains, the job
            validates once and its rows are at step 0.
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
        init_text: str | None = None,
        init_text_fill: str = "sampled_vocab",
        init_file: str | None = None,
        train_prompt: bool = True,
        **kwargs,
    ) -> None:
        check_prompt(prompt_length, init, init_top_k, init_text, init_text_fill, init_file)
        spec = kwargs["model"]
        # Both checked before the backbone is built (minutes at XXL): the file's shape, the text's length.
        loaded = read_init_file(init_file, prompt_length, spec) if init == "file" else None  # [P, H]
        text_ids = text_token_ids(spec.build_tokenizer(), init_text, prompt_length) if init == "text" else None
        super().__init__(**kwargs)
        self.model.requires_grad_(False)
        self.init, self.init_top_k, self.init_text_fill = init, init_top_k, init_text_fill
        self.init_file, self.trains = init_file, train_prompt  # an untrained prompt is only evaluated
        self.prompt = SoftPrompt(prompt_length, self.model.config.d_model)
        with torch.no_grad():
            initial = loaded if loaded is not None else self.initial_prompt(prompt_length, init_seed, text_ids)
            self.prompt.embedding.copy_(initial)
        self.prompt.embedding.requires_grad_(train_prompt)

    @classmethod
    def reads_train_split(cls, config: Mapping[str, Any], training: bool) -> bool:
        """An evaluate-only prompt (``train_prompt: false``) reads no training data."""
        return super().reads_train_split(config, training) and bool(config.get("train_prompt", True))

    def result_fields(self) -> dict[str, object]:
        """Rows of an evaluated, untrained prompt say so (and which file it came from)."""
        return {} if self.trains else {"prompt_trained": False, "prompt_file": self.init_file}

    def initial_prompt(self, length: int, seed: int, text_ids: list[int] | None = None) -> torch.Tensor:
        """The paper's three initialisations and the text one, drawn with a fixed seed: [P, H]."""
        gen = torch.Generator().manual_seed(seed)
        vocab = self.model.get_input_embeddings().weight.detach().float().cpu()  # [V, H]
        if self.init == "random_uniform":
            return init_random_uniform(length, vocab.shape[1], gen)
        if self.init == "sampled_vocab":
            return init_sampled_vocab(length, vocab, self.init_top_k, gen)
        if self.init == "text":
            return init_from_text(length, vocab, text_ids, self.init_text_fill, self.init_top_k, gen)
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


def check_prompt(
    length: int,
    init: str,
    top_k: int,
    text: str | None = None,
    text_fill: str = "sampled_vocab",
    file: str | None = None,
) -> None:
    """Refuses impossible prompt settings before the backbone is built, naming the key."""
    if init not in PROMPT_INITS:
        raise ValueError(f"method.init={init!r} is not one of {PROMPT_INITS}")
    if not 0 < length <= MAX_PROMPT_LENGTH:
        raise ValueError(f"method.prompt_length must be in 1..{MAX_PROMPT_LENGTH}, got {length}")
    if top_k <= 0:
        raise ValueError(f"method.init_top_k must be positive, got {top_k}")
    if text_fill not in TEXT_FILLS:
        raise ValueError(f"method.init_text_fill={text_fill!r} is not one of {TEXT_FILLS}")
    for key, value, needs in (("init_text", text, "text"), ("init_file", file, "file")):
        if init == needs and not value:
            raise ValueError(f"method.init={needs} needs method.{key}")
        if init != needs and value is not None:  # set but read by nothing: refused, as model.path on random init
            raise ValueError(f"method.{key} is set but method.init={init} ignores it: use method.init={needs}")
    samples = init in ("sampled_vocab", "class_label") or (init == "text" and text_fill == "sampled_vocab")
    if samples and length > top_k:
        raise ValueError(
            f"method.prompt_length={length} cannot be drawn without replacement from the "
            f"method.init_top_k={top_k} most frequent vocabulary rows (method.init={init}): "
            f"raise init_top_k or use method.init=random_uniform"
        )


def read_init_file(path: str, length: int, spec: Any) -> torch.Tensor:
    """``method.init_file``'s prompt ``[P, H]``, checked against the model and ``prompt_length``."""
    from promptscale.prompts.files import read_init_prompt  # promptscale.prompts imports the job, hence here

    return read_init_prompt(path, length, spec.d_model, known_as=(spec.hub_id, spec.name, spec.path))


def text_token_ids(tokenizer: Any, text: str, length: int) -> list[int]:
    """The ids of ``method.init_text`` (no end-of-sequence token, as the official code encodes it)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"method.init_text={text!r} has no tokens")
    if len(ids) > length:
        raise ValueError(
            f"method.init_text is {len(ids)} tokens long but method.prompt_length={length}: shorten the "
            f"text or raise method.prompt_length (the official code would silently drop the rest)"
        )
    return ids
