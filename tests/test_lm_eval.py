"""Parity with lm-evaluation-harness: the per-choice log-likelihoods its ``hf`` seq2seq model computes
equal ours (``choice_log_likelihoods``), with and without an exported soft prompt (a PEFT adapter).

Three differences of convention, each pinned here so a change on either side shows:

* lm-evaluation-harness does not score the end-of-sequence token: it encodes a seq2seq
  continuation with ``add_special_tokens=False``. Our rank classification scores the whole
  target, ``</s>`` included (as T5 does), so a choice that is a prefix of a longer text is not
  favoured. Appending ``"</s>"`` to the harness's continuation gives exactly our number.
* With ``peft=...`` the harness resizes the model's embeddings to ``len(tokenizer)`` when they
  differ. T5's embedding has 32,128 rows for 32,100 pieces, so under an adapter the harness's
  softmax runs over the real pieces only and its log-likelihoods are slightly higher than ours.
  With a vocabulary of exactly ``len(tokenizer)`` rows the two agree.
* The contexts are the texts our formatter produces; the harness's SuperGLUE tasks format their
  own (``super-glue-t5-prompt`` keeps T5's task-name prefix, which prompt tuning drops).
"""

import lm_eval
import pytest
import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from transformers import AutoTokenizer

from promptscale.data.datamodule import IGNORE
from promptscale.data.example import Example
from promptscale.models import EMBEDDED_TOKENIZER_DIR
from promptscale.prompts.files import export_peft
from promptscale.train import run

# Literal examples in our prompt-tuning format (no task-name prefix), choices of different lengths.
EXAMPLES = [
    Example("rte", "hypothesis: A man is playing a guitar. premise: A man plays an instrument on stage.",
            "entailment", ("entailment", "not_entailment"), 0, "0", ("entailment",)),
    Example("cb", "hypothesis: It will rain. premise: The sky is dark and the forecast says showers.",
            "neutral", ("entailment", "contradiction", "neutral"), 2, "1", ("neutral",)),
    Example("boolq", "passage: Cats are mammals that purr. question: do cats purr",
            "True", ("False", "True"), 1, "2", ("True",)),
]  # fmt: skip
TOLERANCE = 1e-4


def build(make_job, method: str, *overrides: str):
    job = make_job(f"method={method}", *overrides, training=False)
    job.method.eval()
    return job


def ours(job, drop_eos: bool = False) -> list[float]:
    """Our scoring path on the literal examples: tokenised and collated as evaluation does."""
    batch = job.data.collate_eval(job.data.tokenize_examples(EXAMPLES, train=False))
    if drop_eos:  # the same tokens the harness scores by default: the target without its </s>
        labels = batch["choice_labels"].clone()  # [C, L]
        last = (labels != IGNORE).sum(dim=1) - 1  # position of each target's </s>
        labels[torch.arange(len(labels)), last] = IGNORE
        batch["choice_labels"] = labels
    with torch.no_grad():
        return job.method.choice_log_likelihoods(batch).tolist()  # [C]


def harness(job, tmp_path, *, adapter: bool, eos: bool) -> list[float]:
    """lm-evaluation-harness's ``hf`` model on the job's saved backbone (and its prompt as a PEFT adapter)."""
    base = tmp_path / "base"
    job.method.model.save_pretrained(base)
    job.method.tokenizer.save_pretrained(base)
    extra = {}
    if adapter:
        extra["peft"] = str(export_peft(job.method, str(base), tmp_path / "adapter"))
    lm = HFLM(pretrained=str(base), backend="seq2seq", device="cpu", batch_size=4, **extra)
    requests = [
        Instance("loglikelihood", {}, (ex.inputs, choice + ("</s>" if eos else "")), i)
        for i, (ex, choice) in enumerate((ex, c) for ex in EXAMPLES for c in ex.choices)
    ]
    return [logp for logp, _ in lm.loglikelihood(requests, disable_tqdm=True)]


def test_without_a_prompt_the_harness_scores_equal_ours(make_job, tmp_path, one_thread):
    job = build(make_job, "model_tuning")
    assert harness(job, tmp_path, adapter=False, eos=True) == pytest.approx(ours(job), abs=TOLERANCE)
    # its default leaves </s> out: the same numbers as ours without the </s> term
    assert harness(job, tmp_path, adapter=False, eos=False) == pytest.approx(ours(job, drop_eos=True), abs=TOLERANCE)


