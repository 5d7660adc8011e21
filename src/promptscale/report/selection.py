"""Which result rows a figure, table or dashboard reads, and under which evaluation protocol.

Every finished run writes one set of metric rows per protocol (``protocol`` column):

- ``generate``: greedy decoding, T5's postprocessor, an output that is no valid label counts
  as wrong. Lester et al. 2021 score this way (as T5 does); its rows add ``metric: "invalid"``
  per task, the percentage of generated outputs that were no valid label.
- ``rank``: rank classification (the log-likelihood of each verbalised choice); it can never
  be invalid, so it scores small and span-corruption models higher.

A row without ``protocol`` is ``rank``: stores written before protocols were recorded ranked.
``selected_by`` names the protocol that chose the run's best dev step (missing: ``rank``).

A figure is drawn under a protocol *choice*: ``paper`` (each method as the paper scored it:
generation, except prompt design, whose paper line is GPT-3 few-shot, which ranks the
choices), ``generate`` or ``rank``. Pure Python: the training path imports this (through the
W&B job summary) without pandas or matplotlib.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

from promptscale.data.tasks import TASKS
from promptscale.report.labels import method_label
from promptscale.store.results import ResultsStore
from promptscale.store.rows import INVALID, LEGACY_PROTOCOL, PROTOCOLS, row_protocol

PROTOCOL_CHOICES: tuple[str, ...] = ("paper", *PROTOCOLS)
"""What a figure can be drawn under: the paper's per-method protocol, or one for all methods."""

RANKED_IN_PAPER: frozenset[str] = frozenset({"prompt_design"})
"""Methods the paper scores by ranking: its prompt-design line is GPT-3 few-shot (Brown et al. 2020)."""

_PROTOCOL_TEXT = {"generate": "generation, invalid output = wrong", "rank": "rank classification"}


def row_selected_by(row: Mapping) -> str:
    """The protocol that chose the row's best dev step (``rank`` for rows that predate the column)."""
    return str(row.get("selected_by") or LEGACY_PROTOCOL)


def check_protocol(choice: str) -> str:
    """Returns ``choice`` if it is one of :data:`PROTOCOL_CHOICES`, else raises ``ValueError``."""
    if choice not in PROTOCOL_CHOICES:
        raise ValueError(f"unknown protocol {choice!r}; choose one of {', '.join(PROTOCOL_CHOICES)}")
    return choice


def method_protocol(method: str, choice: str) -> str:
    """The protocol whose rows represent ``method`` under the choice (``paper`` differs per method)."""
    if check_protocol(choice) != "paper":
        return choice
    return "rank" if method in RANKED_IN_PAPER else "generate"


def describe_protocol(choice: str, methods: list[str] | tuple[str, ...] = ()) -> str:
    """Legend/title text of a protocol choice, e.g. ``"paper protocol: generation, invalid output =
    wrong; Prompt Design: rank classification"`` (the exception named only if drawn)."""
    if check_protocol(choice) != "paper":
        return f"{choice} protocol: {_PROTOCOL_TEXT[choice]}"
    ranked = [method_label(m) for m in methods if method_protocol(m, "paper") == "rank"]
    text = f"paper protocol: {_PROTOCOL_TEXT['generate']}"
    return text + (f"; {', '.join(ranked)}: {_PROTOCOL_TEXT['rank']}" if ranked else "")


def usable(rows: list[dict]) -> list[dict]:
    """Rows a score can come from: a finished run's (``status: ok``) dev (``split: val``) metrics."""
    return [r for r in rows if r.get("status") == "ok" and r.get("split") == "val"]


def protocols_present(rows: list[dict]) -> list[str]:
    """The protocols the usable rows were measured under, in :data:`PROTOCOLS` order."""
    have = {row_protocol(r) for r in usable(rows)}
    return [p for p in PROTOCOLS if p in have] + sorted(have - set(PROTOCOLS))


def protocol_rows(rows: list[dict], choice: str) -> list[dict]:
    """The usable rows under a protocol choice.

    Runs with usable rows, but none under their method's protocol (e.g. runs from before
    protocols were recorded, drawn under ``generate``), are left out with one warning.

    Raises:
        ValueError: There are usable rows, but none under the choice; the message names the
            protocols the rows do have. (No usable rows at all returns ``[]``: the caller's own
            "no rows" error then applies.)
    """
    ok = usable(rows)
    chosen = [r for r in ok if row_protocol(r) == method_protocol(r["method"], choice)]
    if ok and not chosen:
        present = protocols_present(ok)
        raise ValueError(
            f"no result rows under the {choice} protocol ({describe_protocol(choice, [r['method'] for r in ok])}); "
            f"the rows have protocol(s): {', '.join(present)}. Pass --protocol {present[0]} "
            "(rows written before protocols were recorded are rank classification)"
        )
    _warn_left_out(ok, chosen, choice)
    return chosen


def _warn_left_out(ok: list[dict], chosen: list[dict], choice: str) -> None:
    """Warns once about runs whose rows are all under another protocol than the choice's."""
    kept = {r.get("run_id") for r in chosen}
    left: dict[str, set[str]] = {}
    for r in ok:
        if r.get("run_id") not in kept:
            left.setdefault(f"{r['method']}/{r['model']} seed {r.get('seed')}", set()).add(row_protocol(r))
    if left:
        warnings.warn(
            f"{len(left)} run(s) have no rows under the {choice} protocol and are left out: "
            + "; ".join(f"{k} (has {', '.join(sorted(v))})" for k, v in sorted(left.items())),
            stacklevel=3,
        )


def task_score(task: str, metrics: Mapping[str, float]) -> tuple[float | None, list[str]]:
    """A task's score from its metric values: the mean of its ``TaskSpec.metrics``.

    An unknown task averages every metric it has except :data:`INVALID`, which is a rate of
    malformed outputs, not a score.

    Returns:
        ``(score, missing)``: ``score`` is ``None`` when none of the task's metrics is present
        (e.g. only ``loss``); ``missing`` lists the wanted metrics that were absent.
    """
    wanted = TASKS[task].metrics if task in TASKS else tuple(m for m in metrics if m != INVALID)
    have = [m for m in wanted if m in metrics]
    if not have:
        return None, list(wanted)
    return sum(float(metrics[m]) for m in have) / len(have), sorted(set(wanted) - set(have))


def filter_experiment(rows: list[dict], experiment: str | None, where: str) -> list[dict]:
    """The rows of one experiment (all if ``None``).

    Raises:
        ValueError: No rows at all, or none of that experiment (the message lists those present).
    """
    if not rows:
        raise ValueError(f"no result rows in {where}; run promptscale-train first")
    if experiment is None:
        return rows
    present = sorted({str(r.get("experiment")) for r in rows})
    picked = [r for r in rows if r.get("experiment") == experiment]
    if not picked:
        raise ValueError(
            f"no result rows of experiment {experiment!r} in {where} (experiments present: {', '.join(present)})"
        )
    return picked


def load_rows(results: str | Path, experiment: str | None = None) -> list[dict]:
    """Rows of a results store, optionally of one experiment.

    Raises:
        ValueError: The store holds no rows (for that experiment).
    """
    return filter_experiment(ResultsStore(results).rows(), experiment, str(results))
