"""Soft-prompt nearest neighbours on prompts built so the answer is known."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from test_ensemble import train_prompt_runs

from promptscale.models import EMBEDDED_TOKENIZER_DIR
from promptscale.prompts.neighbours import (
    NEIGHBOUR_FILES,
    backbone_embeddings,
    label_pieces,
    main,
    nearest_tokens,
    prompt_neighbours,
    summarize,
)
from promptscale.prompts.runs import find_prompt_runs


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(EMBEDDED_TOKENIZER_DIR))


@pytest.fixture
def embeddings(tokenizer):
    torch.manual_seed(0)
    return torch.randn(len(tokenizer), 32)  # [V, H]


def test_rows_copied_from_the_vocabulary_find_themselves(embeddings):
    rows = [5, 5, 17, 300, 5]
    prompt = embeddings[rows] * torch.tensor([1.0, 3.0, 0.5, 2.0, 1.0]).unsqueeze(1)  # scale: cosine ignores it
    ids, sims = nearest_tokens(prompt, embeddings, k=3)
    assert ids.shape == sims.shape == (5, 3)
    assert ids[:, 0].tolist() == rows
    assert torch.allclose(sims[:, 0], torch.ones(5), atol=1e-5)
    assert (sims[:, 0] >= sims[:, 1]).all() and (sims[:, 1] >= sims[:, 2]).all()
    s = summarize(ids, {})
    assert s["positions"] == 5 and s["distinct_nearest"] == 3
    assert s["shared_positions"] == 3 and s["largest_cluster"] == 3  # positions 0, 1, 4 share row 5


def test_class_labels_among_neighbours(embeddings, tokenizer):
    labels = label_pieces(tokenizer, ("entailment", "not_entailment"))
    assert labels["entailment"] == tokenizer("entailment", add_special_tokens=False)["input_ids"]
    ent = labels["entailment"]
    shared = [i for i in ent if i in labels["not_entailment"]]  # "ment" ends both words
    not_only = [i for i in labels["not_entailment"] if i not in ent]  # "▁not", "_", "ent"
    label_ids = {i for ids in labels.values() for i in ids}
    far = [i for i in range(10, 40) if i not in label_ids][:3]
    # position 0: a piece both labels have; 1 and 3: no label; 2: a piece only "not_entailment" has
    prompt = embeddings[[shared[0], far[0], not_only[0], far[1]]]
    frame, summary = prompt_neighbours(prompt, embeddings, tokenizer, "rte", k=1)
    assert summary["label_positions"] == {"entailment": [0], "not_entailment": [0, 2]}
    assert summary["labels_found"] == ["entailment", "not_entailment"]
    assert list(frame.columns) == ["position", "rank", "token_id", "token", "similarity"]
    assert frame["token"].iloc[0] == tokenizer.convert_ids_to_tokens(shared[0])
    # a prompt far from every label piece finds none
    assert prompt_neighbours(embeddings[far], embeddings, tokenizer, "rte", k=1)[1]["labels_found"] == []


def test_backbone_embeddings_are_the_trained_ones(make_job):
    job = make_job("task=cb", "seed=7")
    trained = job.method
    torch.manual_seed(123)  # whatever ran in between: the backbone comes from the config alone
    emb, tok = backbone_embeddings(job.spec.cfg)
    assert torch.equal(emb, trained.model.get_input_embeddings().weight.detach())
    assert len(tok) == len(trained.tokenizer)


def test_cli_tables(tmp_path):
    train_prompt_runs(tmp_path, [["task=cb", "method.prompt_length=6", "method.init=class_label"]], "nb")
    out = tmp_path / "figs"
    assert (
        main(["--runs", str(tmp_path), "--results", str(tmp_path / "results.jsonl"), "--out", str(out), "-k", "3"]) == 0
    )
    for name in NEIGHBOUR_FILES:
        assert (out / name).stat().st_size > 0
    long = pd.read_csv(out / "neighbours.csv")
    assert len(long) == 6 * 3 and set(long["task"]) == {"cb"}
    summary = pd.read_csv(out / "neighbours_summary.csv")
    assert summary.iloc[0]["positions"] == 6 and summary.iloc[0]["init"] == "class_label"
    md = (out / "neighbours.md").read_text()
    assert "## cb" in md and "| Position | Nearest tokens (cosine) |" in md
    # the prompt is the checkpoint's
    run = find_prompt_runs(tmp_path)[0]
    assert run.prompt.shape == (6, 32)
    assert main(["--runs", str(tmp_path / "none"), "--out", str(out)]) == 1
