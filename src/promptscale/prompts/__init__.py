"""Soft prompts after training: files and adapters, mixed-task serving, ensembles, neighbours.

``files``: raw prompt files and PEFT adapters; ``bank``: one frozen T5 serving many tasks;
``runs``: finished prompt runs on disk; ``ensemble``: Lester et al.'s Table 3; ``neighbours``:
their Section 7. Every model here is rebuilt through ``promptscale.job`` and scored through the
prompt-tuning method's own scoring path.
"""

from promptscale.prompts.bank import PromptBank, Query
from promptscale.prompts.files import (
    PromptFileError,
    export_peft,
    import_peft,
    load_into,
    load_prompt,
    prompt_metadata,
    read_prompt,
    save_prompt,
)

__all__ = [
    "PromptBank",
    "PromptFileError",
    "Query",
    "export_peft",
    "import_peft",
    "load_into",
    "load_prompt",
    "prompt_metadata",
    "read_prompt",
    "save_prompt",
]
