"""Prefix tuning (Li & Liang 2021) for a frozen T5: trainable keys and values at every layer.

Three independent prefix sets (encoder self-attention, decoder self-attention, decoder
cross-attention; each switchable) of P vectors per layer, key and value, width heads x d_kv.
Training goes through Li & Liang's MLP reparameterisation (``reparameterize``); checkpoints keep
only the projected prefixes, so the MLP is dropped after training and a loaded checkpoint uses
them directly. AdamW with linear decay, as in the paper. This is not PEFT's ``PrefixTuning``,
which on T5 reaches decoder self-attention only (see ``modules/prefix.py``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from promptscale.methods.base import TextToTextModule
from promptscale.modules.prefix import PREFIX_SETS, PrefixEncoder, attach_prefixes


class PrefixTuning(TextToTextModule):
    """Frozen backbone plus one ``PrefixEncoder`` per enabled attention kind.

    Args:
        prefix_length: Prefix length P per layer (Li & Liang use 10 to 200).
        encoder_self: Prefix encoder self-attention.
        decoder_self: Prefix decoder self-attention.
        decoder_cross: Prefix decoder cross-attention (the decoder reads it with the encoder output).
        reparameterize: Train through ``Embedding(P, d_model) -> Linear -> Tanh -> Linear``.
        hidden: Hidden width of that MLP (512 in Li & Liang).
        init_std: Initial standard deviation of direct (not reparameterised) prefixes.
        **kwargs: ``TextToTextModule`` arguments (the recipe's AdamW with linear decay, see
            ``conf/method/prefix_tuning.yaml``).
    """

    name = "prefix_tuning"
    task_prefix = False  # the prefix tells the frozen model the task, as the prompt does
    frozen_backbone = True

    def __init__(
        self,
        *,
        prefix_length: int = 100,
        encoder_self: bool = True,
        decoder_self: bool = True,
        decoder_cross: bool = True,
        reparameterize: bool = True,
        hidden: int = 512,
        init_std: float = 0.02,
        **kwargs,
    ) -> None:
        enabled = [name for name, on in zip(PREFIX_SETS, (encoder_self, decoder_self, decoder_cross)) if on]
        if prefix_length <= 0:
            raise ValueError(f"method.prefix_length must be positive, got {prefix_length}")
        if not enabled:
            raise ValueError(
                "method.encoder_self, method.decoder_self and method.decoder_cross are all false: "
                "prefix tuning needs at least one prefix set"
            )
        if reparameterize and hidden <= 0:
            raise ValueError(f"method.hidden must be positive, got {hidden}")
        super().__init__(**kwargs)
        self.model.requires_grad_(False)
        config = self.model.config
        layers = {
            "encoder_self": config.num_layers,
            "decoder_self": config.num_decoder_layers,
            "decoder_cross": config.num_decoder_layers,
        }
        self.prefixes = nn.ModuleDict(
            {
                name: PrefixEncoder(
                    prefix_length,
                    layers[name],
                    config.num_heads,
                    config.d_kv,
                    config.d_model,
                    hidden if reparameterize else None,
                    init_std,
                )
                for name in enabled
            }
        )
        attach_prefixes(self.model, self.prefixes)

    # -- the artifact: projected prefixes only ----------------------------------------------
    @torch.no_grad()
    def projected_prefixes(self) -> dict[str, torch.Tensor]:
        """``{set name: [L, 2, H, P, D]}``, what the model attends to (the MLP applied)."""
        return {name: encoder().detach().clone().contiguous() for name, encoder in self.prefixes.items()}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Saves the projected prefixes under the names direct prefixes have, nothing else.

        The MLP is a training device (Li & Liang drop it), so a reparameterised run's checkpoint
        also drops the optimizer state that refers to it: the file is an inference artifact.
        Resume checkpoints (``last.ckpt``) keep the MLP and the optimizer, so training goes on.
        """
        super().on_save_checkpoint(checkpoint)
        if self.saving_for_resume:
            return
        checkpoint["state_dict"] = {f"prefixes.{name}.prefix": kv for name, kv in self.projected_prefixes().items()}
        if any(encoder.reparameterized for encoder in self.prefixes.values()):
            checkpoint.pop("optimizer_states", None)
            checkpoint.pop("lr_schedulers", None)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Folds reparameterised sets into direct prefixes so the projected tensors load into them."""
        super().on_load_checkpoint(checkpoint)
        for name, encoder in self.prefixes.items():
            if f"prefixes.{name}.prefix" in checkpoint["state_dict"] and encoder.reparameterized:
                encoder.fold()

    def export_prefixes(self, path: str | Path) -> None:
        """Writes the projected prefixes ``{set name: [L, 2, H, P, D]}`` as safetensors."""
        save_file(self.projected_prefixes(), str(path))
