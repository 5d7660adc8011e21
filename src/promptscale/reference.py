"""Published numbers the reproduction is compared against, as data.

- T5 1.1 model sizes and their total parameter counts (Lester et al. 2021, Table 4; equal
  to what a randomly initialised ``T5ForConditionalGeneration`` of that shape counts).
- The Lester et al. 2021 Figure 1 curves, as re-tabulated in Vu, Lester et al. 2022 (SPoT)
  Table 4: SuperGLUE dev score, mean and std over 3 seeds.
- GPT-3 few-shot (K = 32) SuperGLUE scores from Brown et al. 2020 Table H.1, which Lester
  et al. 2021 plot as "prompt design".
"""

from __future__ import annotations

from dataclasses import dataclass

T5_SIZES: tuple[str, ...] = ("small", "base", "large", "xl", "xxl")

# Lester et al. 2021, Table 4 (frozen model parameters), T5 1.1.
T5_PARAMS: dict[str, int] = {
    "small": 76_961_152,
    "base": 247_577_856,
    "large": 783_150_080,
    "xl": 2_849_757_184,
    "xxl": 11_135_332_352,
}


@dataclass(frozen=True)
class RefPoint:
    """One published point: SuperGLUE score (percent) at a model size.

    Attributes:
        size: T5 size name (or a GPT-3 size label).
        params: Total model parameters.
        mean: Mean SuperGLUE score in percent.
        std: Standard deviation over seeds (0.0 where none is published).
        uncertain: The cell was marked "(?)" (ambiguous) when the table was transcribed.
    """

    size: str
    params: int
    mean: float
    std: float = 0.0
    uncertain: bool = False


SPOT_CITATION = "Vu, Lester et al. 2022 (SPoT) Table 4"
GPT3_CITATION = "Brown et al. 2020 Table H.1"


def _curve(cells: dict[str, tuple[float, float, bool]]) -> tuple[RefPoint, ...]:
    return tuple(RefPoint(s, T5_PARAMS[s], m, sd, q) for s, (m, sd, q) in cells.items())


# Vu, Lester et al. 2022 (SPoT) Table 4: the Lester et al. 2021 Figure 1 curves, SuperGLUE
# dev, mean +- std over 3 seeds. (size: (mean, std, uncertain "(?)" cell)).
LESTER_FIG1: dict[str, tuple[RefPoint, ...]] = {
    "model_tuning": _curve(
        {
            "small": (62.8, 0.8, False),
            "base": (73.7, 0.6, False),
            "large": (81.3, 0.6, False),
            "xl": (83.1, 0.2, False),
            "xxl": (89.9, 0.2, False),
        }
    ),
    "prompt_tuning": _curve(
        {
            "small": (59.8, 0.8, False),
            "base": (63.1, 1.1, False),
            "large": (74.5, 2.2, False),
            "xl": (79.2, 0.5, True),
            "xxl": (88.8, 0.2, True),
        }
    ),
    "multitask_model_tuning": _curve(
        {
            "small": (64.6, 0.2, False),
            "base": (79.2, 0.3, False),
            "large": (84.5, 0.1, False),
            "xl": (88.0, 0.9, True),
            "xxl": (90.1, 0.2, True),
        }
    ),
}

# Brown et al. 2020 Table H.1: GPT-3 few-shot (K = 32) SuperGLUE averages; the transcription
# may be shifted by a column. The 175B value, 71.8, is the *test-server* score (its dev
# average is about 73); the smaller models' values are dev scores.
GPT3_FEW_SHOT: tuple[RefPoint, ...] = (
    RefPoint("125M", 125_000_000, 50.2),
    RefPoint("350M", 350_000_000, 52.6),
    RefPoint("760M", 760_000_000, 56.8),
    RefPoint("1.3B", 1_300_000_000, 60.0),
    RefPoint("2.7B", 2_700_000_000, 64.3),
    RefPoint("6.7B", 6_700_000_000, 63.6),
    RefPoint("13B", 13_000_000_000, 66.3),
    RefPoint("175B", 175_000_000_000, 71.8),  # test server, not dev
)
