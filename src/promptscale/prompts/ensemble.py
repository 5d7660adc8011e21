"""Prompt ensembling (Lester et al. 2021, Section 6 / Table 3): N prompts, one frozen model.

N prompts trained for the same task on the same frozen backbone are evaluated together in one
forward pass: the batch is replicated once per prompt, each copy gets its own prompt
(``[N*B, P+T, H]``), the encoder and the decoder run once, and each example's prediction is the
majority vote of the N rank-classification predictions (ties: the tied choice with the highest
summed log-likelihood over the prompts). Generation tasks (WSC) vote over the post-processed
generated texts (ties: the earliest prompt's answer). The table reports, per task, the average
and best single prompt and the ensemble, all measured in that same pass.

Prompt runs are found on disk: every job folder with Hydra's ``.hydra/config.yaml`` and a
``checkpoints/*.ckpt`` holding ``prompt.embedding`` (prompt tuning saves only the prompt). A
run's results-store rows are matched by config hash, so ``--results`` keeps finished runs only.
The frozen backbone is rebuilt exactly as the job built it (same seed, same construction
order), so a randomly initialised (tiny) backbone is the same tensor; prompts whose runs used
different seeds on a random-init model had *different* backbones, which the table flags
(``shared_backbone`` = False) because their ensemble is then not meaningful.

Command line::

    python -m promptscale.ensemble [--runs outputs] [--results outputs/results.jsonl]
                                   [--experiment demo] [--out outputs/figures/demo]
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from transformers.modeling_outputs import BaseModelOutput

from promptscale.data.formats import t5_postprocess
from promptscale.data.tasks import TASKS
from promptscale.grouping import setting as setting_of
from promptscale.metrics import score_examples, task_score
from promptscale.store.hashing import config_hash, hashable_config
from promptscale.store.results import ResultsStore

log = logging.getLogger(__name__)
PROMPT_KEY = "prompt.embedding"
ENSEMBLE_FILES = ("ensemble.md", "ensemble.csv")


# ---------------------------------------------------------------------- finding prompt runs


@dataclass
class PromptRun:
    """One finished prompt-tuning job on disk.

    Attributes:
        job_dir: The job's output folder (``paths.output_dir``).
        checkpoint: Its best-dev checkpoint.
        config: The job config (``paths.output_dir`` set to ``job_dir``).
        config_hash: The results-store hash of that config (``None`` if it does not resolve).
        prompt: The trained prompt ``[P, H]``.
        stored: Best dev metrics saved in the checkpoint, ``{task: {metric: value}}``.
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
    def setting(self) -> str:
        try:
            return setting_of(self.config)
        except KeyError:
            return ""

    def group_key(self) -> tuple:
        """Runs with equal keys share task, frozen model and data: their prompts can ensemble."""
        data = self.config.data
        return (
            self.experiment,
            self.model,
            self.tasks,
            self.setting,
            int(self.prompt.shape[0]),
            bool(data.get("target_sentinel", False)),
            str(data.eval_split),
            str(self.config.method.get("eval_mode", "rank")),
        )


def load_prompt(checkpoint: str | Path) -> tuple[torch.Tensor, dict[str, dict[str, float]]]:
    """The prompt ``[P, H]`` of a prompt-tuning checkpoint and its saved best dev metrics.

    Raises:
        KeyError: The checkpoint holds no ``prompt.embedding`` (not a prompt-tuning run).
    """
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - older pickles; our own files
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt)
    if PROMPT_KEY not in state:
        raise KeyError(f"{checkpoint} holds no {PROMPT_KEY!r} (keys: {sorted(state)[:5]}...)")
    best = {t: dict(r.get("metrics", {})) for t, r in (ckpt.get("promptscale_best") or {}).items()}
    return state[PROMPT_KEY].detach().float(), best


def load_job_config(job_dir: str | Path) -> tuple[DictConfig, str | None]:
    """A job's ``.hydra/config.yaml`` with ``paths.output_dir`` = ``job_dir``, and its config hash."""
    job_dir = Path(job_dir)
    cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    if OmegaConf.select(cfg, "paths") is not None:
        OmegaConf.update(cfg, "paths.output_dir", str(job_dir), force_add=True)
    try:
        chash = config_hash(hashable_config(OmegaConf.to_container(cfg, resolve=True)))
    except Exception:  # noqa: BLE001 - an unresolvable interpolation: no hash, still usable
        chash = None
    return cfg, chash


