"""Which swept setting a run belongs to: the ``setting`` column of result rows.

An experiment names the config keys it sweeps for a figure (``figure.group_by``, e.g.
``[method.prompt_length]``); every result row of a run then carries ``setting`` =
``"prompt_length=20"``, so figures and W&B charts group lines by it without reading configs or
directory names. No keys: an empty setting (one line per method, as in Figure 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _value(config: Any, key: str) -> Any:
    node = config
    for part in key.split("."):
        if not isinstance(node, Mapping) and not hasattr(node, "get"):
            raise KeyError(key)
        if part not in node:
            raise KeyError(f"figure.group_by names {key!r}, which is not in the config")
        node = node[part]
    return node


def format_value(value: Any) -> str:
    """YAML-style text of a scalar: ``true``/``false``/``null``, numbers and strings as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def setting(config: Any, group_by: Sequence[str] | None = None) -> str:
    """The setting label of a run, e.g. ``"prompt_length=20"`` or ``"pretraining=lm_adaptation,
    target_sentinel=false"``.

    Args:
        config: The job config (``DictConfig`` or plain nested dict).
        group_by: Dotted config keys; default ``config["figure"]["group_by"]`` (none if absent).

    Returns:
        ``"<last key part>=<value>"`` pairs joined by ``", "``; ``""`` when there are no keys.

    Raises:
        KeyError: A key is not in the config.
    """
    if group_by is None:
        figure = config.get("figure") if hasattr(config, "get") else None
        group_by = list(figure.get("group_by") or []) if figure is not None else []
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={format_value(_value(config, key))}" for key in group_by)


def parse_setting(text: str | None) -> dict[str, str]:
    """Inverse of :func:`setting`: ``"a=1, b=x"`` -> ``{"a": "1", "b": "x"}``."""
    if not text:
        return {}
    return dict(part.split("=", 1) for part in text.split(", ") if "=" in part)
