"""Nearest vocabulary neighbours of learned soft prompts (Lester et al. 2021, Section 7).

For every prompt position, the top-k vocabulary tokens by cosine similarity between the prompt
vector and the frozen model's input embedding matrix. Lester et al. found that neighbours form
tight semantic clusters, that several positions often share a nearest neighbour, and that with
class-label initialisation the class labels persist among the neighbours. The summary measures
exactly that: how many positions share their nearest neighbour with another position, the
largest such cluster, and which of the task's verbalisers (``TaskSpec.label_words``; a word
counts when one of its sub-word pieces is a neighbour) appear, and where.

Command line (prompt runs are found by :mod:`promptscale.prompts.runs`)::

    python -m promptscale.prompts.neighbours [--runs outputs] [--results outputs/results.jsonl]
                                     [--experiment demo] [--out outputs/figures/demo] [-k 5]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from promptscale.data.tasks import get_task

NEIGHBOUR_FILES = ("neighbours.md", "neighbours.csv", "neighbours_summary.csv")


def nearest_tokens(prompt: torch.Tensor, embeddings: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k vocabulary rows by cosine similarity for every prompt position.

    Args:
        prompt: ``[P, H]``.
        embeddings: The input embedding matrix ``[V, H]``.
        k: Neighbours per position.

    Returns:
        Token ids ``[P, k]`` and similarities ``[P, k]``, most similar first.
    """
    k = min(k, embeddings.shape[0])
    sims = F.normalize(prompt.float(), dim=-1) @ F.normalize(embeddings.float(), dim=-1).T  # [P, V]
    values, ids = sims.topk(k, dim=-1)  # [P, k]
    return ids, values


def label_pieces(tokenizer, words: tuple[str, ...] | list[str]) -> dict[str, list[int]]:
    """Sub-word token ids of each label word (no special tokens, no bare word-boundary piece)."""
    out = {}
    for word in words:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        out[word] = [i for i in ids if tokenizer.convert_ids_to_tokens(i) not in ("▁", "")]
    return out


def neighbour_frame(ids: torch.Tensor, sims: torch.Tensor, tokenizer) -> pd.DataFrame:
    """Long table: ``position, rank, token_id, token, similarity`` (rank 1 = nearest)."""
    records = []
    for pos in range(ids.shape[0]):
        for rank in range(ids.shape[1]):
            tid = int(ids[pos, rank])
            records.append(
                {
                    "position": pos,
                    "rank": rank + 1,
                    "token_id": tid,
                    "token": tokenizer.convert_ids_to_tokens(tid),
                    "similarity": float(sims[pos, rank]),
                }
            )
    return pd.DataFrame.from_records(records, columns=["position", "rank", "token_id", "token", "similarity"])


def summarize(ids: torch.Tensor, labels: dict[str, list[int]]) -> dict[str, Any]:
    """Clusters and class labels among the neighbours.

    Args:
        ids: Neighbour ids ``[P, k]`` from :func:`nearest_tokens`.
        labels: Label word -> its token ids (:func:`label_pieces`).

    Returns:
        ``positions``; ``distinct_nearest`` (distinct nearest-neighbour tokens);
        ``shared_positions`` (positions whose nearest neighbour is also another position's);
        ``largest_cluster`` (most positions sharing one nearest neighbour); ``label_positions``
        (word -> positions with one of its pieces among the top-k); ``labels_found`` (the
        words with any such position).
    """
    nearest = ids[:, 0].tolist()
    counts = Counter(nearest)
    neighbour_sets = [set(row) for row in ids.tolist()]
    label_positions = {
        word: [p for p, ns in enumerate(neighbour_sets) if ns & set(pieces)] for word, pieces in labels.items()
    }
    return {
        "positions": len(nearest),
        "distinct_nearest": len(counts),
        "shared_positions": sum(c for c in counts.values() if c > 1),
        "largest_cluster": max(counts.values()) if counts else 0,
        "label_positions": label_positions,
        "labels_found": [w for w, ps in label_positions.items() if ps],
    }


