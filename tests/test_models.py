"""Model specs: exact parameter counts of every size and family, untied LM head, clear loading errors."""

from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from promptscale.job import compose
from promptscale.models import ModelSpec

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
MODEL_FILES = sorted(CONF.glob("*.yaml"))

# Lester et al. 2021, Table 4 (frozen model parameters of T5 1.1 / LM-adapted T5 1.1). Flan-T5 has
# the T5 1.1 architecture and vocabulary, so the same totals.
PAPER_PARAMS = {
    "small": 76_961_152,
    "base": 247_577_856,
    "large": 783_150_080,
    "xl": 2_849_757_184,
    "xxl": 11_135_332_352,
}
# Exact published totals of the other families (model cards / REFERENCE): t5-small and mt5-small.
PUBLISHED = {("t5", "small"): 60_506_624, ("mt5", "small"): 300_176_768}
# Measured from the architecture (no exact published total found; the papers round them: T5
# 220M / 770M / 2.8B / 11B, mT5 580M / 1.2B / 3.7B / 13B). Pinned so a config edit cannot drift.
MEASURED = {
    ("t5", "base"): 222_903_552,
    ("t5", "large"): 737_668_096,
    ("t5", "3b"): 2_851_598_336,
    ("t5", "11b"): 11_307_321_344,
    ("mt5", "base"): 582_401_280,
    ("mt5", "large"): 1_229_581_312,
    ("mt5", "xl"): 3_742_619_648,
    ("mt5", "xxl"): 12_921_057_280,
}
MT5_EXTRA_ROWS = 250_112 - 32_128  # mT5's vocabulary beyond T5's, in both the input and the output embedding


def expected_params(family: str, size: str) -> int:
    if (family, size) in PUBLISHED:
        return PUBLISHED[family, size]
    if (family, size) in MEASURED:
        return MEASURED[family, size]
    assert family in ("t5_1_1_lm_adapt", "t5_1_1", "flan_t5"), family
    return PAPER_PARAMS[size]


def spec(config_file: Path, **overrides) -> ModelSpec:
    """The model group option composed as a run composes it (inherited sizes included)."""
    cfg = compose([f"model={config_file.stem}", *(f"model.{k}={v}" for k, v in overrides.items())])
    return instantiate(cfg.model)


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_every_model_config_instantiates(path):
    model = spec(path)
    assert model.name == path.stem


@pytest.mark.parametrize("path", [p for p in MODEL_FILES if not p.stem.startswith("tiny")], ids=lambda p: p.stem)
def test_random_init_parameter_count_matches_published_totals(path):
    model = spec(path, init="random")
    assert model.count_parameters() == expected_params(model.family, model.size)


def test_mt5_totals_are_t5_1_1_plus_the_larger_vocabulary():
    """Independent of the pinned numbers: mT5 is T5 1.1 with 217,984 more rows in two embeddings."""
    for size, total in PAPER_PARAMS.items():
        mt5 = spec(CONF / f"mt5_{size}.yaml", init="random")
        assert mt5.count_parameters() == total + MT5_EXTRA_ROWS * mt5.d_model * 2


def test_every_config_names_a_known_family_and_its_hub_id():
    families = {spec(p).family for p in MODEL_FILES}
    assert families == {"t5_1_1_lm_adapt", "t5_1_1", "flan_t5", "t5", "mt5", "tiny"}
    hub = {p.stem: spec(p).hub_id for p in MODEL_FILES}
    assert hub["flan_t5_xxl"] == "google/flan-t5-xxl"
    assert hub["t5_11b"] == "google-t5/t5-11b"
    assert hub["mt5_base"] == "google/mt5-base"


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
