"""Prompt design: a frozen T5 scored on hand-written instructions, zero- or K-shot.

Lester et al. 2021's prompt-engineering baseline (after GPT-3): nothing trains. Each
evaluated example is written with a natural-language template (``data/templates.py``),
optionally preceded by K solved demonstrations drawn from the task's train split, and scored
by rank classification over the template's answer words.

Demonstrations are drawn per example with a fixed seed (``demo_seed``, the task and the
example's text), so a run is a pure function of its config. A demonstration whose input text
equals the evaluated one is never used (train and dev may share texts). Inputs are built to fit
``max_input_length`` whole: demonstrations are dropped, oldest first, before anything of the
evaluated example is cut; an example too long on its own loses its start (left truncation),
which keeps the question and the "Answer:" cue the scored words follow.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from promptscale.data.example import Example
from promptscale.data.templates import TEMPLATE_SETS, apply_template
from promptscale.methods.base import TextToTextModule

DEMO_SLACK = 8  # extra draws, so excluding identical inputs still leaves K demonstrations


@dataclass(frozen=True)
class Demo:
    """A solved train example: its input text (to exclude twins) and the text shown."""

    inputs: str
    text: str


class PromptDesign(TextToTextModule):
    """Frozen backbone, templated inputs, K-shot demonstrations; ranked like GPT-3.

    Its primary protocol is ``rank`` whatever ``evaluation.protocol`` says: the paper's
    prompt-design line is GPT-3's few-shot results, which rank the verbalised choices. Greedy
    generation of the template's answer words is still scored as the second protocol.

    Args:
        template: Template set of ``data.templates.TEMPLATE_SETS`` (recorded in result rows).
        shots: Demonstrations per evaluated example, K >= 0 (GPT-3 used K = 32).
        demo_seed: Seed of the demonstration draw.
        max_input_length: Encoder token budget the composed input must fit (the datamodule's
            ``data.max_input_length``), end-of-sequence token included.
        separator: Text between demonstrations and before the evaluated example.
        **kwargs: ``TextToTextModule`` arguments (no optimizer: nothing trains).

    Raises:
        ValueError: On ``shots < 0``, an unknown template, a non-positive length, or an optimizer.
    """

    name = "prompt_design"
    task_prefix = False
    trains = False  # the job only validates
    frozen_backbone = True
    protocol = "rank"

    def __init__(
        self,
        *,
        template: str = "gpt3",
        shots: int = 0,
        demo_seed: int = 0,
        max_input_length: int = 512,
        separator: str = "\n\n",
        **kwargs,
    ) -> None:
        if shots < 0:
            raise ValueError(f"method.shots must be >= 0, got {shots}")
        if template not in TEMPLATE_SETS:
            raise ValueError(f"method.template={template!r} is not one of {tuple(TEMPLATE_SETS)}")
        if max_input_length <= 0:
            raise ValueError(f"method.max_input_length must be positive, got {max_input_length}")
        super().__init__(**kwargs)
        self.model.requires_grad_(False)
        self.template, self.shots, self.demo_seed = template, shots, demo_seed
        self.max_input_length, self.separator = max_input_length, separator
        # An example longer than the budget keeps its end (the question) when the datamodule truncates.
        self.tokenizer.truncation_side = "left"
        self.demos: dict[str, list[Demo]] = {}
        self._lengths: dict[str, int] = {}  # token counts of demo texts, filled lazily

    @classmethod
    def reads_train_split(cls, config, training: bool) -> bool:
        """Only K-shot runs read train: their demonstrations come from it (zero-shot needs val only)."""
        return int(config.get("shots", 0)) > 0

    def bind_records(self, records: dict[tuple[str, str], list[dict]]) -> None:
        """Builds each task's demonstration pool from its labelled train examples."""
        if self.shots == 0:
            return
        for task in self.tasks:
            examples = [
                ex for rec in records.get((task, "train"), []) for ex in apply_template(self.template, task, rec)
            ]
            self.demos[task] = [
                Demo(ex.inputs, f"{ex.inputs} {ex.choices[ex.label]}") for ex in examples if ex.label >= 0
            ]
            if not self.demos[task]:
                raise ValueError(
                    f"method.shots={self.shots} needs labelled train records of {task!r}; none were loaded"
                )

    def format(self, task: str, record: dict, train: bool) -> list[Example]:
        """Templated evaluation examples with demonstrations; no training examples (none train)."""
        if train:
            return []
        examples = apply_template(self.template, task, record)
        if self.shots == 0:
            return examples
        return [replace(ex, inputs=self.with_demos(ex)) for ex in examples]

    def draw(self, ex: Example) -> list[Demo]:
        """Up to K demonstrations for ``ex``: seeded by its text, never an identical input."""
        if ex.task not in self.demos:
            raise RuntimeError("prompt_design with shots > 0 needs bind_records(records) before formatting")
        pool = self.demos[ex.task]
        rng = random.Random(f"{self.demo_seed}|{ex.task}|{ex.group}|{ex.inputs}")  # str seeds are stable
        picks = rng.sample(range(len(pool)), min(len(pool), self.shots + DEMO_SLACK))
        return [pool[i] for i in picks if pool[i].inputs != ex.inputs][: self.shots]

    def with_demos(self, ex: Example) -> str:
        """Demonstrations then the example, dropping demonstrations until the tokens fit."""
        demos = [d.text for d in self.draw(ex)]
        budget = self.max_input_length - len(self.tokenizer(ex.inputs)["input_ids"])  # EOS counted
        while demos and sum(self.demo_tokens(d) for d in demos) > budget:  # estimate: pieces tokenised apart
            demos.pop(0)
        text = self.separator.join([*demos, ex.inputs])
        while demos and len(self.tokenizer(text)["input_ids"]) > self.max_input_length:  # exact check
            demos.pop(0)
            text = self.separator.join([*demos, ex.inputs])
        return text

    def demo_tokens(self, text: str) -> int:
        """Tokens of a demonstration ``text``, without special tokens (cached: demonstrations recur)."""
        if text not in self._lengths:
            self._lengths[text] = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self._lengths[text]

    def result_fields(self) -> dict[str, object]:
        """The template set and K (and the draw's seed) identify a prompt-design result."""
        return {"template": self.template, "shots": self.shots, "demo_seed": self.demo_seed}
