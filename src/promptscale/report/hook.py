"""The sweep-end hook: a Hydra callback that draws the named figures and logs the W&B summary run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from promptscale.report.registry import DrawOptions, check_figure_names, draw
from promptscale.report.selection import check_protocol, filter_experiment, load_rows

log = logging.getLogger(__name__)


def _tracker(config: Any):
    """The sweep's ``WandbSettings`` from its ``logger`` node, or ``None`` if its tracker is not W&B.

    Other trackers (``logger=csv``, ``logger=tensorboard``) get no summary run, nor does
    ``logger=none`` (W&B disabled): the figures are drawn all the same. Only a W&B node is instantiated here, so a
    Lightning logger config never creates folders or files at sweep end.
    """
    node = config.get("logger") if hasattr(config, "get") else None
    target = node.get("_target_") if node is not None and hasattr(node, "get") else None
    if not target:
        return None
    from hydra.utils import get_class, instantiate

    from promptscale.tracking import WandbSettings

    try:
        cls = get_class(str(target))
        if not (isinstance(cls, type) and issubclass(cls, WandbSettings)):
            log.info("tracker %s is not W&B: no summary run (figures and tables are drawn)", target)
            return None
        return instantiate(node)
    except Exception:  # noqa: BLE001 - a summary run is a nicety, never a failure
        log.exception("W&B settings in `logger` could not be read; no summary run")
        return None


class FigureCallback(Callback):
    """Hydra callback: when a multirun ends, draw the named figures, then log the W&B summary run.

    Each figure of ``figures`` (names of :data:`promptscale.report.FIGURE_NAMES`, e.g.
    ``figure1``, ``figure3``) is drawn from the whole store with the sweep's experiment as its
    ``experiment`` option: ``figure1`` draws that experiment's rows, ``figure3`` the ablation
    panels (the experiment alone if it is none of them). The first protocol of ``protocols``
    draws into ``out_dir``, every further one into ``out_dir/<protocol>/``. With a tracker that
    is not disabled, a ``job_type="summary"`` W&B run logs the results table and
    score-vs-parameters charts (:mod:`promptscale.report.wandb`). A problem is logged loudly
    but never fails the sweep (an unknown figure or protocol name fails at construction, before
    any job runs). The summary run also gets the figures drawn (images) and the gap's CI table;
    a tracker that is not W&B (``logger=csv``, ``logger=tensorboard``) gets none, and the figures
    are drawn all the same.

    Args:
        results: Results store path.
        out_dir: Output folder for the figures and tables.
        experiment: The sweep's experiment (all rows if ``None``).
        figures: Registered figure names to draw.
        protocols: Protocol choices to draw them under (``paper``, ``generate``, ``rank``).

    The W&B settings are read from the sweep's ``logger`` config only when the sweep ends:
    taking them as a constructor argument would make Hydra resolve ``logger.*`` (and any
    ``${oc.env:...}`` secret in it) in place before it saves ``.hydra/config.yaml``.
    """

    def __init__(
        self,
        results: str,
        out_dir: str,
        experiment: str | None = None,
        figures: Sequence[str] = ("figure1",),
        protocols: Sequence[str] = ("paper",),
    ) -> None:
        self.results = str(results)
        self.out_dir = str(out_dir)
        self.experiment = experiment
        self.figures = check_figure_names(list(figures), "figures")
        self.protocols = [check_protocol(p) for p in protocols]
        self.tracker = None
        self.drawn: dict[str, Path] = {}  # files of the first protocol's figures, for the W&B summary

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        self.tracker = _tracker(config)
        try:
            all_rows = load_rows(self.results)
            rows = filter_experiment(all_rows, self.experiment, self.results)
        except Exception:  # noqa: BLE001 - the sweep's results are safe in the store
            log.exception("FIGURE NOT DRAWN: no rows to draw from %s", self.results)
            return
        self.drawn = {}
        for protocol in self.protocols:
            for name in self.figures:
                paths = self._draw(name, all_rows, protocol)
                if protocol == self.protocols[0]:
                    self.drawn.update(paths)
        self._summary(rows)

    def _draw(self, name: str, rows: list[dict], protocol: str) -> dict[str, Path]:
        """Draws one figure (its files, or none); a failure is logged with the command that redraws it."""
        out = Path(self.out_dir) if protocol == self.protocols[0] else Path(self.out_dir) / protocol
        options = DrawOptions(experiment=self.experiment, protocol=protocol, results=self.results)
        try:
            paths = draw(name, rows, out, options)
        except Exception:  # noqa: BLE001 - the sweep's results are safe in the store
            log.exception(
                "FIGURE NOT DRAWN: %s (%s protocol) from %s failed (the sweep's results are saved; rerun "
                "`promptscale-figure --figure %s --protocol %s --results %s --out %s%s`)",
                name,
                protocol,
                self.results,
                name,
                protocol,
                self.results,
                out,
                f" --experiment {self.experiment}" if self.experiment else "",
            )
            return {}
        log.info("%s (%s protocol) written: %s", name, protocol, ", ".join(str(p) for p in paths.values()))
        return paths

    def _summary(self, rows: list[dict]) -> None:
        """The W&B summary run of the sweep's rows and drawn figures, unless the tracker is not W&B or is off."""
        if self.tracker is None or getattr(self.tracker, "mode", "disabled") == "disabled":
            return
        try:
            from promptscale.report.wandb import log_sweep_summary

            run_id = log_sweep_summary(
                rows,
                self.tracker,
                name=f"{self.experiment or 'sweep'}-summary",
                group=self.experiment,
                save_dir=self.out_dir,
                files=self.drawn,
            )
            log.info("W&B summary run %s logged (%s)", run_id, self.tracker.mode)
        except Exception:  # noqa: BLE001 - W&B must never fail a sweep
            log.exception("W&B SUMMARY NOT LOGGED for %s (the figure and results are saved)", self.results)
