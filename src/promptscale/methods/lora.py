"""LoRA (Hu et al. 2021) through PEFT: a frozen T5 plus trainable low-rank weight updates.

Each adapted ``nn.Linear`` W (d_in -> d_out) becomes ``W x + (alpha / r) B A x`` with
A [r, d_in] and B [d_out, r], so it adds ``r * (d_in + d_out)`` parameters; B starts at zero,
so training starts from the unchanged backbone. The update itself is PEFT's (``LoraConfig``,
``get_peft_model``), not rewritten here. The wrapped model keeps the T5 interface the base
uses (``encoder``, ``forward(encoder_outputs=...)``, ``generate``, ``get_input_embeddings``,
``config``) because ``PeftModel`` forwards attribute access to the wrapped model.

Inputs drop the task name, as prompt and prefix tuning do: the task-specific parameters
identify the task, and the three parameter-efficient methods then see the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

from peft import LoraConfig, TaskType, get_peft_model

from promptscale.methods.base import TextToTextModule


class LoRA(TextToTextModule):
    """Frozen backbone; only PEFT's ``lora_A`` / ``lora_B`` matrices train and are saved.

    Args:
        r: Rank of each update.
        alpha: Scale numerator: the update is multiplied by ``alpha / r``.
        dropout: Dropout on the input of the LoRA branch.
        target_modules: Names of the T5 ``nn.Linear`` modules to adapt (``q``, ``k``, ``v``,
            ``o`` in attention; ``wi_0``, ``wi_1``, ``wo`` in the feed-forward block).
        **kwargs: ``TextToTextModule`` arguments (the recipe's AdamW, see ``conf/method/lora.yaml``).
    """

    name = "lora"
    task_prefix = False
    frozen_backbone = True

    def __init__(
        self,
        *,
        r: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.1,
        target_modules: Sequence[str] = ("q", "v"),
        **kwargs,
    ) -> None:
        if r <= 0:
            raise ValueError(f"method.r must be positive, got {r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"method.dropout must be in [0, 1), got {dropout}")
        targets = [str(t) for t in target_modules]  # plain strings, not an OmegaConf ListConfig
        if not targets:
            raise ValueError("method.target_modules is empty: name at least one T5 Linear (e.g. [q, v])")
        super().__init__(**kwargs)
        config = LoraConfig(
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=targets,
            bias="none",
            task_type=TaskType.SEQ_2_SEQ_LM,
        )
        # PEFT freezes every backbone weight and injects lora_A / lora_B into the targets.
        self.model = get_peft_model(self.model, config)
