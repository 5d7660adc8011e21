"""Prompt ensembling: one replicated forward for N prompts, majority vote, the Table 3 layout."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from promptscale.ensemble import (
    ENSEMBLE_FILES,
    PromptEnsemble,
    build_method,
    ensemble_table,
    evaluate_ensemble,
    find_prompt_runs,
    load_prompt,
    main,
    majority_vote,
)
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


def built(make_config, task: str, length: int = 4):
    cfg = make_config(f"task={task}", f"method.prompt_length={length}", "data.eval_limit=12", "data.eval_batch_size=6")
    data = instantiate(cfg.data, seed=0)
    data.load()
    torch.manual_seed(0)  # the same random backbone whatever ran before
    method = instantiate(cfg.method, _partial_=True)(model=instantiate(cfg.model), tasks=[task]).eval()
    data.attach(method.tokenizer, method.format, method.batch_size)
    return method, data


def disagreeing_prompts(method, batch, n: int = 3) -> torch.Tensor:
    """N random prompts where one disagrees with the others somewhere (a tiny random model is
    nearly prompt-blind, so draw candidates and pick a dissenter): ``[N, P, H]``."""
    torch.manual_seed(2)
    candidates = torch.randn(64, 4, method.model.config.d_model) * 5  # [64, P, H]
    preds, _ = PromptEnsemble(method, candidates).rank(batch)
    odd = next(i for i in range(1, 64) if preds[i] != preds[0])
    return candidates[[odd, *[j for j in range(64) if j != odd][: n - 1]]]


def test_one_replicated_forward_matches_each_prompt_alone(make_config):
    method, data = built(make_config, "cb")
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
    individual, vote = ens.rank(batch)
    for h in hooks:
        h.remove()
    assert seen["encoder"] == [(3 * b, 4 + t, method.model.config.d_model)]  # [N*B, P+T, H], once
    assert seen["decoder"] == 1  # every choice of every prompt in one decoder pass
    assert ens.choice_log_likelihoods(batch).shape == (3, len(batch["choice_owner"]))  # [N, C]
    for i in range(3):  # each prompt's predictions equal the method's own, prompt by prompt
        with torch.no_grad():
            method.prompt.embedding.copy_(prompts[i])
        assert individual[i] == method.rank(batch)
    assert len({tuple(p) for p in individual}) > 1  # the prompts disagree: a real vote
    for j, col in enumerate(zip(*individual)):
        top, count = Counter(col).most_common(1)[0]
        if count > 1:
            assert vote[j] == top  # the majority of the 3 individual predictions


def test_three_choice_votes_break_ties_by_likelihood(make_config):
    method, data = built(make_config, "cb")
    torch.manual_seed(1)
    ens = PromptEnsemble(method, torch.randn(3, 4, method.model.config.d_model) * 5)
    batch = next(iter(data.val_dataloader()))
    individual, vote = ens.rank(batch)
    scores = ens.choice_log_likelihoods(batch)
    owner = batch["choice_owner"].tolist()
    for j, col in enumerate(zip(*individual)):
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


def test_generation_ensemble(make_config):
    method, data = built(make_config, "wsc")
    method.max_new_tokens = 3
    ens = PromptEnsemble(method, torch.randn(3, 4, method.model.config.d_model))
    batch = next(iter(data.val_dataloader()))
    individual, vote = ens.predict(batch)
    assert len(individual) == 3 and len(vote) == len(batch["examples"])
    assert all(isinstance(v, str) for v in vote)


def test_rebuilt_backbone_is_the_trained_one(make_config):
    cfg = make_config("task=rte", "seed=3")
    import lightning as L

    L.seed_everything(3)
    data = instantiate(cfg.data, seed=3)
    data.load()
    trained = instantiate(cfg.method, _partial_=True)(model=instantiate(cfg.model), tasks=["rte"])
    method, _ = build_method(cfg)
    for (name, a), b in zip(trained.model.state_dict().items(), method.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_ensemble_table_and_cli(tmp_path):
    jobs = [
        [
            "task=rte",
            "seed=0",
            f"method.init_seed={i}",
            "method.prompt_length=4",
            "data.eval_limit=12",
            "trainer.max_steps=4",
        ]
        for i in range(3)
    ]
    rows = train_prompt_runs(tmp_path, jobs)
    runs = find_prompt_runs(tmp_path, tmp_path / "results.jsonl", "demo")
    assert len(runs) == 3 and {r.config_hash for r in runs} == {rs[0]["config_hash"] for rs in rows}
    prompt, stored = load_prompt(runs[0].checkpoint)
    assert prompt.shape == (4, 32) and "rte" in stored
    # each prompt, re-evaluated on the rebuilt frozen model, scores what its run stored
    method, data = build_method(runs[0].config)
    result = evaluate_ensemble(method, data, torch.stack([r.prompt for r in runs]))
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
