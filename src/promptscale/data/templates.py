"""Hand-written natural-language templates for prompt design, gathered from the task registry.

Prompt design (Lester et al. 2021's "prompt engineering" baseline, after GPT-3) scores a
frozen model on instructions a person wrote, never on T5's ``key: value`` formats. Each task
module defines its ``template``: one official SuperGLUE record -> ``Example`` objects whose
``choices`` are the template's own answer words ("yes"/"no", "true"/"false"/"neither", COPA's
continuations, ReCoRD's entities), so rank classification compares the log likelihood of each
verbalised answer. The choice order follows the label order of the T5 format (e.g. CB:
entailment, contradiction, neutral -> true, false, neither), so the metrics read the predicted
index exactly as they read a T5-format prediction.

Templates follow the GPT-3 paper's SuperGLUE prompts (Brown et al. 2020, appendix G) where
an answer word fits a decoder target; the text is this project's own. One set exists,
``gpt3``; a new set is a new ``TEMPLATE_SETS`` entry (its name is recorded in result rows).
Every template expands a record as evaluation does (MultiRC: one example per answer option,
ReCoRD: one per query); demonstrations are built from the same expansion of train records.

Note: T5's SentencePiece normalises newlines to spaces; the layout is for the reader.
"""

from __future__ import annotations

from collections.abc import Callable

from promptscale.data.example import Example
from promptscale.data.tasks import TASKS, get_task

Template = Callable[[dict], list[Example]]

GPT3: dict[str, Template] = {name: spec.template for name, spec in TASKS.items()}
"""The GPT-3-style set: each task's own ``TaskSpec.template``."""

TEMPLATE_SETS: dict[str, dict[str, Template]] = {"gpt3": GPT3}


def apply_template(name: str, task: str, record: dict) -> list[Example]:
    """Formats ``record`` of ``task`` with template set ``name``.

    Raises:
        KeyError: If the set or the task is unknown; the message lists the valid names.
    """
    if name not in TEMPLATE_SETS:
        raise KeyError(f"unknown template set {name!r}; valid: {', '.join(TEMPLATE_SETS)}")
    get_task(task)
    return TEMPLATE_SETS[name][task](record)
