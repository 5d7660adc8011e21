"""``logger=csv`` and ``logger=tensorboard``: a run writes its metrics files, under the same names.

The names are the method's own (``self.log``), so every tracker gets ``train/loss``,
``val/<task>/<metric>``, ``val/score`` and ``val_rank/...``; the tests read them back from the
files each logger wrote.
"""

import csv
import logging
import struct
from pathlib import Path

import pytest
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from promptscale import tracking
from promptscale.report.hook import FigureCallback
from promptscale.train import run

# What every evaluation of an RTE job logs (evaluation.log_items) and what training logs.
EXPECTED = {
    "train/loss",
    "val/score",
    "val/rte/accuracy",
    "val/rte/score",
    "val/rte/invalid",
    "val_rank/score",
    "val_rank/rte/accuracy",
    "val_rank/rte/score",
}
STEPS = ["recipe.max_steps=4", "recipe.val_check_interval=2", "trainer.log_every_n_steps=1"]


def tensorboard_scalars(folder: Path) -> dict[str, list[float]]:
    """Scalar tags and values of every event file under ``folder`` (TFRecord framing, Event protos)."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[float]] = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])  # skip length + its crc
            at += 12 + length + 4  # record + its crc
            for value in event.summary.value:
                out.setdefault(value.tag, []).append(value.simple_value)
    return out


def csv_metrics(path: Path) -> dict[str, list[float]]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows if r[k] != ""] for k in rows[0] if k not in ("step", "epoch")}


def test_csv_logger_writes_metrics_and_config(make_config, one_thread):
    cfg = make_config("logger=csv", "task=rte", *STEPS)
    rows = run(cfg)
    folder = Path(cfg.paths.output_dir) / "csv" / rows[0]["run_id"]
    metrics = csv_metrics(folder / "metrics.csv")
    assert EXPECTED <= set(metrics)
    assert len(metrics["train/loss"]) == 4 and len(metrics["val/score"]) == 2  # every step; every evaluation
    best = next(r["value"] for r in rows if r["metric"] == "accuracy" and r["protocol"] == rows[0]["selected_by"])
    assert best in metrics["val/rte/accuracy"]  # the stored best is one of the logged evaluations
    hparams = yaml.safe_load((folder / "hparams.yaml").read_text())
    assert hparams["method"]["_target_"].endswith("PromptTuning") and hparams["params"]["trainable_params"] > 0
    assert rows[0]["wandb_run_id"] is None  # a CSV run's id is its folder name, the rows' run_id


def test_tensorboard_logger_writes_the_same_metric_names(make_config, one_thread):
    cfg = make_config("logger=tensorboard", "task=rte", *STEPS)
    rows = run(cfg)
    scalars = tensorboard_scalars(Path(cfg.paths.output_dir) / "tensorboard" / rows[0]["run_id"])
    assert EXPECTED <= set(scalars)
    assert len(scalars["train/loss"]) == 4 and len(scalars["val/score"]) == 2


def test_all_loggers_see_the_same_metric_names(make_config, one_thread):
    """CSV and TensorBoard against what the trainer hands any logger (W&B included)."""
    names = {}
    for name in ("csv", "tensorboard"):
        root = make_config().paths.root
        cfg = make_config(f"logger={name}", "task=rte", *STEPS, f"paths.output_dir={root}/{name}",
                          f"results={root}/{name}.jsonl")  # fmt: skip
        run_id = run(cfg)[0]["run_id"]
        folder = Path(cfg.paths.output_dir) / name / run_id
        found = csv_metrics(folder / "metrics.csv") if name == "csv" else tensorboard_scalars(folder)
        names[name] = set(found) - {"epoch"}
    assert names["csv"] == names["tensorboard"]


def test_finish_writes_what_a_failed_run_buffered(tmp_path):
    logger = tracking.CsvSettings(flush_logs_every_n_steps=1000).make_logger(
        name="r1", group="g", save_dir=str(tmp_path), tags=["t"], config={"a": 1}
    )
    logger.log_metrics({"train/loss": 2.5}, step=0)
    tracking.finish(logger, exit_code=1)
    assert csv_metrics(tmp_path / "csv" / "r1" / "metrics.csv")["train/loss"] == [2.5]
    assert tracking.run_id(logger) is None


def test_secrets_never_reach_the_csv_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_NotARealTokenButSecret42")
    logger = tracking.CsvSettings().make_logger(
        name="r",
        group="g",
        save_dir=str(tmp_path),
        tags=[],
        config={"api_key": "x", "url": "a hf_NotARealTokenButSecret42"},
    )
    tracking.finish(logger, 0)
    text = (tmp_path / "csv" / "r" / "hparams.yaml").read_text()
    assert "hf_NotARealTokenButSecret42" not in text and "***" in text


def test_a_logger_that_cannot_start_does_not_fail_the_run(tmp_path, monkeypatch, caplog):
    import lightning.pytorch.loggers as loggers

    def broken(*args, **kwargs):
        raise ImportError("no tensorboard here")

    monkeypatch.setattr(loggers, "TensorBoardLogger", broken)
    with caplog.at_level(logging.WARNING):
        got = tracking.TensorBoardSettings().make_logger(
            name="r", group="g", save_dir=str(tmp_path), tags=[], config={}
        )
    assert got is None and "TensorBoard logger could not start (ImportError: no tensorboard here)" in caplog.text


@pytest.mark.parametrize("name", ["csv", "tensorboard"])
def test_sweep_end_skips_the_wandb_summary_without_error(tmp_path, caplog, name):
    """The sweep-end hook logs a W&B summary run only for W&B; with a file logger it quietly skips it."""
    node = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "logger" / f"{name}.yaml")
    assert instantiate(node) is not None
    hook = FigureCallback(results=str(tmp_path / "results.jsonl"), out_dir=str(tmp_path / "fig"), figures=[])
    with caplog.at_level(logging.INFO):
        hook.on_multirun_end(OmegaConf.create({"logger": node}))
    assert "SUMMARY NOT LOGGED" not in caplog.text and "could not be read" not in caplog.text
    assert not (tmp_path / "fig" / "wandb").exists()
