"""``promptscale-bench``: throughput, evaluation, padding, memory and utilisation benchmarks.

Every comparison runs its arms side by side in one process, alternating their order each
repeat, and reports medians and the ratio between arms (never an absolute time alone) on the
real T5 1.1 Small and Base architectures with random weights (``model.init=random``, the
embedded tokenizer, synthetic token ids: no download). Memory runs each configuration in a
fresh subprocess so peaks cannot mask each other.

Sections (one module each): ``training`` (ours, the Lightning Trainer, vs PEFT +
``Seq2SeqTrainer``), ``evaluation`` (rank classification vs greedy generation, one encoder pass
vs re-encoding per choice), ``padding`` (length bucketing), ``memory`` and utilisation (MFU,
reported with training). ``python -m promptscale.bench --tiny`` is the smoke run of the tests.
"""

from promptscale.bench.cli import main

__all__ = ["main"]
