"""Figure 3 ablation experiments: they compose for their sweep cells, label rows with the swept
setting, and run with a tiny stand-in model; the "+ sentinel" targets."""

from __future__ import annotations

import itertools

import pytest
import torch
from omegaconf import OmegaConf

from promptscale.evaluation import decode_generated
from promptscale.grouping import parse_setting, setting
from promptscale.train import run

from conftest import CONF_DIR, FAST, ROOT, compose_config

ABLATIONS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("ablation_*.yaml"))
LM_ADAPTED = ["small", "base", "large", "xl", "xxl"]
PLAIN = [f"t5_1_1_{s}" for s in LM_ADAPTED]
# The first sweep value of each ablation, run with a tiny model standing in for T5.
TINY_JOB = {
    "ablation_prompt_length": (["method.prompt_length=1"], "prompt_length=1"),
    "ablation_prompt_init": (["method.init=random_uniform"], "init=random_uniform"),
    # generation with sentinel targets: the decoded text loses the sentinel before scoring
    "ablation_objective": (
        ["data.target_sentinel=true", "evaluation.max_new_tokens=4"],
        "pretraining=tiny_s, target_sentinel=true",
    ),
}


def sweep(experiment: str) -> dict[str, list[str]]:
    params = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml").hydra.sweeper.params
    return {k: str(v).split(",") for k, v in params.items()}


def test_every_ablation_is_known():
    assert ABLATIONS == sorted(TINY_JOB)


@pytest.mark.parametrize("experiment", ABLATIONS)
def test_ablation_cells_compose_with_their_setting(tmp_path, experiment):
    axes = sweep(experiment)
    assert sorted(axes["task"]) == ["boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc"]
    assert axes["seed"] == ["0", "1", "2"]
    swept = [k for k in axes if k not in ("task", "seed", "model")]
    cells = [dict(zip(axes, v)) for v in itertools.product(*axes.values()) if v[list(axes).index("task")] == "rte"]
    # every value of every swept axis, each with the smallest and the largest model
    cells = [c for c in cells if c["seed"] == "0" and c["model"] in (axes["model"][0], axes["model"][-1])]
    for cell in cells:
        cfg = compose_config(tmp_path, [f"experiment={experiment}", *(f"{k}={v}" for k, v in cell.items())])
        OmegaConf.to_container(cfg, resolve=True)
        assert cfg.experiment_name == experiment
        assert cfg.method._target_.endswith("PromptTuning")
        label = parse_setting(setting(cfg))
        for key in swept:  # every swept key (but size, task, seed) is in the row's setting
            assert label[key.rsplit(".", 1)[-1]] == cell[key].lower()


def test_prompt_length_and_init_values():
    assert sweep("ablation_prompt_length")["method.prompt_length"] == ["1", "5", "20", "100", "150"]
    assert sweep("ablation_prompt_length")["model"] == LM_ADAPTED
    assert sweep("ablation_prompt_init")["method.init"] == ["random_uniform", "sampled_vocab", "class_label"]
    assert sweep("ablation_prompt_init")["model"] == LM_ADAPTED


def test_objective_labels_plain_and_lm_adapted_models(tmp_path):
    axes = sweep("ablation_objective")
    assert axes["model"] == PLAIN and axes["data.target_sentinel"] == ["false", "true"]
    for model in PLAIN + LM_ADAPTED:
        for sentinel in ("false", "true"):
            cfg = compose_config(
                tmp_path, ["experiment=ablation_objective", f"model={model}", f"data.target_sentinel={sentinel}"]
            )
            objective = "span_corruption" if model.startswith("t5_1_1") else "lm_adaptation"
            assert setting(cfg) == f"pretraining={objective}, target_sentinel={sentinel}"
            assert cfg.model.hub_id.endswith("-lm-adapt") == (objective == "lm_adaptation")


@pytest.mark.parametrize("experiment", ABLATIONS)
def test_ablation_runs_with_a_tiny_model_and_records_its_setting(tmp_path, experiment):
    overrides, expected = TINY_JOB[experiment]
    cfg = compose_config(tmp_path, [f"experiment={experiment}", *FAST, "task=cb", *overrides])
    rows = run(cfg)
    assert rows and {r["setting"] for r in rows} == {expected}
    assert {r["experiment"] for r in rows} == {experiment}


def test_default_runs_have_an_empty_setting(make_config):
    assert setting(make_config()) == ""


def test_unknown_group_by_key_fails(make_config):
    cfg = make_config("figure.group_by=[method.no_such_key]")
    with pytest.raises(KeyError, match="no_such_key"):
        setting(cfg)


# ---------------------------------------------------------------------- + sentinel


def attached(make_job, *overrides):
    job = make_job("task=cb", *overrides)
    return job.data, job.method


def test_sentinel_is_prepended_to_targets_and_choices(make_job):
    plain, method = attached(make_job)
    with_sentinel, _ = attached(make_job, "data.target_sentinel=true")
    sentinel = method.tokenizer.convert_tokens_to_ids("<extra_id_0>")
    for a, b in zip(plain.train_items + plain.eval_items, with_sentinel.train_items + with_sentinel.eval_items):
        assert b.input_ids == a.input_ids  # inputs unchanged
        assert b.target_ids == [sentinel, *a.target_ids]
        assert [c for c in b.choice_ids] == [[sentinel, *c] for c in a.choice_ids]
    batch = with_sentinel.collate_eval(with_sentinel.eval_items[:2])
    assert (batch["choice_labels"][:, 0] == sentinel).all()


def test_sentinel_keeps_within_target_length(make_job):
    data, method = attached(make_job, "data.target_sentinel=true", "data.max_target_length=3")
    sentinel, eos = method.tokenizer.convert_tokens_to_ids("<extra_id_0>"), method.tokenizer.eos_token_id
    for item in data.train_items:
        assert len(item.target_ids) <= 3 and item.target_ids[0] == sentinel and item.target_ids[-1] == eos


def test_generated_sentinel_is_dropped_before_postprocessing_only_when_trained_with_it(make_job):
    """One leading sentinel is the "+ sentinel" target format; any other sentinel makes an output
    invalid, as in T5X, where sentinels decode to unknown pieces (Figure 3c's collapse)."""
    _, method = attached(make_job)
    tok = method.tokenizer
    neutral = tok("neutral", add_special_tokens=False)["input_ids"]
    s0, s1 = tok.convert_tokens_to_ids("<extra_id_0>"), tok.convert_tokens_to_ids("<extra_id_1>")
    ids = torch.tensor([[0, s0, *neutral, tok.eos_token_id], [0, s1, *neutral, tok.eos_token_id]])
    assert decode_generated(tok, ids, strip_sentinel=True) == ["neutral", "<extra_id_1> neutral"]
    assert decode_generated(tok, ids, strip_sentinel=False) == ["<extra_id_0> neutral", "<extra_id_1> neutral"]


def test_experiments_readme_names_every_ablation():
    text = (ROOT / "experiments" / "README.md").read_text()
    for experiment in ABLATIONS:
        assert f"experiment={experiment}" in text
    assert "promptscale-figure --figure figure3" in text
