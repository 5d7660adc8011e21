"""Soft prompts as artifacts: PEFT equivalence, file round trips, mixed-task serving."""

import copy
import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from peft import PeftModel, PromptTuningConfig, TaskType, get_peft_model
from safetensors.torch import save_file

from promptscale.data.datamodule import IGNORE, pad
from promptscale.evaluation import decode_generated
from promptscale.methods.prompt_tuning import PromptTuning
from promptscale.prompts import (
    PromptBank,
    PromptFileError,
    Query,
    export_peft,
    import_peft,
    load_into,
    load_prompt,
    prompt_metadata,
    read_prompt,
    save_prompt,
)

TINY = Path(__file__).resolve().parents[1] / "conf" / "model" / "tiny_s.yaml"
TEXTS = ["premise: A cat sat on the mat. hypothesis: A cat sat.", "question: is it? passage: yes it is, surely"]
TARGETS = ["entailment", "False"]
# (task, prompt length): different lengths so the bank's padding placement is exercised
TASKS = {"rte": 3, "cb": 7, "boolq": 1}
RTE, CB, BOOLQ = ("entailment", "not_entailment"), ("entailment", "contradiction", "neutral"), ("False", "True")
QUERIES = [
    Query("rte", "premise: A cat sat. hypothesis: A dog sat.", RTE),
    Query("cb", "premise: It is raining today, I think. hypothesis: It rains.", CB),
    Query("boolq", "passage: The sky is blue. question: is the sky blue?", BOOLQ),
    Query("rte", "premise: Short. hypothesis: A much longer hypothesis sentence here.", RTE),
    Query("cb", "premise: x. hypothesis: y.", CB),
    Query("boolq", "passage: Water is wet and cold in winter. question: is water dry?", BOOLQ),
]


def make_module(task: str, length: int, seed: int = 0) -> PromptTuning:
    spec = instantiate(OmegaConf.load(TINY))
    return PromptTuning(model=spec, tasks=[task], prompt_length=length, init="random_uniform", init_seed=seed).eval()


@pytest.fixture(scope="module")
def modules() -> dict[str, PromptTuning]:
    """One PromptTuning module per task, all on the same backbone weights."""
    mods = {task: make_module(task, length, seed=i) for i, (task, length) in enumerate(TASKS.items())}
    first = next(iter(mods.values()))
    for m in mods.values():
        m.model.load_state_dict(first.model.state_dict())
    return mods


@pytest.fixture(scope="module")
def module(modules) -> PromptTuning:
    return modules["cb"]


def batch(module: PromptTuning) -> dict[str, torch.Tensor]:
    enc = module.tokenizer(TEXTS)["input_ids"]
    input_ids, mask = pad(enc, module.tokenizer.pad_token_id)  # [B, T], right-padded (padding is exercised)
    labels, _ = pad(module.tokenizer(TARGETS)["input_ids"], IGNORE)  # [B, L]
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


@torch.no_grad()
def our_logits(module: PromptTuning, b: dict) -> torch.Tensor:
    return module.model(**module.encoder_inputs(b["input_ids"], b["attention_mask"]), labels=b["labels"]).logits


@torch.no_grad()
def peft_logits(peft_model, b: dict) -> torch.Tensor:
    return peft_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).logits


# -- 1. PEFT cross-check -------------------------------------------------------------------------
def test_same_logits_and_generations_as_peft_prompt_tuning(module):
    length = module.prompt.length
    config = PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM,
        num_virtual_tokens=length,
        num_transformer_submodules=1,
        token_dim=module.model.config.d_model,
    )
    peft_model = get_peft_model(copy.deepcopy(module.model), config).eval()
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(module.prompt.embedding)
    b = batch(module)
    ours = our_logits(module, b)  # [B, L, V]
    assert torch.allclose(ours, peft_logits(peft_model, b), atol=1e-5)
    # the decoder is untouched by both: PEFT's generate equals ours token for token
    theirs = peft_model.generate(
        input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=5, do_sample=False, num_beams=1
    )
    with torch.no_grad():
        ours = module.generate(module.encode(b["input_ids"], b["attention_mask"]), max_new_tokens=5)
    assert torch.equal(ours, theirs)


