"""W&B dashboards, offline: per-job summaries, the sweep summary run, and figures drawn from runs
pulled with ``wandb.Api`` (a fake Api serving runs recorded from real offline jobs)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import wandb
from omegaconf import OmegaConf

from promptscale import tracking
from promptscale.report.cli import main
from promptscale.report.hook import FigureCallback
from promptscale.report.scores import score_table
from promptscale.report.wandb import TABLE_COLUMNS, dashboard, job_summary, log_sweep_summary
from promptscale.report.wandb_rows import fetch_rows, run_rows
from promptscale.store.results import ResultsStore
from promptscale.tracking import WandbSettings
from promptscale.train import run


@dataclass
class FakeRun:
    """The attributes of ``wandb.apis.public.Run`` that promptscale reads."""

    id: str
    name: str
    group: str | None
    config: dict[str, Any]
    summary: dict[str, Any]
    tags: list[str] = field(default_factory=list)
    state: str = "finished"
    job_type: str | None = None
    created_at: str = "2025-01-01T00:00:00"


class FakeApi:
    """``wandb.Api`` stand-in: ``runs(path, filters)`` over recorded runs, no network."""

    def __init__(self, runs: list[FakeRun]) -> None:
        self._runs = runs
        self.calls: list[tuple[str, Any]] = []

    def runs(self, path: str, filters: dict | None = None, **kwargs) -> list[FakeRun]:
        self.calls.append((path, filters))
        group = (filters or {}).get("group")
        return [r for r in self._runs if group is None or r.group == group]


@pytest.fixture
def recorded_jobs(make_config, monkeypatch):
    """Two real offline jobs; their W&B run (config, summary, tags, group) recorded at finish."""
    recorded: list[FakeRun] = []
    finish = tracking.finish

    def record(logger, exit_code):
        e = logger.experiment
        recorded.append(
            FakeRun(e.id, e.name, e.group, copy.deepcopy(e.config.as_dict()), dict(e.summary._as_dict()), list(e.tags))
        )
        finish(logger, exit_code)

    monkeypatch.setattr(tracking, "finish", record)
    rows = []
    for model in ("tiny_s", "tiny_m"):
        rows += run(make_config("task=cb", "logger=wandb", f"model={model}", "experiment_name=demo"))
    return rows, recorded


def test_job_runs_carry_chart_keys_and_pull_back_into_the_same_figure(recorded_jobs, monkeypatch, tmp_path):
    rows, recorded = recorded_jobs
    # what every job logs: group, tags, config.params, best/ summary keys
    rec = recorded[0]
    assert rec.group == "demo" and {"prompt_tuning", "tiny_s", "cb"} <= set(rec.tags)
    assert rec.config["params"]["model_params"] == rows[0]["total_params"]
    assert rec.config["model"]["name"] == "tiny_s" and rec.config["experiment_name"] == "demo"
    s = rec.summary
    assert s["best/cb/accuracy"] == pytest.approx(
        rows[0]["value"] if rows[0]["metric"] == "accuracy" else rows[1]["value"]
    )
    assert s["best/score"] == pytest.approx(s["best/cb/score"])
    assert s["method"] == "prompt_tuning" and s["model_params"] == rows[0]["total_params"]
    assert s["config_hash"] == rows[0]["config_hash"] and rec.id == rows[0]["wandb_run_id"]

    # pulled back through wandb.Api: the same rows, the same figure
    ignored = [
        FakeRun("s1", "demo-summary", "demo", {}, {}, job_type="summary"),  # the sweep's summary run
        FakeRun("c1", "demo-crash", "demo", recorded[0].config, recorded[0].summary, state="crashed"),
        FakeRun("o1", "other-1", "other", recorded[0].config, recorded[0].summary),  # another group
    ]
    api = FakeApi(recorded + ignored)
    monkeypatch.setattr(wandb, "Api", lambda *a, **k: api)
    pulled = fetch_rows("promptscale", entity="me", group="demo")
    key = ["run_id", "model", "total_params", "protocol", "task", "metric", "seed", "config_hash", "setting"]
    as_frame = lambda rs: pd.DataFrame(rs)[key + ["value"]].sort_values(key).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(as_frame(pulled), as_frame(rows), check_dtype=False)

    assert (
        main(
            [
                "--source",
                "wandb",
                "--entity",
                "me",
                "--project",
                "promptscale",
                "--group",
                "demo",
                "--out",
                str(tmp_path / "wb"),
                "--no-reference",
            ]
        )
        == 0
    )
    assert api.calls[-1] == ("me/promptscale", {"group": "demo"})
    assert (
        main(
            [
                "--results",
                str(ResultsStore(tmp_path / "results.jsonl").path),
                "--experiment",
                "demo",
                "--out",
                str(tmp_path / "store"),
                "--no-reference",
            ]
        )
        == 0
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "wb" / "figure1.csv"), pd.read_csv(tmp_path / "store" / "figure1.csv")
    )


def synthetic_runs() -> list[FakeRun]:
    """Recorded-style runs of a Figure 3 sweep: prompt length 5 / 20 on two sizes, two seeds.

    Selected by generate (``best/``): rte accuracy = 50 + length / 5 + 10k + seed, invalid 10 - 5k;
    rank (``best_rank/``): 5 more.
    """
    runs = []
    for length in (5, 20):
        for k, (model, params) in enumerate((("small", 76_961_152), ("base", 247_577_856))):
            for seed in (0, 1):
                config = {
                    "experiment_name": "ablation_prompt_length",
                    "seed": seed,
                    "model": {"name": model, "size": model},
                    "data": {"eval_split": "val", "tasks": ["rte"]},
                    "method": {"_target_": "promptscale.methods.prompt_tuning.PromptTuning", "prompt_length": length},
                    "figure": {"group_by": ["method.prompt_length"]},
                    "params": {
                        "model_params": params,
                        "total_params": params + length * 512,
                        "trainable_params": length * 512,
                    },
                }
                acc = 50 + length / 5 + 10 * k + seed
                # no "setting" summary key: recovered from config.figure.group_by
                summary = {"selected_by": "generate", "best/rte/accuracy": acc, "best/rte/score": acc}
                summary |= {"best/score": acc, "best/rte/step": 10, "best/rte/invalid": 10.0 - 5 * k}
                summary |= {"best_rank/rte/accuracy": acc + 5, "best_rank/rte/step": 10, "best_rank/score": acc + 5}
                runs.append(
                    FakeRun(f"id{length}{k}{seed}", f"r{length}{k}{seed}", "ablation_prompt_length", config, summary)
                )
    return runs


def test_job_summary_keys_per_protocol_round_trip_through_run_rows():
    rows = [r for run_ in synthetic_runs() for r in run_rows(run_)]
    first = [r for r in rows if r["run_id"] == "r500"]
    assert {(r["protocol"], r["metric"], r["value"]) for r in first} == {
        ("generate", "accuracy", 51.0),
        ("generate", "invalid", 10.0),
        ("rank", "accuracy", 56.0),
    }
    assert {r["selected_by"] for r in rows} == {"generate"}
    summary = job_summary(first)
    assert summary["selected_by"] == "generate" and summary["best/rte/invalid"] == 10.0
    assert summary["best/score"] == 51.0 and summary["best_rank/score"] == 56.0 and summary["best_rank/rte/step"] == 10
    # a run logged before protocols: best/ is rank, selected by rank
    old = FakeRun("o", "old", "g", synthetic_runs()[0].config, {"best/rte/accuracy": 60.0, "best/rte/step": 3})
    assert [(r["protocol"], r["selected_by"], r["value"]) for r in run_rows(old)] == [("rank", "rank", 60.0)]
    old_summary = job_summary([{**first[0], "protocol": None, "selected_by": None, "metric": "accuracy"}])
    assert old_summary["selected_by"] == "rank" and "best/rte/accuracy" in old_summary


def test_figure3_from_wandb(monkeypatch, tmp_path):
    monkeypatch.setattr(wandb, "Api", lambda *a, **k: FakeApi(synthetic_runs()))
    assert main(["--source", "wandb", "--project", "promptscale", "--figure", "3", "--out", str(tmp_path)]) == 0
    csv = pd.read_csv(tmp_path / "figure3.csv")
    cell = csv[(csv.setting == "prompt_length=20") & (csv.model == "base")].iloc[0]
    assert cell["mean"] == pytest.approx(64.5) and cell["std"] == pytest.approx(0.5) and cell["panel"] == "a"
    rows = run_rows(synthetic_runs()[0])
    assert rows[0]["method"] == "prompt_tuning" and rows[0]["method_params"] == 5 * 512 and rows[0]["step"] == 10
    assert main(["--source", "wandb", "--figure", "figure3", "--protocol", "rank", "--out", str(tmp_path / "r")]) == 0
    rank = pd.read_csv(tmp_path / "r" / "figure3.csv")
    assert (rank["mean"] - csv["mean"]).tolist() == pytest.approx([5.0] * len(csv))


def test_dashboard_table_and_charts():
    rows = [r for run_ in synthetic_runs() for r in run_rows(run_)]
    d = dashboard(rows)
    assert d["results"].columns == list(TABLE_COLUMNS)
    assert len(d["results"].data) == len(rows)
    assert d["results"].data[0][:7] == [
        "prompt_tuning",
        "prompt_length=5",
        "small",
        "small",
        76_961_152,
        "generate",
        "rte",
    ]
    assert set(d["scores"].get_dataframe()["protocol"]) == {"generate", "rank"}
    chart = d["charts/prompt_tuning"]
    assert "(generate protocol)" in chart.spec.string_fields["title"]
    table = score_table(rows, by_setting=True)
    points = {(key, x): y for x, key, y in chart.table.data}
    assert len(points) == len(table)
    for r in table.itertuples():
        assert points[(r.setting, r.total_params)] == pytest.approx(r.mean)
    assert job_summary([]) == {}


def test_summary_run_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    rows = [r for run_ in synthetic_runs() for r in run_rows(run_)]
    run_id = log_sweep_summary(rows, WandbSettings(mode="offline"), name="x-summary", group="x", save_dir=str(tmp_path))
    assert run_id and list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert wandb.run is None
    assert log_sweep_summary(rows, WandbSettings(mode="disabled"), name="n", group=None, save_dir=str(tmp_path)) is None


def test_callback_logs_summary_and_never_fails(tmp_path, monkeypatch, caplog):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append([r | {"git_sha": "x"} for run_ in synthetic_runs() for r in run_rows(run_)])
    logger = OmegaConf.create({"logger": {"_target_": "promptscale.tracking.WandbSettings", "mode": "offline"}})
    hook = FigureCallback(str(store.path), str(tmp_path / "out"), "ablation_prompt_length", ["figure3"])
    hook.on_multirun_end(config=logger)
    assert (tmp_path / "out" / "figure3.png").exists()
    assert list((tmp_path / "out" / "wandb").glob("offline-run-*"))

    def boom(*a, **k):
        raise ConnectionError("api.wandb.ai unreachable")

    monkeypatch.setattr(wandb, "init", boom)
    logger.logger.mode = "online"
    hook = FigureCallback(str(store.path), str(tmp_path / "out2"), "ablation_prompt_length", ["figure3"])
    hook.on_multirun_end(config=logger)
    assert (tmp_path / "out2" / "figure3.png").exists() and "W&B SUMMARY NOT LOGGED" in caplog.text


class RecordingRun:
    """What ``wandb.init`` returns, recording what the summary run logs."""

    logged: list[dict] = []

    def __init__(self, **kwargs) -> None:
        self.id = "rec1"

    def log(self, payload: dict) -> None:
        RecordingRun.logged.append(payload)

    def finish(self) -> None:
        pass


def test_summary_run_gets_the_gap_figure_and_ci_table(tmp_path, monkeypatch):
    """The demo's figures (Figure 1 and the gap) drawn by the hook, then logged: images, CI table, closed-at."""
    from test_analysis_compare import gap_store

    store = gap_store(tmp_path, {"small": (16, 16), "base": (8, 4), "large": (0, 0)})
    RecordingRun.logged = []
    monkeypatch.setattr(wandb, "init", RecordingRun)
    logger = OmegaConf.create({"logger": {"_target_": "promptscale.tracking.WandbSettings", "mode": "offline"}})
    hook = FigureCallback(str(store.path), str(tmp_path / "out"), "demo", ["figure1", "gap"], ["paper", "rank"])
    hook.on_multirun_end(config=logger)
    assert (tmp_path / "out" / "gap.png").exists() and (tmp_path / "out" / "rank" / "gap.png").exists()
    (payload,) = RecordingRun.logged
    assert isinstance(payload["figures/gap"], wandb.Image) and isinstance(payload["figures/figure1"], wandb.Image)
    gap = payload["gap"].get_dataframe()
    assert list(gap["model"]) == ["small", "base", "large"] and {"diff", "low", "high", "closed_at"} <= set(gap)
    assert payload["gap_closed_at"] == "large (783M)" and set(payload["gap_tasks"].get_dataframe()["task"]) == {
        "cb",
        "rte",
    }
    assert dashboard(store.rows()).keys() == {"results", "scores", "charts/model_tuning", "charts/prompt_tuning"}


