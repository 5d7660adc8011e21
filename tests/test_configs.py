"""Every config option composes and instantiates; unknown names fail listing the valid ones;
the paper experiment composes for every sweep cell and starts with a tiny stand-in model."""

import itertools

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf

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
        instantiate(node, max_steps=1, val_check_interval=1, logger=False)
    # methods are instantiated with a tiny model on every task in test_train.py


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
    cfg = compose_config(tmp_path, ["experiment=lester2021_fig1", "method=prompt_tuning"])
    m = cfg.method
    assert (m.prompt_length, m.init, m.lr, m.weight_decay, m.batch_size, m.max_steps) == (
        100,
        "class_label",
        0.3,
        1e-5,
        32,
        30000,
    )
    cfg = compose_config(tmp_path, ["experiment=lester2021_fig1", "method=model_tuning"])
    assert cfg.method.lr == 1e-3


def test_paper_experiment_starts_with_a_tiny_stand_in(tmp_path):
    """The first job of the paper sweep, with the tiny model standing in for T5 Small."""
    cfg = compose_config(
        tmp_path,
        [
            "experiment=lester2021_fig1",
            "model=tiny_s",
            "logger=none",
            "trainer.max_steps=1",
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
