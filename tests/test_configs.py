"""Every config option composes and instantiates; unknown names fail listing the valid ones;
the paper experiment composes for every sweep cell and starts with a tiny stand-in model."""

import itertools
import os
import subprocess
import sys

import pytest
import yaml
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from promptscale.hardware import resolve_precision
from promptscale.job import JobSpec
from promptscale.optim import OptimizerSpec
from promptscale.train import run

from conftest import CONF_DIR, compose_config

GROUPS = {
    g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml"))
    for g in ("model", "method", "task", "trainer", "logger", "callbacks")
}
OPTIONS = [(g, o) for g, opts in GROUPS.items() for o in opts]


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_instantiates(tmp_path, group, option):
    cfg = compose_config(tmp_path, [f"{group}={option}"])
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    node = cfg[group if group != "task" else "data"]
    if group == "model":
        assert instantiate(node).name == option
    elif group == "task":
        instantiate(cfg.data).load()  # the embedded sample has every task
    elif group == "logger":
        instantiate(node)
    elif group == "callbacks":
        [instantiate(c) for c in node.values()]
    elif group == "trainer" and node.get("accelerator") == "cpu" and node.get("devices", 1) == 1:
        precision = resolve_precision(node.precision, node.accelerator)  # as the job resolves `auto`
        instantiate(node, max_steps=1, val_check_interval=1, logger=False, precision=precision)
    elif group == "method":
        JobSpec.from_config(cfg)  # the recipe and evaluation blocks it sets are valid
    # methods are built with a tiny model on every task in test_train.py


@pytest.mark.parametrize("group", ["model", "method", "task"])
def test_unknown_name_lists_valid_names(tmp_path, group):
    with pytest.raises((ConfigCompositionException, MissingConfigException)) as err:
        compose_config(tmp_path, [f"{group}=no_such_option"])
    message = str(err.value)
    assert "no_such_option" in message
    for option in GROUPS[group][:3]:
        assert option in message


def sweep_cells(experiment: str):
    params = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml").hydra.sweeper.params
    axes = {k: str(v).split(",") for k, v in params.items()}
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())], axes


def test_paper_experiment_covers_sizes_methods_tasks_seeds(tmp_path):
    cells, axes = sweep_cells("lester2021_fig1")
    assert axes["model"] == ["small", "base", "large", "xl", "xxl"]
    assert sorted(axes["task"]) == ["boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc"]
    assert axes["seed"] == ["0", "1", "2"]
    assert set(axes["method"]) == set(GROUPS["method"])  # every configured method is on the curve
    for cell in cells[:: max(1, len(cells) // 40)]:  # a spread of cells, each composed fully
        cfg = compose_config(tmp_path, ["experiment=lester2021_fig1", *(f"{k}={v}" for k, v in cell.items())])
        assert cfg.model.hub_id.endswith("-lm-adapt")
        assert cfg.model.init == "pretrained"


def test_paper_recipes(tmp_path):
    spec = JobSpec.from_config(compose_config(tmp_path, ["experiment=lester2021_fig1", "method=prompt_tuning"]))
    m, r = spec.cfg.method, spec.recipe
    assert (m.prompt_length, m.init, r.batch_size, r.max_steps) == (100, "class_label", 32, 30000)
    assert r.optimizer == OptimizerSpec("adafactor", lr=0.3, weight_decay=1e-5, total_steps=30000)
    assert r.optimizer.setting("decay_rate") == 0.8 and r.optimizer.setting("clip_threshold") == 1.0
    spec = JobSpec.from_config(compose_config(tmp_path, ["experiment=lester2021_fig1", "method=model_tuning"]))
    assert (spec.recipe.optimizer.lr, spec.recipe.batch_size) == (1e-3, 128)
    spec = JobSpec.from_config(compose_config(tmp_path, ["experiment=lester2021_fig1", "method=prefix_tuning"]))
    assert (spec.recipe.optimizer.name, spec.recipe.optimizer.schedule) == ("adamw", "linear")
    spec = JobSpec.from_config(compose_config(tmp_path, ["experiment=lester2021_fig1", "method=prompt_design"]))
    assert spec.recipe.optimizer is None  # nothing trains: no learning rate anywhere


@pytest.mark.parametrize(
    "experiment", ["lester2021_fig1", "ablation_prompt_length", "ablation_prompt_init", "ablation_objective"]
)
def test_paper_experiments_use_the_papers_protocol(tmp_path, experiment):
    """Generation + T5's postprocessing selects checkpoints; prompt design keeps ranking (GPT-3's)."""
    spec = JobSpec.from_config(compose_config(tmp_path, [f"experiment={experiment}"]))
    assert spec.evaluation.protocol == spec.primary_protocol == "generate"
    if experiment == "lester2021_fig1":  # the ablations sweep prompt tuning only
        design = JobSpec.from_config(compose_config(tmp_path, [f"experiment={experiment}", "method=prompt_design"]))
        assert design.primary_protocol == "rank"


def test_paper_experiment_cfg_job_shows_the_protocol():
    """``promptscale-train experiment=lester2021_fig1 --cfg job`` prints the primary protocol."""
    out = subprocess.run(
        [sys.executable, "-m", "promptscale.train", "experiment=lester2021_fig1", "--cfg", "job"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    evaluation = yaml.safe_load(out.stdout)["evaluation"]
    assert evaluation == {"protocol": "generate", "max_new_tokens": 62}


def test_paper_experiment_starts_with_a_tiny_stand_in(tmp_path):
    """The first job of the paper sweep, with the tiny model standing in for T5 Small."""
    cfg = compose_config(
        tmp_path,
        [
            "experiment=lester2021_fig1",
            "model=tiny_s",
            "logger=none",
            "recipe.max_steps=1",
            "trainer.enable_progress_bar=false",
            "data.eval_limit=2",
            "data.train_limit=2",
            "task=boolq",
        ],
    )
    rows = run(cfg)
    assert rows and rows[0]["experiment"] == "lester2021_fig1" and rows[0]["step"] == 1


def test_demo_experiment_shape(tmp_path):
    cells, axes = sweep_cells("demo")
    assert len(axes["model"]) == 3 and all(m.startswith("tiny") for m in axes["model"])
    assert {"model_tuning", "prompt_tuning"} <= set(axes["method"])
    assert len(axes["task"]) >= 2
