"""Model specs: exact parameter counts of every size, untied LM head, clear loading errors."""

from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from promptscale.job import compose
from promptscale.models import ModelSpec

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
MODEL_FILES = sorted(CONF.glob("*.yaml"))

# Lester et al. 2021, Table 4 (frozen model parameters of T5 1.1 / LM-adapted T5 1.1).
PAPER_PARAMS = {
    "small": 76_961_152,
    "base": 247_577_856,
    "large": 783_150_080,
    "xl": 2_849_757_184,
    "xxl": 11_135_332_352,
}


def spec(config_file: Path, **overrides) -> ModelSpec:
    """The model group option composed as a run composes it (inherited sizes included)."""
    cfg = compose([f"model={config_file.stem}", *(f"model.{k}={v}" for k, v in overrides.items())])
    return instantiate(cfg.model)


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_every_model_config_instantiates(path):
    model = spec(path)
    assert model.name == path.stem


@pytest.mark.parametrize("path", [p for p in MODEL_FILES if not p.stem.startswith("tiny")], ids=lambda p: p.stem)
def test_random_init_parameter_count_matches_paper(path):
    model = spec(path, init="random")
    assert model.count_parameters() == PAPER_PARAMS[model.size]


def test_random_build_has_untied_lm_head_and_t5_1_1_output_scaling():
    model = spec(CONF / "tiny_s.yaml").build()
    assert model.lm_head.weight is not model.shared.weight
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    assert model.config.scale_decoder_outputs is False  # T5 1.1 does not rescale before the head
    # changing the input embedding must not move the head
    with torch.no_grad():
        model.shared.weight.add_(1.0)
    assert not torch.equal(model.lm_head.weight, model.shared.weight)


def test_local_checkpoint_roundtrip_keeps_head_untied(tmp_path):
    random = spec(CONF / "tiny_s.yaml")
    model = random.build()
    model.save_pretrained(tmp_path)
    loaded = spec(CONF / "tiny_s.yaml", init="pretrained", path=str(tmp_path)).build()
    assert loaded.lm_head.weight is not loaded.shared.weight
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert torch.equal(loaded.shared.weight, model.shared.weight)


def test_wrong_size_checkpoint_is_refused(tmp_path):
    spec(CONF / "tiny_s.yaml").build().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="d_model"):
        spec(CONF / "tiny_m.yaml", init="pretrained", path=str(tmp_path)).build()


def test_missing_hub_model_fails_fast_naming_local_path():
    with pytest.raises(RuntimeError, match="model.path"):
        spec(CONF / "small.yaml", hub_id="google/this-model-is-not-cached").build()


def test_embedded_tokenizer_is_t5_style():
    tok = spec(CONF / "tiny_s.yaml").build_tokenizer()
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok("rte hypothesis: a cat").input_ids[-1] == tok.eos_token_id
    assert len(tok) <= 2048
    assert "<extra_id_0>" in tok.get_vocab()


@pytest.mark.parametrize("key,value", [("init", "warm"), ("d_model", 0), ("num_heads", -1)])
def test_bad_values_fail_at_construction(key, value):
    with pytest.raises((ValueError, InstantiationException), match=key):
        spec(CONF / "tiny_s.yaml", **{key: value})


def test_a_path_on_a_random_init_model_is_refused_not_ignored():
    """Before: the path was silently ignored and a random model trained (exit 0, rows written)."""
    with pytest.raises(
        (ValueError, InstantiationException), match=r"model.path=/does/not/exist is set but model.init=random"
    ):
        spec(CONF / "tiny_s.yaml", path="/does/not/exist")


def test_a_missing_local_folder_says_folder_not_found():
    """Before: a missing path on a pretrained model said "Repo id must be in the form ..."."""
    with pytest.raises(
        (FileNotFoundError, InstantiationException), match=r"model.path=/does/not/exist: folder not found"
    ):
        spec(CONF / "small.yaml", path="/does/not/exist")
