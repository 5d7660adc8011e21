"""Prompt ensembling: one replicated forward for N prompts, majority vote, the Table 3 layout."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from promptscale.evaluation import evaluate_batch
from promptscale.job import rebuild_job
from promptscale.prompts.ensemble import (
    ENSEMBLE_FILES,
    PromptEnsemble,
    ensemble_table,
    evaluate_ensemble,
    main,
    majority_vote,
)
from promptscale.prompts.runs import checkpoint_prompt, find_prompt_runs
from promptscale.train import run

from conftest import FAST, compose_config


def train_prompt_runs(root: Path, jobs: list[list[str]], experiment: str = "demo") -> list[list[dict]]:
    """Tiny prompt-tuning jobs, each in its own folder with Hydra's ``.hydra/config.yaml``."""
    out = []
    for i, overrides in enumerate(jobs):
        job = root / "multiruns" / experiment / "t" / str(i)
        cfg = compose_config(
            root,
            [*FAST, "method=prompt_tuning", f"experiment_name={experiment}", *overrides, f"paths.output_dir={job}"],
        )
        (job / ".hydra").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, job / ".hydra" / "config.yaml")  # what Hydra writes for every job
        out.append(run(cfg))
    return out


def built(make_job, task: str, length: int = 4, *overrides: str):
    job = make_job(f"task={task}", f"method.prompt_length={length}", "data.eval_limit=12", "data.eval_batch_size=6",
                   *overrides)  # fmt: skip
    return job.method.eval(), job.data


def ranks(ens: PromptEnsemble, batch: dict) -> list[list[int]]:
    """Each prompt's rank-classification prediction per example, from the replicated pass: [N][B]."""
    scores = ens.choice_log_likelihoods(batch)  # [N, C]
    owner = batch["choice_owner"].tolist()
    out = []
    for row in scores.tolist():
        per_example = [[s for s, o in zip(row, owner) if o == b] for b in range(len(batch["examples"]))]
        out.append([max(range(len(s)), key=s.__getitem__) for s in per_example])
    return out


def disagreeing_prompts(method, batch, n: int = 3) -> torch.Tensor:
    """N random prompts where one disagrees with the others somewhere (a tiny random model is
    nearly prompt-blind, so draw candidates and pick a dissenter): ``[N, P, H]``."""
    torch.manual_seed(2)
    candidates = torch.randn(64, 4, method.model.config.d_model) * 5  # [64, P, H]
    preds = ranks(PromptEnsemble(method, candidates), batch)
    odd = next(i for i in range(1, 64) if preds[i] != preds[0])
    return candidates[[odd, *[j for j in range(64) if j != odd][: n - 1]]]


def test_one_replicated_forward_matches_each_prompt_alone(make_job):
    method, data = built(make_job, "cb", 4, "evaluation.protocol=rank")
    batch = next(iter(data.val_dataloader()))
    prompts = disagreeing_prompts(method, batch)  # [3, P, H]
    ens = PromptEnsemble(method, prompts)
    seen = {"encoder": [], "decoder": 0}
    hooks = [
        method.model.encoder.register_forward_pre_hook(
            lambda m, a, kw: seen["encoder"].append(tuple(kw["inputs_embeds"].shape)), with_kwargs=True
        ),
        method.model.decoder.register_forward_pre_hook(lambda m, a: seen.__setitem__("decoder", seen["decoder"] + 1)),
    ]
    b, t = batch["input_ids"].shape
    scores = ens.choice_log_likelihoods(batch)
    assert seen["encoder"] == [(3 * b, 4 + t, method.model.config.d_model)]  # [N*B, P+T, H], once
    assert seen["decoder"] == 1  # every choice of every prompt in one decoder pass
    assert scores.shape == (3, len(batch["choice_owner"]))  # [N, C]
    seen["encoder"] = []
    individual, vote = ens.evaluate(batch)  # both protocols, still one encoder pass
    for h in hooks:
        h.remove()
    assert seen["encoder"] == [(3 * b, 4 + t, method.model.config.d_model)]
    for i in range(3):  # each prompt's results equal the method's own, prompt by prompt
        with torch.no_grad():
            method.prompt.embedding.copy_(prompts[i])
            alone = evaluate_batch(method, batch, method.evaluation)
        assert [r.ranked for r in individual[i]] == [r.ranked for r in alone]
        assert [r.text for r in individual[i]] == [r.text for r in alone]
        ours, theirs = [s for r in individual[i] for s in r.scores], [s for r in alone for s in r.scores]
        assert [len(r.scores) for r in individual[i]] == [len(r.scores) for r in alone]
        assert ours == pytest.approx(theirs, abs=1e-4)  # flat: pytest 9.2 refuses nested approx
    predictions = [[r.ranked for r in results] for results in individual]
    assert len({tuple(p) for p in predictions}) > 1  # the prompts disagree: a real vote
    for j, col in enumerate(zip(*predictions)):
        top, count = Counter(col).most_common(1)[0]
        if count > 1:
            assert vote[j] == top  # the majority of the 3 individual predictions


