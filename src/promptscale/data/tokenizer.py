"""The offline tokenizer of the tiny/demo models: a T5-style Unigram model trained here.

Real runs use the checkpoint's SentencePiece tokenizer (32,000 pieces + 100 sentinels). With no
network the demo needs one that behaves the same way (``<pad>``=0, ``</s>``=1, ``<unk>``=2,
``<extra_id_*>`` sentinels at the top), so this module trains a small Unigram vocabulary on the
embedded SuperGLUE sample and saves it in the Hugging Face layout under ``assets/``.
Regenerate with ``python -m promptscale.data.tokenizer`` after the sample changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import T5Tokenizer

SPECIALS = ("<pad>", "</s>", "<unk>")


def sample_texts(sample_dir: Path) -> Iterator[str]:
    """Every string in the sample and every formatted input/target, in a fixed order.

    The formatted texts teach the tokenizer the format keys ("hypothesis:", "premise:") and
    the verbalisers, which the raw records never contain.
    """
    from promptscale.data.formats import format_examples
    from promptscale.data.tasks import TASKS

    by_folder = {spec.folder: name for name, spec in TASKS.items()}
    for path in sorted(sample_dir.rglob("*.jsonl")):
        task = by_folder[path.parent.name]
        for line in path.read_text().splitlines():
            record = json.loads(line)
            yield from _strings(record)
            for prefix in (True, False):
                for ex in format_examples(task, record, prefix=prefix, train=False):
                    yield from (ex.inputs, ex.targets, *ex.choices)


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def train_tokenizer(texts: list[str], vocab_size: int, extra_ids: int = 100) -> T5Tokenizer:
    """Trains a Unigram vocabulary and wraps it as a ``T5Tokenizer`` with sentinels."""
    model = Tokenizer(models.Unigram())
    model.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIALS), unk_token="<unk>", shrinking_factor=0.75
    )
    model.train_from_iterator(texts, trainer=trainer)
    vocab = json.loads(model.to_str())["model"]["vocab"]  # [[piece, log_prob], ...], specials first
    return T5Tokenizer(vocab=[(piece, score) for piece, score in vocab], extra_ids=extra_ids)


def main() -> None:
    from promptscale.models import EMBEDDED_TOKENIZER_DIR

    SAMPLE_DIR = Path(__file__).parent / "sample"

    tokenizer = train_tokenizer(list(sample_texts(SAMPLE_DIR)), vocab_size=1948)
    tokenizer.save_pretrained(EMBEDDED_TOKENIZER_DIR)
    print(f"wrote {EMBEDDED_TOKENIZER_DIR} ({len(tokenizer)} tokens)")


if __name__ == "__main__":
    main()
