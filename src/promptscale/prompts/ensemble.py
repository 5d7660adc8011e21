"""Prompt ensembling (Lester et al. 2021, Section 6 / Table 3): N prompts, one frozen model.

N prompts trained for the same task on the same frozen backbone are evaluated together: the
batch is replicated once per prompt and each copy gets its own prompt (``[N*B, P+T, H]``), so the
encoder runs once and every protocol is scored in that one pass (``evaluation.evaluate_batch``,
the method's own scoring path). Each example's ensemble prediction is the majority vote of the N
predictions under the runs' primary protocol (rank classification ties: the tied choice with
the highest summed log-likelihood over the prompts; generation ties: the earliest prompt's
answer). The table reports, per task, the average and best single prompt and the ensemble, all
measured in that same pass.

The runs come from ``prompts.runs``; the frozen backbone is rebuilt from the first run's saved
config (``job.rebuild_job``): a random-init (tiny) backbone is a pure function of the run's seed.
Prompts whose runs used different seeds on a random-init model had *different* backbones, which
the table flags (``shared_backbone`` = False) because their ensemble is then not meaningful.

Command line::

    python -m promptscale.prompts.ensemble [--runs outputs] [--results outputs/results.jsonl]
                                           [--experiment demo] [--out outputs/figures/demo]
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from promptscale.data.tasks import TASKS
from promptscale.evaluation import ExampleResult, evaluate_batch
from promptscale.job import Job, rebuild_job
from promptscale.metrics import score_examples, task_score
from promptscale.prompts.runs import PromptRun, find_prompt_runs, run_selection_parser

if TYPE_CHECKING:
    from promptscale.methods.prompt_tuning import PromptTuning

log = logging.getLogger(__name__)
ENSEMBLE_FILES = ("ensemble.md", "ensemble.csv")


def group_runs(runs: list[PromptRun]) -> dict[tuple, list[PromptRun]]:
    """Runs whose prompts can ensemble (same task, model, data, setting, prompt length)."""
    groups: dict[tuple, list[PromptRun]] = defaultdict(list)
    for run in runs:
        groups[run.group_key()].append(run)
    return dict(groups)


def replicate(batch: dict, n: int) -> dict:
    """An evaluation batch repeated ``n`` times: copy ``i`` is rows ``i*B .. i*B+B-1``."""
    b = batch["input_ids"].shape[0]
    out = {
        "input_ids": batch["input_ids"].repeat(n, 1),  # [N*B, T]
        "attention_mask": batch["attention_mask"].repeat(n, 1),  # [N*B, T]
        "examples": list(batch["examples"]) * n,
    }
    if "choice_labels" in batch:
        owner = batch["choice_owner"]  # [C]
        out["choice_labels"] = batch["choice_labels"].repeat(n, 1)  # [N*C, L]
        out["choice_owner"] = (owner.unsqueeze(0) + b * torch.arange(n, device=owner.device).unsqueeze(1)).reshape(-1)
    return out


class PromptEnsemble:
    """N soft prompts on one frozen prompt-tuning method, evaluated in one replicated pass.

    Args:
        method: A ``PromptTuning`` module (its backbone, tokenizer and evaluation settings are
            used; its own prompt is not).
        prompts: ``[N, P, H]``.
    """

    def __init__(self, method: PromptTuning, prompts: torch.Tensor) -> None:
        if prompts.dim() != 3 or prompts.shape[-1] != method.model.config.d_model:
            raise ValueError(f"prompts must be [N, P, {method.model.config.d_model}], got {tuple(prompts.shape)}")
        self.method = method
        self.prompts = prompts.to(method.model.device)

    @property
    def n(self) -> int:
        return self.prompts.shape[0]

    def row_prompts(self, batch: dict) -> torch.Tensor:
        """The prompt of every row of the replicated batch: ``[N*B, P, H]``."""
        return self.prompts.repeat_interleave(batch["input_ids"].shape[0], dim=0)

    @torch.no_grad()
    def choice_log_likelihoods(self, batch: dict) -> torch.Tensor:
        """Summed token log-probabilities of every candidate under every prompt: ``[N, C]``."""
        scores = self.method.choice_log_likelihoods(replicate(batch, self.n), prompts=self.row_prompts(batch))
        return scores.view(self.n, -1)  # [N, C]

    @torch.no_grad()
    def evaluate(self, batch: dict) -> tuple[list[list[ExampleResult]], list[Any]]:
        """Every prompt's results ``[N][B]`` (both protocols) and the vote ``[B]`` under the primary one."""
        results = evaluate_batch(self.method, replicate(batch, self.n), self.method.evaluation, self.row_prompts(batch))
        b = len(batch["examples"])
        per_prompt = [results[i * b : (i + 1) * b] for i in range(self.n)]
        protocol = self.method.evaluation.protocol
        votes = []
        for j in range(b):
            column = [per_prompt[i][j] for i in range(self.n)]
            summed = [sum(s) for s in zip(*(r.scores for r in column))] if protocol == "rank" else None
            votes.append(majority_vote([r.prediction(protocol) for r in column], summed))
        return per_prompt, votes


