"""``promptscale-results``: list, scores, fits, compare, export and missing, with exit codes 0/1/2.

``missing`` runs on a half-finished demo sweep: two of its (trimmed) jobs trained for real, the
others listed exactly, a multi-task job counted once."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from test_analysis_compare import gap_store
from test_results import make_row

from promptscale.analysis.cli import main
from promptscale.analysis.missing import expected_configs, sweep_cells
from promptscale.job import compose
from promptscale.store.results import ResultsStore
from promptscale.train import run

DEMO_TRIM = ["seed=0", "task=cb", "model=tiny_s", "recipe.max_steps=2", "recipe.val_check_interval=2",
             "data.train_limit=4", "data.eval_limit=4"]  # fmt: skip


@pytest.fixture
def store(tmp_path):
    """Model tuning right on every example; prompt tuning wrong on 16 / 8 / 0 of them at small / base / large."""
    return gap_store(tmp_path, {"small": (16, 16), "base": (8, 4), "large": (0, 0)})


def results(store, *args: str) -> list[str]:
    return [*args, "--results", str(store.path)]


def test_list_filters_runs_and_names_an_empty_filter(store, capsys):
    assert main(results(store, "list", "--method", "prompt_tuning", "--size", "base")) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 3 and all(line.split()[0].startswith("prompt_tuning-base-") for line in lines[1:])
    assert "model_tuning" not in out and " cb,rte " in out
    assert main(results(store, "list", "--task", "rte", "--protocol", "rank", "--rows", "--format", "csv")) == 0
    rows = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert set(rows["task"]) == {"rte"} and set(rows["protocol"]) == {"rank"} and len(rows) == 12
    assert main(results(store, "list", "--method", "lora")) == 1
    err = capsys.readouterr().err
    assert "error: ValueError: no rows with --method lora (present: model_tuning, prompt_tuning)" in err
    assert main(results(store, "list", "--status", "failed")) == 1


def test_scores_aggregate_as_the_figure_does(store, capsys):
    assert main(results(store, "scores", "--format", "csv")) == 0
    table = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    pt = table[table.method == "prompt_tuning"].set_index("model")["mean"]
    assert pt["small"] == 0.0 and pt["large"] == 100.0 and set(table["n_seeds"]) == {2}
    assert main(results(store, "scores", "--tasks", "--method", "prompt_tuning", "--size", "small")) == 0
    assert "rte" in capsys.readouterr().out
    assert main(results(store, "scores", "--seeds", "--format", "markdown")) == 0
    assert capsys.readouterr().out.startswith("| method | model | total_params | protocol | seed | score |")
    assert main(results(store, "fits")) == 0
    assert "prompt_tuning" in capsys.readouterr().out


def test_compare_prints_the_ci_table_and_gap_closed_at(store, capsys):
    assert main(results(store, "compare", "model_tuning", "prompt_tuning", "--bootstrap", "300", "--fit")) == 0
    out = capsys.readouterr().out
    assert (
        "Gap closed at: large (783M)." in out
        and "| large (783M) | 2 / 2 | 100.00 | 100.00 | 0.00 | [0.00, 0.00] |" in out
    )
    assert "300 replicates" in out and "## Per task" in out
    assert "Fitted crossing at 712M parameters (95% CI" in out and "the interval reaches beyond the measured" in out
    assert main(results(store, "compare", "model_tuning", "lora")) == 1
    assert "ComparisonError: no finished runs of lora to compare" in capsys.readouterr().err


def test_export_writes_every_format(store, tmp_path, capsys):
    for suffix in ("csv", "parquet", "md", "tex"):
        out = tmp_path / f"scores.{suffix}"
        assert main(results(store, "export", "scores", "--out", str(out))) == 0
    assert (
        pd.read_parquet(tmp_path / "scores.parquet")["mean"].tolist()
        == pd.read_csv(tmp_path / "scores.csv")["mean"].tolist()
    )
    assert (tmp_path / "scores.md").read_text().startswith("| method | model |")
    assert (
        "\\toprule" in (tmp_path / "scores.tex").read_text()
        and "prompt\\_tuning" in (tmp_path / "scores.tex").read_text()
    )
    assert main(results(store, "export", "rows", "--out", str(tmp_path / "rows.parquet"))) == 0
    assert len(pd.read_parquet(tmp_path / "rows.parquet")) == len(store.rows())  # mixed-type columns as text
    assert main(results(store, "export", "compare", "--bootstrap", "100", "--out", str(tmp_path / "gap.csv"))) == 0
    assert list(pd.read_csv(tmp_path / "gap.csv")["closed"]) == [False, False, True]
    assert main(results(store, "export", "runs", "--format", "latex")) == 0
    assert "\\begin{tabular}" in capsys.readouterr().out
    assert main(results(store, "export", "scores", "--format", "parquet")) == 1  # binary needs --out


def test_usage_errors_exit_2(store, capsys):
    assert main(results(store, "compare", "model_tuning", "prompt_tuning", "--confidence", "95")) == 2
    assert "need --bootstrap >= 1 and 0 < --confidence < 1, got 1000 and 95.0" in capsys.readouterr().err
    assert main(results(store, "scores", "--protocol", "vibes")) == 2
    assert "usage error: unknown protocol 'vibes'" in capsys.readouterr().err
    assert main(results(store, "missing", "--experiment", "nope")) == 2
    err = capsys.readouterr().err
    assert "usage error: no experiment 'nope'" in err and "(have: ablation_objective," in err and "demo" in err
    with pytest.raises(SystemExit) as exit_:
        main(["frobnicate"])
    assert exit_.value.code == 2
    empty = ResultsStore(store.path.parent / "empty" / "results.jsonl")
    assert main(["list", "--results", str(empty.path)]) == 1
    assert "no result rows in" in capsys.readouterr().err


def test_missing_lists_exactly_the_unfinished_configs_of_a_half_finished_demo(tmp_path, capsys):
    cells = sweep_cells("demo", DEMO_TRIM)
    assert len(cells) == 6  # the six methods, trimmed to one size, task and seed
    done = [c for c in cells if "method=prompt_design" in c or "method=prompt_tuning" in c]
    rows = []
    for i, cell in enumerate(done):  # two jobs of the sweep, trained (evaluated) for real
        cfg = compose(["experiment=demo", *cell, f"paths.root={tmp_path}", f"paths.output_dir={tmp_path}/run{i}",
                       "logger=none"])  # fmt: skip
        rows += run(cfg)
    store = ResultsStore(tmp_path / "results.jsonl")
    assert store.finished_hashes() == {r["config_hash"] for r in rows} and len(store.finished_hashes()) == 2
    failed = expected_configs("demo", DEMO_TRIM).set_index("method").loc["lora", "config_hash"]
    store.append([make_row(config_hash=failed, status="failed", metric="error", value=None)])
    capsys.readouterr()  # the jobs' own output
    assert main(["missing", "--results", str(store.path), "--experiment", "demo", "--format", "csv", *DEMO_TRIM]) == 0
    listed = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert sorted(listed["method"]) == ["lora", "model_tuning", "multitask_model_tuning", "prefix_tuning"]
    assert dict(zip(listed["method"], listed["status"]))["lora"] == "failed"
    assert set(listed["status"]) == {"missing", "failed"} and not set(listed["config_hash"]) & store.finished_hashes()
    assert listed.set_index("method").loc["multitask_model_tuning", "tasks"] == "cb,copa,rte"
    wider = [*DEMO_TRIM[:1], "task=cb,rte", *DEMO_TRIM[2:]]  # two task values: 12 jobs, multi-task once
    assert main(["missing", "--results", str(store.path), "--experiment", "demo", *wider]) == 0
    out = capsys.readouterr().out
    assert "9 of 11 configs of experiment demo not finished (12 jobs in the sweep" in out
    assert sum(line.split()[1] == "multitask_model_tuning" for line in out.splitlines()[1:-1]) == 1


def test_console_script_module_runs():
    out = subprocess.run([sys.executable, "-m", "promptscale.analysis.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "missing" in out.stdout and "compare" in out.stdout