def test_peft_default_seq2seq_table_has_an_unused_decoder_half(module):
    """PEFT's default num_transformer_submodules=2 allocates 2P rows; prompt tuning reads only the first P."""
    length = module.prompt.length
    config = PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=length, token_dim=module.model.config.d_model
    )
    peft_model = get_peft_model(copy.deepcopy(module.model), config).eval()
    table = peft_model.prompt_encoder["default"].embedding.weight
    assert table.shape[0] == 2 * length
    with torch.no_grad():
        table[:length] = module.prompt.embedding
        table[length:] = 1e3  # garbage in the second half changes nothing
    assert torch.allclose(our_logits(module, batch(module)), peft_logits(peft_model, batch(module)), atol=1e-5)


# -- 2. files ----------------------------------------------------------------------------------
def test_exported_adapter_loads_in_peft_and_reproduces_our_logits(module, tmp_path):
    out = export_peft(module, "tiny_s", tmp_path / "adapter")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["task_type"] == "SEQ_2_SEQ_LM"
    assert config["num_virtual_tokens"] == module.prompt.length and config["num_transformer_submodules"] == 1
    peft_model = PeftModel.from_pretrained(copy.deepcopy(module.model), str(out)).eval()
    b = batch(module)
    assert torch.allclose(our_logits(module, b), peft_logits(peft_model, b), atol=1e-5)
    assert torch.equal(import_peft(out, d_model=32), module.prompt.embedding.detach())


def test_peft_saved_adapter_imports_into_our_module(module, tmp_path):
    """An adapter PEFT itself wrote (default 2P-row table) loads into PromptTuning with equal logits."""
    length = module.prompt.length
    config = PromptTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=length, token_dim=32)
    peft_model = get_peft_model(copy.deepcopy(module.model), config).eval()
    peft_model.save_pretrained(str(tmp_path / "peft"))
    target = make_module("cb", length, seed=99)
    target.model.load_state_dict(module.model.state_dict())
    load_into(target, tmp_path / "peft")
    b = batch(module)
    assert torch.allclose(our_logits(target, b), peft_logits(peft_model, b), atol=1e-5)


def test_raw_prompt_roundtrip_with_metadata(module, tmp_path):
    path = save_prompt(module, tmp_path / "p" / "cb.safetensors", model="tiny_s", task="cb")
    assert torch.equal(load_prompt(path, d_model=32), module.prompt.embedding.detach())
    expected = {"model": "tiny_s", "task": "cb", "length": "7", "d_model": "32"}
    assert prompt_metadata(path).items() >= expected.items()
    assert torch.equal(read_prompt(path), load_prompt(path))


def test_bad_files_give_errors_naming_file_and_problem(tmp_path):
    good = save_prompt(torch.zeros(4, 16), tmp_path / "good.safetensors")
    with pytest.raises(PromptFileError, match=r"good\.safetensors.*d_model 16.*d_model 32"):
        load_prompt(good, d_model=32)
    save_file({"weight": torch.zeros(4, 32)}, str(tmp_path / "nokey.safetensors"))
    with pytest.raises(PromptFileError, match=r"nokey\.safetensors.*'prompt_embeddings'.*\['weight'\]"):
        load_prompt(tmp_path / "nokey.safetensors")
    save_file({"prompt_embeddings": torch.zeros(4)}, str(tmp_path / "flat.safetensors"))
    with pytest.raises(PromptFileError, match=r"flat\.safetensors.*shape \(4,\)"):
        load_prompt(tmp_path / "flat.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(PromptFileError, match=r"junk\.safetensors.*not a readable"):
        load_prompt(tmp_path / "junk.safetensors")
    with pytest.raises(PromptFileError, match=r"missing\.safetensors.*no such"):
        load_prompt(tmp_path / "missing.safetensors")


def test_bad_adapters_give_errors_naming_file_and_problem(tmp_path):
    out = export_peft(torch.zeros(4, 16), "tiny_s", tmp_path / "a")
    with pytest.raises(PromptFileError, match=r"adapter_model\.safetensors.*d_model 32"):
        import_peft(out, d_model=32)
    with pytest.raises(PromptFileError, match=r"adapter_config\.json.*no such"):
        import_peft(tmp_path)
    config = json.loads((out / "adapter_config.json").read_text())
    (out / "adapter_config.json").write_text(json.dumps({**config, "num_virtual_tokens": 5}))
    with pytest.raises(PromptFileError, match=r"4 rows.*num_virtual_tokens=5"):
        import_peft(out)
    (out / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "LORA"}))
    with pytest.raises(PromptFileError, match=r"adapter_config\.json.*'LORA'"):
        import_peft(out)