def majority_vote(predictions: list[Any], tie_scores: list[float] | None = None) -> Any:
    """The most frequent prediction.

    Ties go to the tied choice with the highest ``tie_scores[choice]`` (rank classification:
    summed log-likelihood over prompts), else to the earliest prompt's prediction.
    """
    counts = Counter(predictions)
    top = max(counts.values())
    tied = [p for p in dict.fromkeys(predictions) if counts[p] == top]
    if len(tied) > 1 and tie_scores:
        return max(
            tied, key=lambda p: tie_scores[p] if isinstance(p, int) and 0 <= p < len(tie_scores) else float("-inf")
        )
    return tied[0]


def evaluate_ensemble(job: Job, prompts: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Scores N prompts and their ensemble on the job's evaluation split, under its primary protocol.

    Returns:
        ``{task: {"individual": [metrics per prompt], "ensemble": metrics}}`` (percent).
    """
    method = job.method
    ens = PromptEnsemble(method, prompts)
    protocol = method.evaluation.protocol
    examples: dict[str, list] = defaultdict(list)
    individual: dict[str, list[list[Any]]] = defaultdict(lambda: [[] for _ in range(ens.n)])
    voted: dict[str, list[Any]] = defaultdict(list)
    for batch in job.data.val_dataloader():
        batch = method.transfer_batch_to_device(batch, method.model.device, 0)
        with job.autocast():  # the precision the runs were evaluated in
            per_prompt, vote = ens.evaluate(batch)
        for j, ex in enumerate(batch["examples"]):
            examples[ex.task].append(ex)
            voted[ex.task].append(vote[j])
            for i in range(ens.n):
                individual[ex.task][i].append(per_prompt[i][j].prediction(protocol))
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
        result = evaluate_ensemble(rebuild_job(first.job_dir), torch.stack([m.prompt for m in members]))
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


def main(argv: list[str] | None = None) -> int:
    """``python -m promptscale.ensemble``: the ensemble table of every group of prompt runs."""
    parser = run_selection_parser("python -m promptscale.prompts.ensemble", __doc__.split("\n")[0])
    parser.add_argument("--min-prompts", type=int, default=2, help="smallest ensemble to report")
    args = parser.parse_args(argv)
    runs = find_prompt_runs(args.runs, args.results, args.experiment)
    table = ensemble_table(runs, args.min_prompts)
    if table.empty:
        print(
            f"promptscale.prompts.ensemble: error: no group of >= {args.min_prompts} prompt-tuning runs with "
            f"checkpoints under {args.runs}",
            file=sys.stderr,
        )
        return 1
    for p in write_ensemble(table, args.out).values():
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
