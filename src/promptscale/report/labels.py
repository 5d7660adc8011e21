"""How a figure or table names and orders what it shows: methods, settings, tasks, sizes.

Pure Python (no pandas, no matplotlib), so the W&B summary and the tables share one legend
vocabulary with the figures without importing any drawing code.
"""

from __future__ import annotations

from promptscale.data.tasks import TASKS
from promptscale.grouping import parse_setting

METHOD_ORDER: tuple[str, ...] = (
    "model_tuning",
    "multitask_model_tuning",
    "prompt_tuning",
    "prefix_tuning",
    "lora",
    "prompt_design",
)
"""Legend order: the paper's Figure 1 methods first, ours after, unknown methods last (by name)."""

METHOD_NAMES: dict[str, str] = {
    "model_tuning": "Model Tuning",
    "multitask_model_tuning": "Model Tuning (Multi-task)",
    "prompt_tuning": "Prompt Tuning",
    "prefix_tuning": "Prefix Tuning",
    "prompt_design": "Prompt Design",
    "lora": "LoRA",
}

FAMILY_NAMES: dict[str, str] = {
    "t5_1_1": "T5 1.1",
    "t5_1_1_lm_adapt": "T5 1.1 LM-adapted",
    "flan_t5": "Flan-T5",
    "t5": "T5",
    "mt5": "mT5",
    "tiny": "tiny",
}
"""Legend names of model families (rows' ``family``); others are shown as written."""

T5_LABELS: dict[str, str] = {"small": "Small", "base": "Base", "large": "Large", "xl": "XL", "xxl": "XXL"}

SETTING_NAMES: dict[str, str] = {
    "random_uniform": "Random Uniform",
    "sampled_vocab": "Sampled Vocab",
    "class_label": "Class Label",
    "span_corruption": "Span Corruption",
    "lm_adaptation": "LM Adaptation (100K)",
}

_KNOWN_VALUES: tuple[str, ...] = (
    # Paper order of Figure 3's categorical settings.
    "random_uniform",
    "sampled_vocab",
    "class_label",
    "span_corruption",
    "lm_adaptation",
    "false",
    "true",
)


def method_label(method: str) -> str:
    """Legend label of a method, e.g. ``"Prompt Tuning"`` (unknown methods: title-cased name)."""
    return METHOD_NAMES.get(method, method.replace("_", " ").title())


def family_label(family: str) -> str:
    """Legend label of a model family, e.g. ``"flan_t5"`` -> ``"Flan-T5"``; ``""`` (one family) -> ``""``."""
    return FAMILY_NAMES.get(family, family)


def method_key(method: str) -> tuple[int, str]:
    """Sort key of a method: :data:`METHOD_ORDER`, then unknown methods by name."""
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def task_key(task: str) -> tuple[int, str]:
    """Sort key of a task: SuperGLUE's order in ``TASKS``, unknown tasks last."""
    names = list(TASKS)
    return (names.index(task) if task in names else len(names), task)


def setting_key(setting: str) -> tuple:
    """Sort key of a setting label: known values in paper order, numbers numerically."""
    key = []
    for part in str(setting or "").split(", "):
        name, _, value = part.partition("=")
        if value in _KNOWN_VALUES:
            key.append((name, 0, _KNOWN_VALUES.index(value), ""))
        else:
            try:
                key.append((name, 1, float(value), ""))
            except ValueError:
                key.append((name, 2, 0.0, value))
    return tuple(key)


def setting_name(setting: str) -> str:
    """Legend text of a setting: ``"prompt_length=20"`` -> ``"20"``,
    ``"pretraining=span_corruption, target_sentinel=true"`` -> ``"Span Corruption + Sentinel"``."""
    parts = parse_setting(setting)
    if not parts:
        return str(setting or "")
    sentinel = parts.pop("target_sentinel", None) if len(parts) > 1 else None
    words = [SETTING_NAMES.get(v, v if len(parts) == 1 else f"{k}={v}") for k, v in parts.items()]
    if sentinel == "true":
        words.append("+ Sentinel")
    return " ".join(words)


def fmt_params(n: float) -> str:
    """Parameter count with a unit, e.g. ``76961152`` -> ``"77M"``."""
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))