def test_load_into_refuses_a_prompt_of_another_length(module):
    with pytest.raises(ValueError, match="prompt_length=2"):
        load_into(module, torch.zeros(2, 32))


# -- 3. mixed-task serving ----------------------------------------------------------------------
def per_task_scores(modules, queries) -> dict[int, list[float]]:
    """Reference: each task's examples in a batch of their own, through its own PromptTuning module."""
    out = {}
    for task, m in modules.items():
        rows = [i for i, q in enumerate(queries) if q.task == task]
        tok = m.tokenizer
        input_ids, mask = pad(tok([queries[i].inputs for i in rows])["input_ids"], tok.pad_token_id)
        choices = [c for i in rows for c in queries[i].choices]
        labels, _ = pad(tok(choices)["input_ids"], IGNORE)
        owner = torch.tensor([b for b, i in enumerate(rows) for _ in queries[i].choices])
        with torch.no_grad():
            scores = m.choice_log_likelihoods(
                {"input_ids": input_ids, "attention_mask": mask, "choice_owner": owner, "choice_labels": labels}
            ).tolist()
        for b, i in enumerate(rows):
            out[i] = [s for s, o in zip(scores, owner.tolist()) if o == b]
    return out


@pytest.fixture(scope="module")
def bank(modules) -> PromptBank:
    first = next(iter(modules.values()))
    return PromptBank(copy.deepcopy(first), {t: m for t, m in modules.items()})


def test_mixed_batch_equals_per_task_batches(bank, modules):
    reference = per_task_scores(modules, QUERIES)
    mixed = bank.log_likelihoods(QUERIES)
    assert len(set(map(len, mixed))) > 1  # tasks with different numbers of choices
    for i, scores in enumerate(mixed):
        assert scores == pytest.approx(reference[i], rel=1e-6, abs=1e-4)
    expected = [max(range(len(reference[i])), key=reference[i].__getitem__) for i in range(len(QUERIES))]
    assert bank.predict(QUERIES) == expected
    # plain tuples work too, and order within the batch does not matter
    assert bank.predict([tuple(q) for q in reversed(QUERIES)]) == expected[::-1]


def test_mixed_generation_equals_per_task_generation(bank, modules):
    mixed = bank.generate(QUERIES, max_new_tokens=4)
    for task, m in modules.items():
        rows = [i for i, q in enumerate(QUERIES) if q.task == task]
        input_ids, mask = pad(m.tokenizer([QUERIES[i].inputs for i in rows])["input_ids"], m.tokenizer.pad_token_id)
        with torch.no_grad():
            ids = m.generate(m.encode(input_ids, mask), max_new_tokens=4)
        assert decode_generated(m.tokenizer, ids) == [mixed[i] for i in rows]


def test_bank_from_files_and_unknown_task(bank, modules, tmp_path):
    sources = {
        "rte": export_peft(modules["rte"], "tiny_s", tmp_path / "rte"),
        "cb": save_prompt(modules["cb"], tmp_path / "cb.safetensors", task="cb"),
    }
    loaded = PromptBank.from_files(bank.method, sources)
    two = [q for q in QUERIES if q.task in sources]
    flat = [s for scores in loaded.log_likelihoods(two) for s in scores]
    assert flat == pytest.approx([s for scores in bank.log_likelihoods(two) for s in scores], abs=1e-6)
    with pytest.raises(KeyError, match="boolq"):
        loaded.predict(QUERIES)
    with pytest.raises(PromptFileError, match="d_model 16"):
        loaded.add("wic", torch.zeros(2, 16))