def _checkpoint(job_dir: Path, steps: set[int]) -> Path | None:
    ckpts = sorted((job_dir / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    for ckpt in ckpts:  # the one the results row names (best-{step}.ckpt)
        if any(ckpt.stem == f"best-{s}" for s in steps):
            return ckpt
    return ckpts[-1] if ckpts else None


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
    ok: dict[str, set[int]] | None = None
    if results is not None:
        ok = defaultdict(set)
        for r in ResultsStore(results).rows():
            if r.get("status") == "ok":
                ok[r["config_hash"]].add(int(r.get("step") or -1))
    runs = []
    for cfg_file in sorted(Path(root).rglob(".hydra/config.yaml")):
        job_dir = cfg_file.parent.parent
        if not (job_dir / "checkpoints").is_dir():
            continue
        cfg, chash = load_job_config(job_dir)
        if experiment is not None and cfg.get("experiment_name") != experiment:
            continue
        if ok is not None and chash not in ok:
            continue
        ckpt = _checkpoint(job_dir, ok.get(chash, set()) if ok is not None else set())
        if ckpt is None:
            continue
        try:
            prompt, stored = load_prompt(ckpt)
        except KeyError:
            continue  # another method's checkpoint
        runs.append(PromptRun(job_dir, ckpt, cfg, chash, prompt, stored))
    runs.sort(key=lambda r: (str(r.group_key()), r.seed, str(r.job_dir)))
    return runs


def group_runs(runs: list[PromptRun]) -> dict[tuple, list[PromptRun]]:
    """Runs whose prompts can ensemble (same task, model, data, setting, prompt length)."""
    groups: dict[tuple, list[PromptRun]] = defaultdict(list)
    for run in runs:
        groups[run.group_key()].append(run)
    return dict(groups)


def build_method(config: DictConfig):
    """Rebuilds a job's method and evaluation data exactly as ``train.run`` does.

    Seeding before construction makes a randomly initialised backbone the same tensor the
    job trained against. Loading records draws no random numbers, so only the eval split is
    read.

    Returns:
        ``(method, datamodule)``, the method in eval mode, the data attached.
    """
    import lightning as L
    from hydra.utils import instantiate

    L.seed_everything(config.seed, workers=True)
    data = instantiate(config.data, seed=config.seed)
    data.load(train=False)
    method = instantiate(config.method, _partial_=True)(model=instantiate(config.model), tasks=list(config.data.tasks))
    method.bind_records(data.records)
    data.attach(method.tokenizer, method.format, method.batch_size)
    return method.eval(), data


# ---------------------------------------------------------------------- the replicated forward


class PromptEnsemble:
    """N soft prompts on one frozen prompt-tuning model, evaluated in one replicated pass.

    Args:
        method: A ``PromptTuning`` module (its backbone, tokenizer and eval settings are used;
            its own prompt is not).
        prompts: ``[N, P, H]``.
    """

    def __init__(self, method, prompts: torch.Tensor) -> None:
        if prompts.dim() != 3 or prompts.shape[-1] != method.model.config.d_model:
            raise ValueError(f"prompts must be [N, P, {method.model.config.d_model}], got {tuple(prompts.shape)}")
        self.method = method
        self.prompts = prompts.to(method.model.device)

    @property
    def n(self) -> int:
        return self.prompts.shape[0]

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[BaseModelOutput, torch.Tensor]:
        """One encoder pass over the batch replicated per prompt.

        Rows ``n*B ... n*B+B-1`` are the batch under prompt ``n``.

        Returns:
            Encoder output ``[N*B, P+T, H]`` and its mask ``[N*B, P+T]``.
        """
        n, p, _ = self.prompts.shape
        b = input_ids.shape[0]
        embeds = self.method.model.get_input_embeddings()(input_ids)  # [B, T, H]
        prompts = self.prompts.to(embeds.dtype).repeat_interleave(b, dim=0)  # [N*B, P, H]
        inputs = torch.cat([prompts, embeds.repeat(n, 1, 1)], dim=1)  # [N*B, P+T, H]
        mask = torch.cat([attention_mask.new_ones(n * b, p), attention_mask.repeat(n, 1)], dim=1)  # [N*B, P+T]
        return self.method.model.encoder(inputs_embeds=inputs, attention_mask=mask, return_dict=True), mask

    @torch.no_grad()
    def choice_log_likelihoods(self, batch: dict) -> torch.Tensor:
        """Summed token log-probabilities of every candidate under every prompt: ``[N, C]``."""
        b = batch["input_ids"].shape[0]
        encoded, mask = self.encode(batch["input_ids"], batch["attention_mask"])
        owner = batch["choice_owner"]  # [C]
        rows = (owner.unsqueeze(0) + b * torch.arange(self.n, device=owner.device).unsqueeze(1)).reshape(-1)  # [N*C]
        labels = batch["choice_labels"].repeat(self.n, 1)  # [N*C, L]
        logits = self.method.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoded.last_hidden_state[rows]),  # [N*C, P+T, H]
            attention_mask=mask[rows],
            labels=labels,
        ).logits  # [N*C, L, V]
        logp = F.log_softmax(logits.float(), dim=-1)
        token_logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [N*C, L]
        return (token_logp * (labels >= 0)).sum(dim=-1).view(self.n, -1)  # [N, C]

    def rank(self, batch: dict) -> tuple[list[list[int]], list[int]]:
        """Rank classification: (per prompt ``[N][B]`` choice indices, majority vote ``[B]``)."""
        scores = self.choice_log_likelihoods(batch)  # [N, C]
        owner = batch["choice_owner"].tolist()
        b = len(batch["examples"])
        spans: dict[int, list[int]] = defaultdict(list)  # example -> its candidates' columns
        for c, ex in enumerate(owner):
            spans[ex].append(c)
        individual = [[-1] * b for _ in range(self.n)]
        vote = [-1] * b
        for ex in range(b):
            cols = spans.get(ex)
            if not cols:
                continue
            s = scores[:, cols]  # [N, K]
            preds = s.argmax(dim=1).tolist()  # [N]
            for i, pred in enumerate(preds):
                individual[i][ex] = pred
            vote[ex] = majority_vote(preds, s.sum(dim=0).tolist())
        return individual, vote

    @torch.no_grad()
    def generate(self, batch: dict) -> tuple[list[list[Any]], list[Any]]:
        """Greedy decoding under every prompt: (per prompt ``[N][B]`` answers, vote ``[B]``)."""
        m = self.method
        encoded, mask = self.encode(batch["input_ids"], batch["attention_mask"])
        out = m.model.generate(
            encoder_outputs=encoded, attention_mask=mask, max_new_tokens=m.max_new_tokens, do_sample=False, num_beams=1
        )  # [N*B, L']
        texts = m.tokenizer.batch_decode(out, skip_special_tokens=True)  # drops sentinels too
        examples = batch["examples"]
        b = len(examples)
        individual = [
            [t5_postprocess(ex.task, texts[i * b + j], ex) for j, ex in enumerate(examples)] for i in range(self.n)
        ]
        return individual, [majority_vote([individual[i][j] for i in range(self.n)]) for j in range(b)]

    def predict(self, batch: dict) -> tuple[list[list[Any]], list[Any]]:
        """Per-prompt predictions and the ensemble's, the way the method predicts."""
        if self.method.eval_mode == "rank" and all(ex.choices for ex in batch["examples"]):
            return self.rank(batch)
        return self.generate(batch)


