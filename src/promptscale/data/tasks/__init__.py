"""The task registry: SuperGLUE tasks as data, one module per task.

Each task module (``boolq.py`` ... ``axg.py``) defines one ``TaskSpec`` named ``SPEC`` that
carries every piece of the task: its facts (folder, splits, version, label words, Hub config),
its schema check, T5 formatter, Hub conversion, prompt-design template, postprocessing, unit
counting and metric family. Loading (``data.sources``), formatting (``data.formats``), templates
(``data.templates``) and metrics (``promptscale.metrics``) look a task up here by name.

Adding a task: write ``tasks/<name>.py`` with its ``SPEC``, add the module to ``_MODULES``
below, add ``conf/task/<name>.yaml`` (if it is trained on) and sample files under
``data/sample/<Folder>/``; ``tests/test_tasks.py`` names whatever piece is missing.
"""

from __future__ import annotations

from promptscale.data.tasks import axb, axg, boolq, cb, copa, multirc, record, rte, wic, wsc
from promptscale.data.tasks.spec import TaskSpec

__all__ = ["SCORED_TASKS", "TASKS", "TaskSpec", "get_task"]

# Registration: the order is the report order (SuperGLUE's, then the diagnostics).
_MODULES = (boolq, cb, copa, multirc, record, rte, wic, wsc, axb, axg)

TASKS: dict[str, TaskSpec] = {module.SPEC.name: module.SPEC for module in _MODULES}

SCORED_TASKS: tuple[str, ...] = tuple(n for n, s in TASKS.items() if s.in_score)


def get_task(name: str) -> TaskSpec:
    """Returns the spec of ``name`` or raises a ``KeyError`` listing the valid names."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}") from None
