"""What a sweep still lacks: the configs an experiment's sweep expects that the store has not finished.

The cells are enumerated as Hydra's basic sweeper enumerates them: the experiment's
``hydra.sweeper.params``, then the command-line overrides (a key given on both: the command
line's wins; ``key=a,b`` sweeps, ``key=a`` pins), their product in that order. Each cell is
composed (``promptscale.job.compose``) and hashed (``JobSpec``) exactly as the training command
would, so a multi-task method, whose cells over the ``task`` axis share one config, counts once.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

EXPERIMENT_DIR = Path(__file__).resolve().parents[3] / "conf" / "experiment"
MISSING_COLUMNS = ["config_hash", "method", "model", "seed", "tasks", "status", "overrides"]


class UnknownExperiment(ValueError):
    """No ``conf/experiment/<name>.yaml``; the message lists the experiments there are."""


def experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))


def sweep_cells(experiment: str, overrides: list[str] = ()) -> list[list[str]]:
    """The override lists of every job of ``promptscale-train experiment=NAME overrides...`` (multirun).

    Raises:
        UnknownExperiment: No such experiment config.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = EXPERIMENT_DIR / f"{experiment}.yaml"
    if not path.is_file():
        raise UnknownExperiment(f"no experiment {experiment!r} in {EXPERIMENT_DIR} (have: {', '.join(experiments())})")
    params = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.params") or {}
    lines = [f"{key}={value}" for key, value in params.items()] + list(overrides)
    axes: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        if override.is_sweep_override():
            axes[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            axes[key] = [override.input_line]
    return [list(cell) for cell in itertools.product(*axes.values())]


def expected_configs(experiment: str, overrides: list[str] = ()) -> pd.DataFrame:
    """One row per distinct config of the sweep: ``config_hash, method, model, seed, tasks, overrides``.

    Cells that compose to one config (a multi-task method over the ``task`` axis) are one row,
    whose ``overrides`` are its first cell's.
    """
    from promptscale.job import JobSpec, compose

    records: dict[str, dict] = {}
    cells = sweep_cells(experiment, overrides)
    for cell in cells:
        try:
            spec = JobSpec.from_config(compose([f"experiment={experiment}", *cell]))
        except Exception as err:  # noqa: BLE001 - name the cell, whatever Hydra or the checks raised
            raise ValueError(f"experiment {experiment}: cell {' '.join(cell)} does not compose: {err}") from err
        cfg = spec.cfg
        records.setdefault(
            spec.config_hash,
            {"config_hash": spec.config_hash, "method": spec.method_name, "model": str(cfg.model.name),
             "seed": cfg.seed, "tasks": ",".join(cfg.data.tasks), "overrides": " ".join(cell)},
        )  # fmt: skip
    frame = pd.DataFrame(list(records.values()))
    frame.attrs["cells"] = len(cells)  # the jobs the sweep launches (several may share a config)
    return frame


def missing_configs(rows: list[dict], experiment: str, overrides: list[str] = ()) -> pd.DataFrame:
    """The sweep's configs without a finished run in ``rows``, each with its status.

    ``status`` is ``failed`` where the store holds a failed run of the config (it diverged or
    crashed and will train again), else ``missing``. ``attrs["expected"]`` is the number of
    distinct configs of the sweep, ``attrs["cells"]`` the number of jobs it launches.
    """
    expected = expected_configs(experiment, overrides)
    finished = {str(r["config_hash"]) for r in rows if r.get("status") == "ok"}
    failed = {str(r["config_hash"]) for r in rows if r.get("status") == "failed"}
    out = expected[~expected["config_hash"].isin(finished)].copy()
    out["status"] = ["failed" if h in failed else "missing" for h in out["config_hash"]]
    out = out.reindex(columns=MISSING_COLUMNS).reset_index(drop=True)
    out.attrs.update(expected=len(expected), cells=expected.attrs["cells"])
    return out