def test_with_an_exported_prompt_the_harness_scores_equal_ours(make_job, tmp_path, one_thread):
    rows = len(AutoTokenizer.from_pretrained(EMBEDDED_TOKENIZER_DIR))  # no padded rows: the harness does not resize
    job = build(make_job, "prompt_tuning", "method.prompt_length=4", "method.init=random_uniform",
                f"model.vocab_size={rows}")  # fmt: skip
    scores = ours(job)
    assert harness(job, tmp_path, adapter=True, eos=True) == pytest.approx(scores, abs=TOLERANCE)
    assert harness(job, tmp_path, adapter=True, eos=False) == pytest.approx(ours(job, drop_eos=True), abs=TOLERANCE)
    # and the prompt matters: without it every score changes
    assert all(abs(a - b) > TOLERANCE for a, b in zip(harness(job, tmp_path, adapter=False, eos=True), scores))


def test_under_an_adapter_the_harness_renormalises_over_the_tokenizer_rows(make_job, tmp_path, one_thread):
    """T5's padded vocabulary (tiny_s: 2,048 rows, 2,026 pieces): the harness drops the padding rows."""
    job = build(make_job, "prompt_tuning", "method.prompt_length=4", "method.init=random_uniform")
    method, rows = job.method, len(job.method.tokenizer)
    assert method.model.config.vocab_size > rows
    batch = job.data.collate_eval(job.data.tokenize_examples(EXAMPLES, train=False))
    labels, owner = batch["choice_labels"], batch["choice_owner"]  # [C, L], [C]
    with torch.no_grad():
        encoded = method.encode(batch["input_ids"], batch["attention_mask"])
        logits = method.model(
            encoder_outputs=(encoded.output.last_hidden_state[owner],),
            attention_mask=encoded.mask[owner],
            decoder_input_ids=method.model._shift_right(labels),
        ).logits[..., :rows]  # [C, L, rows]: the softmax over the tokenizer's pieces only
    logp = F.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    renormalised = (logp * (labels != IGNORE)).sum(dim=1).tolist()
    got = harness(job, tmp_path, adapter=True, eos=True)
    assert got == pytest.approx(renormalised, abs=TOLERANCE)
    assert all(g > o + TOLERANCE for g, o in zip(got, ours(job)))  # higher than ours: a smaller denominator


# The README's task file for lm_eval --include_path, pointed at the embedded RTE sample (the Hub
# version reads aps/super_glue, whose labels are already indices). Our format (no task name),
# choices scored with their </s>, no space before the choice: rank classification as ours.
TASK_YAML = """task: rte_prompt_tuning
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {data}
validation_split: validation
output_type: multiple_choice
doc_to_text: "hypothesis: {{{{hypothesis}}}} premise: {{{{premise}}}}"
doc_to_target: "{{{{['entailment', 'not_entailment'].index(label)}}}}"
doc_to_choice: ["entailment</s>", "not_entailment</s>"]
target_delimiter: ""
metric_list:
  - metric: acc
"""


def test_the_documented_task_file_gives_our_rank_accuracy(make_config, make_job, tmp_path, one_thread):
    """End to end: an exported prompt scored by lm_eval.simple_evaluate with the README's task file."""
    from promptscale.data.sources import SAMPLE_DIR

    rows = len(AutoTokenizer.from_pretrained(EMBEDDED_TOKENIZER_DIR))
    overrides = ["method=prompt_tuning", "method.prompt_length=4", "method.init=random_uniform", "data.eval_limit=null",
                 "method.train_prompt=false", "evaluation.protocol=rank", f"model.vocab_size={rows}"]  # fmt: skip
    ours_rows = run(make_config(*overrides))
    accuracy = next(r["value"] for r in ours_rows if r["protocol"] == "rank" and r["metric"] == "accuracy")
    job = build(make_job, "prompt_tuning", *overrides[1:])  # the same backbone and prompt (seeded)
    base = tmp_path / "base"
    job.method.model.save_pretrained(base)
    job.method.tokenizer.save_pretrained(base)
    adapter = export_peft(job.method, str(base), tmp_path / "adapter")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "rte_prompt_tuning.yaml").write_text(TASK_YAML.format(data=SAMPLE_DIR / "RTE" / "val.jsonl"))
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={base},peft={adapter},backend=seq2seq",
        tasks=["rte_prompt_tuning"],
        task_manager=TaskManager(include_path=str(tasks)),
        device="cpu",
        batch_size=8,
    )["results"]["rte_prompt_tuning"]
    assert results["sample_len"] == ours_rows[0]["examples"]
    assert 100 * results["acc,none"] == pytest.approx(accuracy)
