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
        "# @package _global_\nexperiment_name: typo\ndata:\n  batch_sise: 8\n"
    )
    cfg = compose_config(tmp_path, [*FAST, f"hydra.searchpath=[file://{tmp_path / 'extra'}]", "experiment=typo"])
    with pytest.raises(
        ValueError,
        match=r"unknown config key data\.batch_sise \(did you mean 'batch_size'\?\)"
        r".*\['batch_size', .*'eval_batch_size'",
    ):
        run(cfg)


@pytest.mark.parametrize(
    "override,key",
    [
        ("+method.prompt_lenght=5", "method.prompt_lenght"),
        ("+method.learning_rate=0.1", "method.learning_rate"),  # base-class kwargs are known: lr is valid
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
    assert {"prompt_length", "init", "lr", "eval_mode", "max_new_tokens", "val_check_interval"} <= keys
    assert accepted_keys("lightning.pytorch.strategies.DDPStrategy") is None  # **kwargs go to torch's DDP


@pytest.mark.parametrize(
    "override,message",
    [
        ("data.batch_size=0", "data.batch_size must be positive"),
        ("data.max_input_length=-1", "data.max_input_length must be positive"),
        ("method.prompt_length=-3", "method.prompt_length must be positive"),
        ("method.init=bogus", "method.init='bogus' is not one of"),
        ("method.lr=0", "method.lr must be positive"),
        ("trainer.max_steps=-5", "trainer.max_steps must be positive"),
        ("model.d_model=0", "model.d_model must be positive"),
    ],
)
def test_impossible_values_fail_before_any_model(make_config, override, message):
    with pytest.raises((ValueError, InstantiationException), match=message):  # Hydra wraps constructors' errors
        run(make_config("task=cb", "method=prompt_tuning", override))


@pytest.mark.parametrize("precision", ["16-mixed", "16-true", "16"])
def test_fp16_is_refused_for_t5(make_config, precision):
    with pytest.raises(ValueError, match="T5 overflows in float16.*bf16-mixed.*32-true"):
        run(make_config("task=cb", f"trainer.precision={precision}"))
