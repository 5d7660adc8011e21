"""Per-example predictions of a run: one columnar file per run, referenced from its rows.

Scores say how good a run is; predictions say on which examples, which is what paired
comparisons between methods (``promptscale.analysis``) need. Every finished run writes the
examples of each task's best dev evaluation (task, example id, gold, both protocols'
predictions, each choice's log-likelihood, the generated text, validity) as one Parquet file in
the store's folder, ``results.d/predictions/<config_hash>-<run_id>.parquet``, *before* its rows
are appended. The rows carry the file's path (relative to the store folder) and SHA-256, so a
reader can refuse a file that is not the one the rows describe.

The file is written like the store's own (temporary name, fsync, atomic rename): a SIGKILL at
any moment leaves either no file or the whole file, and rows never point at a partial one.
Lists (choices, answers, scores) are stored as Parquet list columns; predictions that are a
choice index in one task and a text in another (ReCoRD, WSC) are stored as text columns with
the index written as its decimal string (``rank`` / ``generate``), next to typed columns.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptscale.store.atomic import publish, safe_name, write_temp

if TYPE_CHECKING:
    import pandas

FOLDER = "predictions"
COLUMNS = ("task", "id", "group", "label", "answers", "choices", "choice_scores", "rank", "text", "generate", "valid")


class PredictionsError(ValueError):
    """A predictions file that is missing or not the one its rows describe; the message names it."""


def write_predictions(store_dir: str | Path, config_hash: str, run_id: str, records: Iterable[Mapping]) -> dict:
    """Writes one run's per-example records atomically; returns the row fields that reference it.

    Args:
        store_dir: The results store's folder (``ResultsStore.dir``).
        config_hash: The run's config hash.
        run_id: The run's id.
        records: ``evaluation.ExampleResult.record()`` dicts (every task's best evaluation).

    Returns:
        ``{"predictions": <path relative to store_dir>, "predictions_sha256": <hex>}``.
    """
    data = _parquet_bytes(list(records))
    folder = Path(store_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{safe_name(config_hash)}-{safe_name(run_id)}.parquet"
    publish(write_temp(folder, data), folder / name, exclusive=False)
    return {"predictions": f"{FOLDER}/{name}", "predictions_sha256": hashlib.sha256(data).hexdigest()}


def read_predictions(store_dir: str | Path, row: Mapping[str, Any]) -> pandas.DataFrame:
    """The predictions a result row references, checked against the hash the row carries.

    Raises:
        PredictionsError: The row references no file, the file is missing, or its content is not
            the one the row describes (its SHA-256 differs).
    """
    import pandas as pd

    rel = row.get("predictions")
    if not rel:
        raise PredictionsError(f"run {row.get('run_id')!r} ({row.get('config_hash')}) has no predictions file")
    path = Path(store_dir) / rel
    if not path.is_file():
        raise PredictionsError(f"{path}: predictions file of run {row.get('run_id')!r} not found")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != row.get("predictions_sha256"):
        raise PredictionsError(
            f"{path}: SHA-256 {digest[:12]}... does not match the {row.get('predictions_sha256', '')[:12]}... "
            f"its rows record (run {row.get('run_id')!r}): the file was changed or replaced; refusing it"
        )
    return pd.read_parquet(io.BytesIO(data))


def _parquet_bytes(records: list[Mapping]) -> bytes:
    """The records as one Parquet file in memory, with stable column types."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def text(value: Any) -> str:
        return value if isinstance(value, str) else str(int(value))

    table = pa.table(
        {
            "task": pa.array([str(r["task"]) for r in records], pa.string()),
            "id": pa.array([str(r["id"]) for r in records], pa.string()),
            "group": pa.array([str(r["group"]) for r in records], pa.string()),
            "label": pa.array([int(r["label"]) for r in records], pa.int64()),
            "answers": pa.array([list(r["answers"]) for r in records], pa.list_(pa.string())),
            "choices": pa.array([list(r["choices"]) for r in records], pa.list_(pa.string())),
            "choice_scores": pa.array([list(r["choice_scores"]) for r in records], pa.list_(pa.float64())),
            "rank": pa.array([text(r["rank"]) for r in records], pa.string()),
            "text": pa.array([str(r["text"]) for r in records], pa.string()),
            "generate": pa.array([text(r["generate"]) for r in records], pa.string()),
            "valid": pa.array([bool(r["valid"]) for r in records], pa.bool_()),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()
