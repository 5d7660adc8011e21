"""Config validation: a misspelled or unknown key in any group, wherever it comes from (an
experiment YAML, a group option, ``+key=`` on the command line), and impossible values fail
before any model is built, naming the key and the valid keys. fp16 is refused for T5."""

import re

import pytest
from hydra.errors import InstantiationException

from promptscale.config_checks import accepted_keys
from promptscale.models import ModelSpec
from promptscale.train import run

from conftest import FAST, compose_config


@pytest.fixture(autouse=True)
def no_model_may_be_built(monkeypatch):
    def built(*args, **kwargs):
        raise AssertionError("a model was built before the config was rejected")

    monkeypatch.setattr(ModelSpec, "build", built)


def test_typo_in_an_experiment_file_names_key_and_valid_keys(tmp_path):
    (tmp_path / "extra" / "experiment").mkdir(parents=True)
    (tmp_path / "extra" / "experiment" / "typo.yaml").write_text(
        "# @package _global_\nexperiment_name: typo\ndata:\n  eval_batch_sise: 8\nrecipe:\n  max_step: 3\n"
    )
    cfg = compose_config(tmp_path, [*FAST, f"hydra.searchpath=[file://{tmp_path / 'extra'}]", "experiment=typo"])
    with pytest.raises(
        ValueError,
        match=r"unknown config key data\.eval_batch_sise \(did you mean 'eval_batch_size'\?\)"
        r".*\['bucket_by_length', .*'eval_batch_size'",
    ):
        run(cfg)


def test_a_key_that_moved_names_its_new_home(tmp_path):
    (tmp_path / "extra" / "experiment").mkdir(parents=True)
    (tmp_path / "extra" / "experiment" / "old.yaml").write_text(
        "# @package _global_\nexperiment_name: old\ntrainer:\n  max_steps: 40\n"
    )
    cfg = compose_config(tmp_path, [*FAST, f"hydra.searchpath=[file://{tmp_path / 'extra'}]", "experiment=old"])
    with pytest.raises(ValueError, match=r"trainer\.max_steps is not read from here any more: set recipe\.max_steps"):
        run(cfg)


@pytest.mark.parametrize(
    "override,key",
    [
        ("+method.prompt_lenght=5", "method.prompt_lenght"),
        ("+method.learning_rate=0.1", "method.learning_rate"),
        ("+recipe.max_step=3", "recipe.max_step"),  # typed blocks without a _target_ are checked too
        ("+recipe.optimizer.learning_rate=3", "recipe.optimizer.learning_rate"),
        ("+evaluation.protocl=rank", "evaluation.protocl"),
        ("+model.d_modle=8", "model.d_modle"),
        ("+trainer.max_step=3", "trainer.max_step"),
        ("+logger.projct=x", "logger.projct"),
        ("+callbacks.checkpoint.monitr=x", "callbacks.checkpoint.monitr"),
        ("+callbacks.resume.every_n_step=3", "callbacks.resume.every_n_step"),
    ],
)
def test_unknown_key_in_any_group_is_rejected(make_config, override, key):
    with pytest.raises(ValueError, match=rf"unknown config key {re.escape(key)}\b.*accepts \["):
        run(make_config("task=cb", "logger=wandb", override))


def test_forwarded_keyword_arguments_are_followed_to_the_base_class():
    keys = accepted_keys("promptscale.methods.prompt_tuning.PromptTuning")
    assert {"prompt_length", "init", "model", "tasks", "optimizer", "evaluation"} <= keys
    assert "lr" not in keys  # the learning rate is the recipe's, not the method's
    assert accepted_keys("lightning.pytorch.strategies.DDPStrategy") is None  # **kwargs go to torch's DDP


@pytest.mark.parametrize(
    "override,message",
    [
        ("recipe.batch_size=0", "recipe.batch_size must be a positive integer"),
        ("data.max_input_length=-1", "data.max_input_length must be positive"),
        ("method.prompt_length=-3", "method.prompt_length must be in 1..4096"),
        ("method.init=bogus", "method.init='bogus' is not one of"),
        ("recipe.optimizer.lr=0", "recipe.optimizer.lr must be positive"),
        ("recipe.optimizer.name=sgd", "recipe.optimizer.name='sgd' is not one of"),
        ("recipe.max_steps=-5", "recipe.max_steps must be a positive integer"),
        ("recipe.optimizer.warmup_steps=9", r"recipe.optimizer.warmup_steps=9 must be >= 0 and below"),
        ("evaluation.protocol=beam", "evaluation.protocol='beam' is not one of"),
        ("evaluation.max_new_tokens=0", "evaluation.max_new_tokens must be positive"),
        ("model.d_model=0", "model.d_model must be positive"),
        ("seed=abc", "seed must be an integer, got 'abc'"),
        ("figure.group_by=[method.prompt_lenght]", "figure.group_by names 'method.prompt_lenght'"),
        ("figure.draw=[figure9]", r"figure.draw: unknown figure 'figure9' \(did you mean 'figure3'\?\)"),
        ("figure.protocols=[beam]", r"figure.protocols: unknown protocol 'beam'"),
    ],
)
def test_impossible_values_fail_before_any_model(make_config, override, message):
    with pytest.raises((ValueError, InstantiationException), match=message):  # Hydra wraps constructors' errors
        run(make_config("task=cb", "method=prompt_tuning", override))


@pytest.mark.parametrize("precision", ["16-mixed", "16-true", "16"])
def test_fp16_is_refused_for_t5(make_config, precision):
    with pytest.raises(ValueError, match="T5 overflows in float16.*bf16-mixed.*32-true"):
        run(make_config("task=cb", f"trainer.precision={precision}"))