def prompt_neighbours(
    prompt: torch.Tensor, embeddings: torch.Tensor, tokenizer, task: str, k: int = 5
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Neighbour table and summary of one task's prompt (labels: the task's ``label_words``)."""
    ids, sims = nearest_tokens(prompt, embeddings, k)
    frame = neighbour_frame(ids, sims, tokenizer)
    return frame, summarize(ids, label_pieces(tokenizer, get_task(task).label_words))


def backbone_embeddings(config) -> tuple[torch.Tensor, Any]:
    """A job's frozen input embeddings ``[V, H]`` and tokenizer, from its saved config.

    The backbone comes from the job's own model spec (``job.model_spec``): pretrained weights,
    or a random init that is a pure function of the run's seed.
    """
    from promptscale.job import model_spec

    spec = model_spec(config)
    return spec.build().get_input_embeddings().weight.detach().float(), spec.build_tokenizer()


def neighbour_tables(runs, k: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Neighbours of every prompt run: (long table, one summary row per run).

    Args:
        runs: ``promptscale.prompts.runs.PromptRun`` objects (single-task prompt-tuning runs).
        k: Neighbours per position.
    """
    long, summary = [], []
    cache: dict[tuple, tuple[torch.Tensor, Any]] = {}
    for run in runs:
        key = (run.model, run.seed if str(run.config.model.get("init")) == "random" else None)
        if key not in cache:
            cache[key] = backbone_embeddings(run.config)
        embeddings, tokenizer = cache[key]
        task = run.tasks[0]
        frame, summ = prompt_neighbours(run.prompt, embeddings, tokenizer, task, k)
        front = {
            "experiment": run.experiment,
            "model": run.model,
            "setting": run.setting,
            "task": task,
            "seed": run.seed,
            "init": str(run.config.method.get("init", "")),
            "init_seed": run.config.method.get("init_seed"),
            "job": str(run.job_dir),
        }
        long.append(frame.assign(**front)[[*front, *frame.columns]])
        summary.append(
            {
                **front,
                **{key: v for key, v in summ.items() if key != "label_positions"},
                "labels_found": ", ".join(summ["labels_found"]),
                "label_positions": "; ".join(
                    f"{w}: {','.join(map(str, ps))}" for w, ps in summ["label_positions"].items() if ps
                ),
            }
        )
    columns = [
        "experiment",
        "model",
        "setting",
        "task",
        "seed",
        "init",
        "init_seed",
        "job",
        "positions",
        "distinct_nearest",
        "shared_positions",
        "largest_cluster",
        "labels_found",
        "label_positions",
    ]
    long_df = pd.concat(long, ignore_index=True) if long else pd.DataFrame()
    return long_df, pd.DataFrame.from_records(summary, columns=columns)


def neighbours_markdown(long: pd.DataFrame, summary: pd.DataFrame, max_positions: int = 20) -> str:
    """Summary table, then one table per task (per run: the first ``max_positions`` positions)."""
    lines = [
        "# Soft-prompt nearest neighbours (Lester et al. 2021, Section 7)",
        "",
        "Cosine similarity between each prompt vector and the frozen input embeddings. `shared`: "
        "positions whose nearest token is also another position's nearest; `largest`: the biggest "
        "such cluster; `labels found`: the task's verbalisers with a sub-word piece among a "
        "position's top-k (positions listed).",
        "",
        "| Task | Model | Setting | Seed | Init (seed) | Positions | Distinct nearest | Shared | Largest "
        "| Labels found | Label positions |",
        "|---|---|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in summary.itertuples():
        lines.append(
            f"| {r.task} | {r.model} | {r.setting} | {r.seed} | {r.init} ({r.init_seed}) | {r.positions} | "
            f"{r.distinct_nearest} | {r.shared_positions} | {r.largest_cluster} | {r.labels_found} | "
            f"{r.label_positions} |"
        )
    for task, t in long.groupby("task", sort=False) if not long.empty else []:
        lines += ["", f"## {task}"]
        for (model, setting, seed, init, job), run in t.groupby(
            ["model", "setting", "seed", "init", "job"], sort=False
        ):
            lines += [
                "",
                f"### {model}{', ' + setting if setting else ''}, seed {seed}, init {init} ({job})",
                "",
                "| Position | Nearest tokens (cosine) |",
                "|---:|---|",
            ]
            for pos, p in list(run.groupby("position", sort=True))[:max_positions]:
                toks = ", ".join(f"`{_cell(tok)}` ({sim:.2f})" for tok, sim in zip(p["token"], p["similarity"]))
                lines.append(f"| {pos} | {toks} |")
    return "\n".join(lines) + "\n"


def _cell(token: str) -> str:
    """A token shown inside a markdown table cell (newlines, pipes and backticks escaped)."""
    return str(token).replace("\n", "\\n").replace("|", "\\|").replace("`", "'")


def write_neighbours(long: pd.DataFrame, summary: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Writes ``neighbours.md``, ``neighbours.csv`` (long) and ``neighbours_summary.csv``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in NEIGHBOUR_FILES}
    paths["neighbours.md"].write_text(neighbours_markdown(long, summary), encoding="utf-8")
    long.to_csv(paths["neighbours.csv"], index=False)
    summary.to_csv(paths["neighbours_summary.csv"], index=False)
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python -m promptscale.prompts.neighbours``: neighbour tables of every prompt run found."""
    from promptscale.prompts.runs import find_prompt_runs, run_selection_parser

    parser = run_selection_parser("python -m promptscale.prompts.neighbours", __doc__.split("\n")[0])
    parser.add_argument("-k", type=int, default=5, help="neighbours per prompt position")
    args = parser.parse_args(argv)
    runs = [r for r in find_prompt_runs(args.runs, args.results, args.experiment) if len(r.tasks) == 1]
    if not runs:
        print(
            "promptscale.prompts.neighbours: error: no single-task prompt-tuning run with a checkpoint "
            f"under {args.runs}",
            file=sys.stderr,
        )
        return 1
    long, summary = neighbour_tables(runs, args.k)
    for p in write_neighbours(long, summary, args.out).values():
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
