"""Finished prompt-tuning runs on disk: their config, best checkpoint, prompt and stored scores.

Prompt ensembles and soft-prompt neighbours start from trained prompts. A run is a job folder
with Hydra's ``.hydra/config.yaml`` and a ``checkpoints/*.ckpt`` holding ``prompt.embedding``
(prompt tuning saves only the prompt). With a results store, only runs whose config has finished
rows are kept, and the checkpoint is the one of the row's best step. The runs' frozen backbone
is rebuilt through the job (``job.rebuild_job``) from the saved config.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from promptscale.evaluation import TaskResult
from promptscale.grouping import setting as setting_of
from promptscale.job import load_job_config, upgrade_config
from promptscale.store.hashing import config_hash, hashable_config
from promptscale.store.results import ResultsStore

STATE_KEY = "prompt.embedding"  # the prompt's name in a prompt-tuning checkpoint's state dict


@dataclass
class PromptRun:
    """One finished prompt-tuning job on disk.

    Attributes:
        job_dir: The job's output folder (``paths.output_dir``).
        checkpoint: Its best-dev checkpoint.
        config: The job config as saved, upgraded to today's shape (``paths.output_dir`` = ``job_dir``).
        config_hash: The results-store hash of the saved config (``None`` if it does not resolve).
        prompt: The trained prompt ``[P, H]``.
        stored: Best dev metrics saved in the checkpoint under the run's primary protocol,
            ``{task: {metric: value}}``.
    """

    job_dir: Path
    checkpoint: Path
    config: DictConfig
    config_hash: str | None
    prompt: torch.Tensor
    stored: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.config.seed)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.config.data.tasks)

    @property
    def experiment(self) -> str:
        return str(self.config.get("experiment_name", ""))

    @property
    def model(self) -> str:
        return str(self.config.model.name)

    @property
    def protocol(self) -> str:
        return str(self.config.evaluation.protocol)

    @property
    def setting(self) -> str:
        try:
            return setting_of(self.config)
        except KeyError:
            return ""

    def group_key(self) -> tuple:
        """Runs with equal keys share task, frozen model and data: their prompts can ensemble."""
        data = self.config.data
        return (self.experiment, self.model, self.tasks, self.setting, int(self.prompt.shape[0]),
                bool(data.get("target_sentinel", False)), str(data.eval_split), self.protocol)  # fmt: skip


def checkpoint_prompt(
    checkpoint: str | Path, protocol: str = "rank"
) -> tuple[torch.Tensor, dict[str, dict[str, float]]]:
    """The prompt ``[P, H]`` of a prompt-tuning checkpoint and its saved best dev metrics under ``protocol``.

    Raises:
        KeyError: The checkpoint holds no ``prompt.embedding`` (not a prompt-tuning run).
    """
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)  # our own files
    state = ckpt.get("state_dict", ckpt)
    if STATE_KEY not in state:
        raise KeyError(f"{checkpoint} holds no {STATE_KEY!r} (keys: {sorted(state)[:5]}...)")
    best = {
        t: TaskResult.from_state(r).metrics.get(protocol, {}) for t, r in (ckpt.get("promptscale_best") or {}).items()
    }
    return state[STATE_KEY].detach().float(), best


def saved_config_hash(job_dir: Path) -> str | None:
    """The hash the run's rows carry: of its config as saved (before any upgrade)."""
    try:
        cfg = OmegaConf.to_container(load_job_config(job_dir), resolve=True)
        return config_hash(hashable_config(cfg))
    except Exception:  # noqa: BLE001 - an unresolvable interpolation: no hash, still usable
        return None


def _checkpoint(job_dir: Path, steps: set[int]) -> Path | None:
    ckpts = sorted((job_dir / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    for ckpt in ckpts:  # the one the results row names (best-{step}.ckpt)
        if any(ckpt.stem == f"best-{s}" for s in steps):
            return ckpt
    return ckpts[-1] if ckpts else None


def finished_steps(results: str | Path) -> dict[str, set[int]]:
    """``{config_hash: {best steps}}`` of the store's finished rows."""
    ok: dict[str, set[int]] = defaultdict(set)
    for row in ResultsStore(results).rows():
        if row.get("status") == "ok":
            ok[row["config_hash"]].add(int(row.get("step") or -1))
    return ok


def find_prompt_runs(
    root: str | Path, results: str | Path | None = None, experiment: str | None = None
) -> list[PromptRun]:
    """Every prompt-tuning job under ``root`` with a checkpoint.

    Args:
        root: Folder searched recursively for ``<job>/.hydra/config.yaml``.
        results: Results store; when given, only jobs whose config hash has ``ok`` rows.
        experiment: Only jobs of this ``experiment_name``.

    Returns:
        The runs, sorted by group then seed.
    """
    ok = finished_steps(results) if results is not None else None
    runs = []
    for cfg_file in sorted(Path(root).rglob(".hydra/config.yaml")):
        job_dir = cfg_file.parent.parent
        if not (job_dir / "checkpoints").is_dir():
            continue
        cfg = upgrade_config(load_job_config(job_dir))
        if experiment is not None and cfg.get("experiment_name") != experiment:
            continue
        chash = saved_config_hash(job_dir)
        if ok is not None and chash not in ok:
            continue
        ckpt = _checkpoint(job_dir, ok.get(chash, set()) if ok is not None else set())
        if ckpt is None:
            continue
        try:
            prompt, stored = checkpoint_prompt(ckpt, str(cfg.evaluation.protocol))
        except KeyError:
            continue  # another method's checkpoint
        runs.append(PromptRun(job_dir, ckpt, cfg, chash, prompt, stored))
    runs.sort(key=lambda r: (str(r.group_key()), r.seed, str(r.job_dir)))
    return runs


def run_selection_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments every prompt-run tool shares: where runs are, which ones, where output goes."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--runs", default="outputs", help="folder searched for job dirs (.hydra/config.yaml + checkpoints/)"
    )
    parser.add_argument("--results", default=None, help="results store: keep only runs with ok rows")
    parser.add_argument("--experiment", default=None, help="only runs of this experiment")
    parser.add_argument("--out", default="outputs/figures", help="output folder")
    return parser