def test_three_choice_votes_break_ties_by_likelihood(make_job):
    method, data = built(make_job, "cb", 4, "evaluation.protocol=rank")
    torch.manual_seed(1)
    ens = PromptEnsemble(method, torch.randn(3, 4, method.model.config.d_model) * 5)
    batch = next(iter(data.val_dataloader()))
    individual, vote = ens.evaluate(batch)
    scores = ens.choice_log_likelihoods(batch)
    owner = batch["choice_owner"].tolist()
    for j, col in enumerate(zip(*([r.ranked for r in results] for results in individual))):
        counts = Counter(col)
        if max(counts.values()) > 1:
            assert vote[j] == counts.most_common(1)[0][0]
        else:  # 1-1-1: the choice with the highest summed log-likelihood
            cols = [c for c, o in enumerate(owner) if o == j]
            assert vote[j] == int(scores[:, cols].sum(0).argmax())


def test_majority_vote():
    assert majority_vote([1, 0, 1]) == 1
    assert majority_vote([2, 0, 1], tie_scores=[-3.0, -1.0, -2.0]) == 1
    assert majority_vote(["a", "b"]) == "a"  # generation: the earliest prompt's answer


def test_generation_ensemble(make_job):
    method, data = built(make_job, "wsc", 4, "evaluation.max_new_tokens=3")
    ens = PromptEnsemble(method, torch.randn(3, 4, method.model.config.d_model))
    batch = next(iter(data.val_dataloader()))
    individual, vote = ens.evaluate(batch)
    assert len(individual) == 3 and len(vote) == len(batch["examples"])
    assert all(isinstance(v, str) for v in vote)


def test_rebuilt_job_has_the_trained_backbone_and_prompt(tmp_path):
    [rows] = train_prompt_runs(tmp_path, [["task=rte", "seed=3", "method.prompt_length=4"]])
    job_dir = Path(rows[0]["run_dir"])
    [ckpt] = (job_dir / "checkpoints").glob("best-*.ckpt")
    trained = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]["prompt.embedding"]
    torch.manual_seed(99)  # whatever ran before does not matter: nothing is replayed
    job = rebuild_job(job_dir, ckpt)
    assert torch.equal(job.method.prompt.embedding, trained)
    fresh = rebuild_job(job_dir)  # the backbone is a pure function of the saved config
    for (name, a), b in zip(job.method.model.state_dict().items(), fresh.method.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert job.method.best["rte"].step == rows[0]["step"]


def test_ensemble_table_and_cli(tmp_path):
    jobs = [
        [
            "task=rte",
            "seed=0",
            f"method.init_seed={i}",
            "method.prompt_length=4",
            "data.eval_limit=12",
            "recipe.max_steps=4",
        ]
        for i in range(3)
    ]
    rows = train_prompt_runs(tmp_path, jobs)
    runs = find_prompt_runs(tmp_path, tmp_path / "results.jsonl", "demo")
    assert len(runs) == 3 and {r.config_hash for r in runs} == {rs[0]["config_hash"] for rs in rows}
    prompt, stored = checkpoint_prompt(runs[0].checkpoint, runs[0].protocol)
    assert prompt.shape == (4, 32) and "rte" in stored and runs[0].protocol == "generate"
    # each prompt, re-evaluated on the rebuilt frozen model, scores what its run stored
    result = evaluate_ensemble(rebuild_job(runs[0].job_dir), torch.stack([r.prompt for r in runs]))
    assert [m["accuracy"] for m in result["rte"]["individual"]] == pytest.approx(
        [r.stored["rte"]["accuracy"] for r in runs]
    )

    out = tmp_path / "figs"
    assert (
        main(
            [
                "--runs",
                str(tmp_path),
                "--results",
                str(tmp_path / "results.jsonl"),
                "--experiment",
                "demo",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    for name in ENSEMBLE_FILES:
        assert (out / name).stat().st_size > 0
    table = pd.read_csv(out / "ensemble.csv")
    assert len(table) == 1
    r = table.iloc[0]
    assert r["task"] == "rte" and r["n_prompts"] == 3 and r["shared_backbone"]
    singles = [m["accuracy"] for m in result["rte"]["individual"]]
    assert r["average"] == pytest.approx(sum(singles) / 3) and r["best"] == pytest.approx(max(singles))
    assert r["ensemble"] == pytest.approx(result["rte"]["ensemble"]["accuracy"])
    assert "| demo | tiny_s |  | rte | 3 | 0,0,0 |" in (out / "ensemble.md").read_text()
    # prompts of different seeds on a random-init model had different backbones: flagged
    runs[1].config.seed = 1
    with pytest.warns(UserWarning, match="different frozen models"):
        assert not ensemble_table(runs)["shared_backbone"].iloc[0]
    assert main(["--runs", str(tmp_path / "nothing"), "--out", str(out)]) == 1
