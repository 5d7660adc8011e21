"""Predictions files survive SIGKILL like the results store: a writer killed at random moments never
leaves a partial file under a final name, and every file a row references matches its hash. A
file that is not the one its rows describe is refused, by name."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_results import make_row

from promptscale.store.predictions import FOLDER, PredictionsError, read_predictions, write_predictions
from promptscale.store.results import ResultsStore

WRITER = r"""
import random, sys
from promptscale.store.predictions import write_predictions
from promptscale.store.results import ResultsStore
sys.path.insert(0, sys.argv[3])
from test_results import make_row

store, rng = ResultsStore(sys.argv[1]), random.Random(int(sys.argv[2]))
for i in range(10**6):
    n = rng.randrange(3000, 9000)  # a few hundred KB: a kill lands mid-write often
    records = [
        {"task": "rte", "id": str(k), "group": str(k), "label": k % 2, "answers": ["entailment"],
         "choices": ["entailment", "not_entailment"], "choice_scores": [rng.random(), -rng.random()],
         "rank": k % 2, "text": "x" * rng.randrange(40), "generate": (k + i) % 2, "valid": True}
        for k in range(n)
    ]
    run = f"w{sys.argv[2]}-{i}"
    write_predictions(store.dir, "cfg" + run, run, records[:-1])  # replaced at once: a retried evaluation
    refs = write_predictions(store.dir, "cfg" + run, run, records)
    store.append([make_row(run_id=run, config_hash="cfg" + run, examples=n) | refs], once=True)
    print(run, flush=True)
"""


def whole_rows(path) -> int:
    """Rows of the parquet file at ``path``, read through one open (as ``read_predictions`` reads):
    ``pq.read_table(path)`` opens the path more than once, and a file replaced between two opens
    (a retried evaluation renames a new one over it) would mix two whole files' bytes."""
    return pq.read_table(pa.BufferReader(path.read_bytes())).num_rows


def finals(store: ResultsStore) -> list:
    folder = store.dir / FOLDER
    return [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.exists() else []


def test_writer_killed_at_random_moments_leaves_only_whole_files(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    tests = os.path.dirname(__file__)
    rng = random.Random(0)
    reads = 0
    for round_ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(store.path), str(round_), tests],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        child.stdout.readline()  # one run finished: the writer is in its loop
        deadline = time.monotonic() + rng.uniform(0.05, 0.6)
        while time.monotonic() < deadline:  # readers while it writes: never a partial file
            for path in finals(store):
                assert whole_rows(path) >= 3000 - 1, path
                reads += 1
        child.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    rows = store.rows()
    assert len(rows) >= 6 and reads > 0
    for row in rows:  # every referenced file is whole and is the file its row describes
        frame = read_predictions(store.dir, row)
        assert len(frame) == row["examples"] and frame["id"].tolist() == [str(k) for k in range(row["examples"])]
    for path in finals(store):  # unreferenced files (killed before their rows) are whole too
        assert whole_rows(path) >= 3000 - 1
    leftovers = [p.name for p in (store.dir / FOLDER).iterdir() if p.name.startswith(".tmp-")]
    assert all(not name.endswith(".parquet") for name in leftovers)  # a killed write stays a hidden temp file


RECORD = {"task": "cb", "id": "0", "group": "0", "label": 1, "answers": ["contradiction"],
          "choices": ["entailment", "contradiction", "neutral"], "choice_scores": [-3.0, -1.0, -2.0],
          "rank": 1, "text": "contradiction", "generate": 1, "valid": True}  # fmt: skip


def test_a_file_whose_hash_differs_from_its_row_is_refused_by_name(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    refs = write_predictions(store.dir, "abc", "run-1", [RECORD])
    row = make_row(run_id="run-1", config_hash="abc") | refs
    assert read_predictions(store.dir, row)["text"].tolist() == ["contradiction"]
    path = store.dir / refs["predictions"]
    write_predictions(store.dir, "abc", "run-1", [RECORD | {"text": "neutral", "generate": 2}])  # overwritten
    with pytest.raises(
        PredictionsError, match=rf"^{path}: SHA-256 \w+\.\.\. does not match .* \(run 'run-1'\).*refusing it"
    ):
        read_predictions(store.dir, row)
    path.unlink()
    with pytest.raises(PredictionsError, match=rf"^{path}: predictions file of run 'run-1' not found"):
        read_predictions(store.dir, row)
    with pytest.raises(PredictionsError, match="run 'run-1' \\(abc\\) has no predictions file"):
        read_predictions(store.dir, make_row(run_id="run-1", config_hash="abc"))
