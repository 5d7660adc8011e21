"""T5 model families and their sizes: plain data, importable without torch.

The results store (``store/rows.py``) labels every row with its backbone's family, and the
report draws one curve per family, so this lives apart from ``models.py`` (which needs
transformers): reading or writing rows never imports a model library.
"""

from __future__ import annotations

from typing import Any

T5_1_1_SIZES = ("small", "base", "large", "xl", "xxl")
FAMILIES: dict[str, tuple[str, ...]] = {
    "t5_1_1_lm_adapt": T5_1_1_SIZES,  # google/t5-<size>-lm-adapt (Lester et al. 2021's backbones)
    "t5_1_1": T5_1_1_SIZES,  # google/t5-v1_1-<size> (span corruption only)
    "flan_t5": T5_1_1_SIZES,  # google/flan-t5-<size> (Chung et al. 2022)
    "mt5": T5_1_1_SIZES,  # google/mt5-<size> (Xue et al. 2021)
    "t5": ("small", "base", "large", "3b", "11b"),  # google-t5/t5-<size> (Raffel et al. 2020)
    "tiny": ("tiny_s", "tiny_m", "tiny_l"),
}
"""Model families and the sizes each has: ``model.family`` and ``model.size`` must be one of these."""


def legacy_family(name: str) -> str:
    """The family of a model config saved before ``model.family`` existed (only these three were)."""
    if name.startswith("tiny"):
        return "tiny"
    return "t5_1_1" if name.startswith("t5_1_1") else "t5_1_1_lm_adapt"


def model_family(node: Any) -> str:
    """The family of a ``model`` config node (a saved config may predate ``model.family``)."""
    return node.get("family") or legacy_family(str(node.get("name", "")))


def check_family(family: str, size: str) -> None:
    """Refuses an unknown family, or a size the family does not have, naming the key."""
    if family not in FAMILIES:
        raise ValueError(f"model.family={family!r} is not one of {tuple(FAMILIES)}")
    if size not in FAMILIES[family]:
        raise ValueError(f"model.size={size!r} is not a size of family {family!r} {FAMILIES[family]}")
