"""Figure 1 and its tables from synthetic result rows with hand-computed scores."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from omegaconf import OmegaConf

from promptscale.reference import T5_PARAMS
from promptscale.report.cli import main
from promptscale.report.figures import FIGURE1_FILES, draw_figure, plot_figure
from promptscale.report.hook import FigureCallback
from promptscale.report.scores import score_table, task_table
from promptscale.store.results import ResultsStore

METHODS = ("prompt_tuning", "model_tuning")  # offset 0 and 5
MODELS = ("small", "base", "large")  # offset 0, 10, 20
SEEDS = (0, 1)


def row(method, model, seed, task, metric, value, **over) -> dict:
    """A generate-protocol row of a run selected by generate (a store written with protocols)."""
    r = {
        "run_id": f"{method}-{model}-{seed}",
        "experiment": "demo",
        "method": method,
        "model": model,
        "total_params": T5_PARAMS.get(model, 0),  # other models: pass total_params
        "trainable_params": 1,
        "task": task,
        "task_version": 1,
        "split": "val",
        "protocol": "generate",
        "selected_by": "generate",
        "metric": metric,
        "value": value,
        "seed": seed,
        "config_hash": f"h-{method}-{model}-{seed}",
        "git_sha": "x",
        "timestamp": "2025-01-01T00:00:00+00:00",
        "wandb_run_id": None,
        "status": "ok",
    }
    r.update(over)
    return r


def synthetic_rows() -> list[dict]:
    """rte accuracy = 50 + 10k + 5i + 2s; cb accuracy = 60 + 10k + 5i + 4s, cb f1 = acc - 10.

    So cb score = 55 + 10k + 5i + 4s and the seed score (rte + cb) / 2 = 52.5 + 10k + 5i + 3s:
    over seeds {0, 1} the mean is 54 + 10k + 5i and the population std is 1.5.
    """
    rows = []
    for i, method in enumerate(METHODS):
        for k, model in enumerate(MODELS):
            for s in SEEDS:
                base = 10 * k + 5 * i
                acc = 60 + base + 4 * s
                rows += [
                    row(method, model, s, "rte", "accuracy", 50 + base + 2 * s),
                    row(method, model, s, "cb", "accuracy", acc),
                    row(method, model, s, "cb", "f1_macro", acc - 10),
                    # Ignored by the score: non-score metrics, other split, failed run, AX task.
                    row(method, model, s, "rte", "loss", 1e6),
                    row(method, model, s, "rte", "invalid", 99.0),
                    row(method, model, s, "rte", "accuracy", 0.0, split="test"),
                    row(method, model, s, "cb", "accuracy", 0.0, status="failed"),
                    row(method, model, s, "axb", "matthews_corr", 1e6),
                ]
    return rows


def test_score_table_matches_hand_computation():
    table = score_table(synthetic_rows())
    assert len(table) == 6
    assert list(table["method"]) == ["model_tuning"] * 3 + ["prompt_tuning"] * 3
    cell = table[(table.method == "prompt_tuning") & (table.model == "small")].iloc[0]
    # seed 0: rte 50, cb (60 + 50) / 2 = 55 -> 52.5; seed 1: rte 52, cb (64 + 54) / 2 = 59 -> 55.5
    assert cell["mean"] == pytest.approx(54.0)
    assert cell["std"] == pytest.approx(1.5)
    assert cell["n_seeds"] == 2 and cell["tasks"] == "cb,rte"
    assert cell["protocol"] == "generate" and cell["selected_by"] == "generate"
    for i, method in enumerate(METHODS):
        for k, model in enumerate(MODELS):
            c = table[(table.method == method) & (table.model == model)].iloc[0]
            assert c["mean"] == pytest.approx(54 + 10 * k + 5 * i)
            assert c["std"] == pytest.approx(1.5)
            assert c["total_params"] == T5_PARAMS[model]
    assert table.attrs["tasks"] == ["cb", "rte"] and not table.attrs["restricted"]


def test_single_seed_has_zero_std():
    rows = [r for r in synthetic_rows() if r["seed"] == 0]
    table = score_table(rows)
    assert (table["std"] == 0).all() and (table["n_seeds"] == 1).all()


def test_task_table():
    t = task_table(synthetic_rows())
    cb = t[(t.method == "model_tuning") & (t.model == "base") & (t.task == "cb")].iloc[0]
    # cb score = 55 + 10 + 5 + 4s -> seeds 70, 74
    assert cb["mean"] == pytest.approx(72.0) and cb["std"] == pytest.approx(2.0)
    assert set(t["task"]) == {"cb", "rte", "axb"}  # AX-b listed, never scored
    rte = t[(t.method == "model_tuning") & (t.model == "base") & (t.task == "rte")].iloc[0]
    assert rte["invalid"] == pytest.approx(99.0) and pd.isna(cb["invalid"])


def test_task_intersection_warns_and_restricts(tmp_path):
    rows = synthetic_rows()
    rows += [row("model_tuning", m, s, "boolq", "accuracy", 0.0) for m in MODELS for s in SEEDS]
    with pytest.warns(UserWarning, match="common to all"):
        table = score_table(rows)
    assert table.attrs["restricted"] and table.attrs["tasks"] == ["cb", "rte"]
    c = table[(table.method == "model_tuning") & (table.model == "small")].iloc[0]
    assert c["mean"] == pytest.approx(59.0)  # boolq's 0.0 left out
    with pytest.warns(UserWarning):
        fig = plot_figure(rows)
    title = fig.axes[0].get_title()
    assert "2 of 8 tasks (cb, rte)" in title and "common to all" in title


def test_draw_figure_writes_files(tmp_path):
    paths = draw_figure(synthetic_rows(), tmp_path / "fig")
    assert set(paths) == set(FIGURE1_FILES)
    for p in paths.values():
        assert p.exists() and p.stat().st_size > 0
    assert paths["figure1.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["figure1.png"].stat().st_size > 20_000
    csv = pd.read_csv(paths["figure1.csv"])
    pd.testing.assert_frame_equal(csv, score_table(synthetic_rows()), check_dtype=False)
    md = paths["tasks.md"].read_text()
    # columns cb, rte, axb, score, invalid %: rte's rate (99) is the mean over the scored tasks' rates
    line = "| Prompt Tuning | small | 77M | 2 | generate | 57.0 ± 2.0 | 51.0 ± 1.0 | 1000000.0 ± 0.0 | 54.0 ± 1.5 |"
    assert line + " 99.0 ± 0.0 |" in md
    assert "over 2 of 8 tasks (cb, rte)" in md and "Invalid %" in md
    tasks = pd.read_csv(paths["tasks.csv"])
    assert set(tasks.columns) >= {"method", "model", "protocol", "task", "mean", "std", "n_seeds", "invalid"}


def test_title_default_and_override():
    fig = plot_figure(synthetic_rows(), reference=False)
    assert "over 2 of 8 tasks (cb, rte)" in fig.axes[0].get_title()
    assert "(paper protocol)" in fig.axes[0].get_title()
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["Model Tuning", "Prompt Tuning"]
    fig = plot_figure(synthetic_rows(), title="Custom")
    assert fig.axes[0].get_title() == "Custom"
    # an own title still says the protocol: the legend does
    assert "paper protocol: generation, invalid output = wrong" in fig.axes[0].get_legend().get_title().get_text()
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "Prompt Tuning (Lester et al. 2021, ref.)" in labels
    assert any(lbl.startswith("GPT-3 few-shot") for lbl in labels)


def test_cli(tmp_path, capsys):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(synthetic_rows())
    store.append([row("lora", "small", 0, "cb", "accuracy", 1.0, experiment="other")])
    out = tmp_path / "figs"
    rc = main(["--results", str(store.path), "--out", str(out), "--experiment", "demo", "--no-reference"])
    assert rc == 0
    printed = capsys.readouterr().out
    for name in FIGURE1_FILES:
        assert (out / name).exists() and str(out / name) in printed
    assert "lora" not in (out / "figure1.csv").read_text()
    rc = main(["--results", str(store.path), "--out", str(out), "--experiment", "nope"])
    assert rc == 1 and "experiments present: demo, other" in capsys.readouterr().err
    # the old name of Figure 1 still works
    assert (
        main(["--figure", "1", "--results", str(store.path), "--experiment", "demo", "--out", str(tmp_path / "old")])
        == 0
    )
    assert (tmp_path / "old" / "figure1.png").exists()


def test_empty_store_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="no result rows"):
        draw_figure([], tmp_path)
    path = tmp_path / "missing.jsonl"
    assert main(["--results", str(path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert f"no result rows in {path}; run promptscale-train first" in err


def test_figure_callback(tmp_path, caplog):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(synthetic_rows())
    out = tmp_path / "cb_out"
    FigureCallback(str(store.path), str(out), experiment="demo").on_multirun_end(config=OmegaConf.create({}))
    for name in FIGURE1_FILES:
        assert (out / name).exists()
    # A drawing failure is logged, never raised.
    with caplog.at_level(logging.ERROR):
        FigureCallback(str(tmp_path / "none.jsonl"), str(tmp_path / "x")).on_multirun_end(config=None)
    assert "FIGURE NOT DRAWN" in caplog.text


# ---------------------------------------------------------------------- the gap, fits, families


def test_gap_figure_from_the_store(tmp_path, capsys):
    """Known answer (test_analysis_compare.gap_store): -100 at small, below 0 at base, 0 at large."""
    from test_analysis_compare import gap_store

    from promptscale.report.gap import GAP_FILES, plot_gap

    store = gap_store(tmp_path, {"small": (16, 16), "base": (8, 4), "large": (0, 0)})
    out = tmp_path / "gap"
    assert main(["--figure", "gap", "--results", str(store.path), "--out", str(out), "--bootstrap", "400"]) == 0
    assert all((out / name).stat().st_size > 0 for name in GAP_FILES)
    gap = pd.read_csv(out / "gap.csv")
    assert list(gap["model"]) == ["small", "base", "large"] and set(gap["closed_at"]) == {"large (783M)"}
    assert (
        gap["diff"].iloc[0] == -100.0
        and gap["high"].iloc[1] < 0
        and (gap["low"].iloc[2], gap["high"].iloc[2]) == (0, 0)
    )
    assert "Gap closed at: large (783M)." in (out / "gap.md").read_text()
    assert "\\caption{Prompt Tuning minus Model Tuning" in (out / "gap.tex").read_text()
    assert set(pd.read_csv(out / "gap_tasks.csv")["task"]) == {"cb", "rte"}

    from promptscale.analysis.compare import compare

    fig = plot_gap(compare(store.rows(), store.dir, "model_tuning", "prompt_tuning", n_boot=50))
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert {"this repo", "no gap", "Lester et al. 2021 (SPoT Table 4), ref."} <= set(lines)
    assert list(lines["no gap"].get_ydata()) == [0, 0]
    assert list(lines["Lester et al. 2021 (SPoT Table 4), ref."].get_ydata()) == pytest.approx(
        [-3.0, -10.6, -6.8, -3.9, -1.1]
    )
    assert "gap closed at: large (783M)" in ax.get_title() and len(ax.collections) >= 1  # the CI band
    assert (
        main(["--figure", "gap", "--results", str(store.path), "--out", str(out), "--compare", "model_tuning", "lora"])
        == 1
    )
    assert "no finished runs of lora to compare" in capsys.readouterr().err


def test_gap_needs_a_store():
    from promptscale.report.registry import DrawOptions, draw

    with pytest.raises(ValueError, match="reads per-example predictions from a results store"):
        draw("gap", synthetic_rows(), "unused", DrawOptions())


def test_figure1_fit_overlay(tmp_path):
    paths = draw_figure(synthetic_rows(), tmp_path / "fit", fit=True, reference=False)
    fits = pd.read_csv(paths["figure1_fits.csv"])
    # seed scores 52.5 + 10k + 5i + 3s at sizes small/base/large: a line in k, not in log10(params)
    assert list(fits["method"]) == ["model_tuning", "prompt_tuning"] and set(fits["form"]) == {"line"}
    assert set(fits["points"]) == {6} and set(fits["sizes"]) == {3}
    fig = plot_figure(synthetic_rows(), fit=True, reference=False)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels[:2] == ["Model Tuning", "Prompt Tuning"] and "Prompt Tuning: line fit" in labels
    assert "scaling fit" in fig.axes[0].get_legend().get_title().get_text()
    assert "figure1_fits.csv" not in draw_figure(synthetic_rows(), tmp_path / "plain")


def test_one_line_per_method_and_family():
    rows = synthetic_rows()
    flan = [r | {"family": "flan_t5", "model": f"flan_{r['model']}", "value": r["value"] + 3} for r in rows]
    mixed = [r | {"family": "t5_1_1_lm_adapt"} for r in rows] + flan
    table = score_table(mixed)
    assert list(table.columns[:4]) == ["method", "model", "family", "total_params"] and len(table) == 12
    labels = plot_figure(mixed, reference=False).axes[0].get_legend_handles_labels()[1]
    assert {"Prompt Tuning · Flan-T5", "Prompt Tuning · T5 1.1 LM-adapted", "Model Tuning · Flan-T5"} <= set(labels)
    assert "family" not in score_table([r | {"family": "tiny"} for r in rows]).columns  # one family: as before