def majority_vote(predictions: list[Any], tie_scores: list[float] | None = None) -> Any:
    """The most frequent prediction.

    Ties go to the tied choice with the highest ``tie_scores[choice]`` (rank classification:
    summed log-likelihood over prompts), else to the earliest prompt's prediction.
    """
    counts = Counter(predictions)
    top = max(counts.values())
    tied = [p for p in dict.fromkeys(predictions) if counts[p] == top]
    if len(tied) > 1 and tie_scores is not None:
        return max(
            tied, key=lambda p: tie_scores[p] if isinstance(p, int) and 0 <= p < len(tie_scores) else float("-inf")
        )
    return tied[0]


def evaluate_ensemble(method, data, prompts: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Scores N prompts and their ensemble on the data's evaluation split.

    Returns:
        ``{task: {"individual": [metrics per prompt], "ensemble": metrics}}`` (percent).
    """
    ens = PromptEnsemble(method, prompts)
    examples: dict[str, list] = defaultdict(list)
    individual: dict[str, list[list[Any]]] = defaultdict(lambda: [[] for _ in range(ens.n)])
    voted: dict[str, list[Any]] = defaultdict(list)
    with torch.no_grad():
        for batch in data.val_dataloader():
            batch = method.transfer_batch_to_device(batch, method.model.device, 0)
            per_prompt, vote = ens.predict(batch)
            for j, ex in enumerate(batch["examples"]):
                examples[ex.task].append(ex)
                voted[ex.task].append(vote[j])
                for i in range(ens.n):
                    individual[ex.task][i].append(per_prompt[i][j])
    return {
        task: {
            "individual": [score_examples(task, exs, preds) for preds in individual[task]],
            "ensemble": score_examples(task, exs, voted[task]),
        }
        for task, exs in examples.items()
    }


# ---------------------------------------------------------------------- the table


def ensemble_table(runs: list[PromptRun], min_prompts: int = 2) -> pd.DataFrame:
    """Lester et al. 2021 Table 3 from prompt runs: average / best single prompt / ensemble.

    One row per (experiment, model, setting, task) group with at least ``min_prompts``
    prompts, plus, per (experiment, model, setting) with several scored tasks, a ``score`` row
    averaging each column over those tasks. Values are task scores in percent (mean of a task's
    metrics), all measured in the same replicated forward pass.
    """
    records = []
    for key, members in group_runs(runs).items():
        if len(members) < min_prompts:
            log.info("skipping %s: %d prompt(s)", key, len(members))
            continue
        first = members[0]
        seeds = [m.seed for m in members]
        random_init = str(first.config.model.get("init", "pretrained")) == "random"
        shared = not random_init or len(set(seeds)) == 1
        if not shared:
            warnings.warn(
                f"{first.experiment}/{first.model}/{','.join(first.tasks)}: the backbone is randomly "
                f"initialised and the prompts come from seeds {seeds}, i.e. from different frozen "
                f"models; all are evaluated on seed {first.seed}'s backbone (shared_backbone=False)",
                stacklevel=2,
            )
        method, data = build_method(first.config)
        result = evaluate_ensemble(method, data, torch.stack([m.prompt for m in members]))
        for task, res in result.items():
            singles = [task_score(task, m) for m in res["individual"]]
            records.append(
                {
                    "experiment": first.experiment,
                    "model": first.model,
                    "setting": first.setting,
                    "task": task,
                    "n_prompts": len(members),
                    "seeds": ",".join(str(s) for s in seeds),
                    "average": sum(singles) / len(singles),
                    "best": max(singles),
                    "ensemble": task_score(task, res["ensemble"]),
                    "stored": _mean([task_score(task, m.stored[task]) for m in members if task in m.stored]),
                    "shared_backbone": shared,
                }
            )
    df = pd.DataFrame.from_records(
        records,
        columns=[
            "experiment",
            "model",
            "setting",
            "task",
            "n_prompts",
            "seeds",
            "average",
            "best",
            "ensemble",
            "stored",
            "shared_backbone",
        ],
    )
    extra = []
    for (exp, model, setting), t in df.groupby(["experiment", "model", "setting"], sort=False):
        t = t[t["task"].map(lambda x: x in TASKS and TASKS[x].in_score)]
        if len(t) > 1:
            extra.append(
                {
                    "experiment": exp,
                    "model": model,
                    "setting": setting,
                    "task": "score",
                    "n_prompts": int(t["n_prompts"].min()),
                    "seeds": "",
                    **{c: float(t[c].mean()) for c in ("average", "best", "ensemble", "stored")},
                    "shared_backbone": bool(t["shared_backbone"].all()),
                }
            )
    if extra:
        df = pd.concat([df, pd.DataFrame.from_records(extra)], ignore_index=True)
    return df


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def ensemble_markdown(table: pd.DataFrame) -> str:
    """The ensemble table in markdown, with the paper's XXL numbers for reference."""
    lines = [
        "# Prompt ensembling (Lester et al. 2021, Table 3)",
        "",
        "Task score (percent) of N prompts on one frozen model, all from one replicated forward pass: "
        "average and best single prompt, and the majority-vote ensemble. `stored`: the runs' own best "
        "dev scores from their checkpoints. `score`: mean over the tasks above. Reference, XXL, five "
        "prompts, SuperGLUE: average 90.5, best 91.0, ensemble 91.3.",
        "",
        "| Experiment | Model | Setting | Task | Prompts | Seeds | Average | Best | Ensemble | Stored "
        "| Shared backbone |",
        "|---|---|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.experiment} | {r.model} | {r.setting} | {r.task} | {r.n_prompts} | {r.seeds} | "
            f"{r.average:.1f} | {r.best:.1f} | {r.ensemble:.1f} | {r.stored:.1f} | "
            f"{'yes' if r.shared_backbone else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def write_ensemble(table: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Writes ``ensemble.md`` and ``ensemble.csv``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ENSEMBLE_FILES}
    paths["ensemble.md"].write_text(ensemble_markdown(table), encoding="utf-8")
    table.to_csv(paths["ensemble.csv"], index=False)
    return paths


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


def main(argv: list[str] | None = None) -> int:
    """``python -m promptscale.ensemble``: the ensemble table of every group of prompt runs."""
    parser = run_selection_parser("python -m promptscale.ensemble", __doc__.split("\n")[0])
    parser.add_argument("--min-prompts", type=int, default=2, help="smallest ensemble to report")
    args = parser.parse_args(argv)
    runs = find_prompt_runs(args.runs, args.results, args.experiment)
    table = ensemble_table(runs, args.min_prompts)
    if table.empty:
        print(
            f"promptscale.ensemble: error: no group of >= {args.min_prompts} prompt-tuning runs with "
            f"checkpoints under {args.runs}",
            file=sys.stderr,
        )
        return 1
    for p in write_ensemble(table, args.out).values():
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
