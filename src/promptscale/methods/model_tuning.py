"""Model tuning: every weight of T5 trains (the paper's strongest baseline).

Recipe (Lester et al. 2021, following T5): Adafactor at a constant 1e-3 without parameter
scaling, dropout 0.1, task-name prefix kept, best dev checkpoint (``conf/method/model_tuning.yaml``).
"""

from __future__ import annotations

from promptscale.methods.base import TextToTextModule


class ModelTuning(TextToTextModule):
    """All parameters trainable; the inputs keep T5's task-name prefix."""

    name = "model_tuning"
    task_prefix = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model.requires_grad_(True)