def not_wandb_trackers() -> list:
    """Every tracker config in conf/logger that is not W&B (csv, tensorboard, ...), and a stand-in."""
    from conftest import CONF_DIR

    configs = [OmegaConf.load(p) for p in sorted((CONF_DIR / "logger").glob("*.yaml"))]
    others = [c for c in configs if "WandbSettings" not in str(c.get("_target_"))]
    return [*others, OmegaConf.create({"_target_": "promptscale.store.results.ResultsStore", "path": "/never"})]


@pytest.mark.parametrize("tracker", not_wandb_trackers(), ids=lambda c: str(c.get("_target_")).rsplit(".", 1)[-1])
def test_other_trackers_draw_the_figures_and_start_no_wandb_run(tracker, tmp_path, monkeypatch, caplog):
    def no_wandb(*a, **k):
        raise AssertionError("a W&B run was started for a tracker that is not W&B")

    monkeypatch.setattr(wandb, "init", no_wandb)
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append([r | {"git_sha": "x"} for run_ in synthetic_runs() for r in run_rows(run_)])
    hook = FigureCallback(str(store.path), str(tmp_path / "out"), "ablation_prompt_length", ["figure3"])
    hook.on_multirun_end(config=OmegaConf.create({"logger": tracker}))
    assert (tmp_path / "out" / "figure3.png").exists()
    assert "NOT" not in caplog.text and not (tmp_path / "out" / "wandb").exists() and not Path("/never").exists()
