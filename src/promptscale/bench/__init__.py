"""``promptscale-bench``: training, evaluation, padding, memory, optimizer and compile benchmarks.

Every comparison runs its arms side by side in one process, alternating their order each
repeat, and reports ratios between arms (never an absolute time alone) on the real T5 1.1
architectures with random weights (``model.init=random``, the embedded tokenizer, synthetic
token ids: no download). Training runs the recipe workload (``workload.py``: batch 32, one step
per SuperGLUE task at its dev set's input lengths). Memory runs each configuration in a fresh
subprocess so peaks cannot mask each other.

Sections (one module each): ``training`` (ours, the Lightning Trainer, vs PEFT +
``Seq2SeqTrainer``; utilisation), ``evaluation`` (both protocols vs generation alone, rank
variants), ``padding`` (length bucketing, exact counts), ``memory``, ``adafactor`` (optimizer
step), and on request ``compile``. ``python -m promptscale.bench --tiny`` is the smoke run of the
tests. ``main`` is the console script (exit status 0); ``run`` returns the result.
"""

from promptscale.bench.cli import main, run

__all__ = ["main", "run"]
