"""Figure 3 (ablations) from synthetic rows with hand-computed scores; per-task md/LaTeX tables."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from promptscale.reference import T5_PARAMS
from promptscale.report.cli import main
from promptscale.report.figure3 import FIGURE3_FILES, FIGURE3_PANELS, draw_figure3, plot_figure3
from promptscale.report.figures import FIGURE1_FILES, draw_figure
from promptscale.report.hook import FigureCallback
from promptscale.report.labels import setting_name
from promptscale.report.scores import score_table
from promptscale.report.tables import tasks_latex
from promptscale.store.results import ResultsStore

MODELS = ("small", "base")  # k = 0, 1
SEEDS = (0, 1)
PANELS = {
    "ablation_prompt_length": ["prompt_length=1", "prompt_length=20", "prompt_length=100", "prompt_length=5"],
    "ablation_prompt_init": ["init=class_label", "init=random_uniform", "init=sampled_vocab"],
    "ablation_objective": [
        "pretraining=lm_adaptation, target_sentinel=false",
        "pretraining=span_corruption, target_sentinel=true",
        "pretraining=span_corruption, target_sentinel=false",
    ],
}


def row(experiment, setting, model, seed, task, metric, value, **over) -> dict:
    r = {
        "run_id": f"{experiment}-{setting}-{model}-{seed}",
        "experiment": experiment,
        "method": "prompt_tuning",
        "model": model,
        "size": model,
        "total_params": T5_PARAMS[model],
        "method_params": 100,
        "trainable_params": 100,
        "task": task,
        "task_version": 1,
        "split": "val",
        "protocol": "generate",
        "selected_by": "generate",
        "metric": metric,
        "value": value,
        "seed": seed,
        "config_hash": f"h-{experiment}-{setting}-{model}-{seed}",
        "git_sha": "x",
        "timestamp": "2025-01-01T00:00:00+00:00",
        "wandb_run_id": None,
        "status": "ok",
        "setting": setting,
    }
    r.update(over)
    return r


def expected(j: int, k: int) -> float:
    """Setting j, model k: rte = 40 + 3j + 10k + 2s, cb acc = rte + 6, cb f1 = rte + 2 -> cb 44 + ...

    Seed score = (rte + cb) / 2 = 42 + 3j + 10k + 2s; over seeds {0, 1}: mean 43 + 3j + 10k, std 1.
    """
    return 43 + 3 * j + 10 * k


def ablation_rows() -> list[dict]:
    rows = []
    for experiment, settings in PANELS.items():
        for j, setting in enumerate(settings):
            for k, model in enumerate(MODELS):
                for s in SEEDS:
                    rte = 40 + 3 * j + 10 * k + 2 * s
                    rows += [
                        row(experiment, setting, model, s, "rte", "accuracy", rte),
                        row(experiment, setting, model, s, "cb", "accuracy", rte + 6),
                        row(experiment, setting, model, s, "cb", "f1_macro", rte + 2),
                        row(experiment, setting, model, s, "rte", "accuracy", 0.0, status="failed"),
                    ]
    return rows


def test_score_table_by_setting():
    rows = [r for r in ablation_rows() if r["experiment"] == "ablation_prompt_length"]
    table = score_table(rows, by_setting=True)
    assert "setting" in table.columns and len(table) == 4 * 2
    # numeric order of prompt lengths, not text order
    assert list(dict.fromkeys(table["setting"])) == [
        "prompt_length=1",
        "prompt_length=5",
        "prompt_length=20",
        "prompt_length=100",
    ]
    for j, setting in enumerate(PANELS["ablation_prompt_length"]):
        for k, model in enumerate(MODELS):
            cell = table[(table.setting == setting) & (table.model == model)].iloc[0]
            assert cell["mean"] == pytest.approx(expected(j, k)) and cell["std"] == pytest.approx(1.0)
    # without by_setting the old columns stay as they were
    assert "setting" not in score_table(rows[:4]).columns


def test_figure3_csv_matches_rows(tmp_path):
    paths = draw_figure3(ablation_rows(), tmp_path)
    assert set(paths) == set(FIGURE3_FILES)
    for p in paths.values():
        assert p.stat().st_size > 0
    assert paths["figure3.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["figure3.pdf"].read_bytes()[:4] == b"%PDF"
    csv = pd.read_csv(paths["figure3.csv"])
    assert set(csv["panel"]) == {"a", "b", "c"}  # no rows for (d)
    letters = {p.experiment: p.letter for p in FIGURE3_PANELS}
    assert len(csv) == sum(len(s) for s in PANELS.values()) * len(MODELS)
    for experiment, settings in PANELS.items():
        for j, setting in enumerate(settings):
            for k, model in enumerate(MODELS):
                cell = csv[(csv.experiment == experiment) & (csv.setting == setting) & (csv.model == model)]
                assert len(cell) == 1
                cell = cell.iloc[0]
                assert cell["panel"] == letters[experiment]
                assert cell["mean"] == pytest.approx(expected(j, k))
                assert cell["std"] == pytest.approx(1.0)
                assert cell["n_seeds"] == 2 and cell["total_params"] == T5_PARAMS[model]
    tasks = pd.read_csv(paths["figure3_tasks.csv"])
    cb = tasks[(tasks.setting == "init=sampled_vocab") & (tasks.model == "base") & (tasks.task == "cb")].iloc[0]
    # sampled_vocab is j = 2 in PANELS: cb = rte + 4 = 40 + 6 + 10 + 4 + 2s -> seeds 60, 62
    assert cb["mean"] == pytest.approx(61.0) and cb["std"] == pytest.approx(1.0)


def test_figure3_tables_markdown_and_latex(tmp_path):
    paths = draw_figure3(ablation_rows(), tmp_path)
    md = paths["figure3_tasks.md"].read_text()
    assert "# (a) Prompt length: experiment ablation_prompt_length" in md
    # prompt_length=20 is j = 1: rte 43 + 2s, cb 47 + 2s, score 45 + 2s (columns cb, rte, score)
    assert (
        "| Prompt Tuning | prompt_length=20 | small | 77M | 2 | generate | 48.0 ± 1.0 | 44.0 ± 1.0 | 46.0 ± 1.0 |" in md
    )
    tex = paths["figure3_tasks.tex"].read_text()
    assert tex.count(r"\begin{tabular}") == 3 and tex.count(r"\toprule") == 3 and r"\bottomrule" in tex
    assert (
        r"prompt\_length=20 & small & 77M & 2 & generate & 48.0 $\pm$ 1.0 & 44.0 $\pm$ 1.0 & 46.0 $\pm$ 1.0 \\" in tex
    )
    assert r"\label{tab:figure3a}" in tex and "(c) Pre-training method" in tex


def test_latex_table_escapes_and_aligns():
    # rows of an old store: no protocol column, so rank classification
    rows = [row("e", "init=class_label", "small", 0, "cb", m, 50.0, protocol=None) for m in ("accuracy", "f1_macro")]
    tex = tasks_latex(rows, ("rank",), by_setting=True)
    assert r"\begin{tabular}{llllrlrr}" in tex  # 4 text columns, seeds, protocol, one task, score
    assert r"small & 77M & 1 & rank & 50.0 $\pm$ 0.0" in tex
    assert r"init=class\_label" in tex and "CB" in tex


def test_four_panels_and_placeholder():
    fig = plot_figure3(ablation_rows())
    axes = [ax for ax in fig.axes if ax.get_title(loc="left")]
    assert [ax.get_title(loc="left") for ax in axes] == [
        "(a) Prompt length",
        "(b) Prompt initialization",
        "(c) Pre-training method",
        "(d) LM adaptation steps",
    ]
    assert any("no runs" in t.get_text() for t in axes[3].texts)
    labels = axes[2].get_legend_handles_labels()[1]
    assert labels[:3] == ["Span Corruption", "Span Corruption + Sentinel", "LM Adaptation (100K)"]
    assert axes[1].get_legend_handles_labels()[1][:3] == ["Random Uniform", "Sampled Vocab", "Class Label"]
    assert axes[0].get_legend_handles_labels()[1][:4] == ["1", "5", "20", "100"]


def test_setting_names():
    assert setting_name("prompt_length=150") == "150"
    assert setting_name("pretraining=span_corruption, target_sentinel=true") == "Span Corruption + Sentinel"
    assert setting_name("pretraining=tiny_s, target_sentinel=false") == "tiny_s"
    assert setting_name("") == ""


def test_no_ablation_rows_is_an_error(tmp_path):
    rows = [r for r in ablation_rows()]
    for r in rows:
        r["experiment"] = "demo"
    with pytest.raises(ValueError, match="no result rows of any Figure 3 experiment"):
        draw_figure3(rows, tmp_path)


def test_cli_figure3_and_panel_override(tmp_path, capsys):
    store = ResultsStore(tmp_path / "results.jsonl")
    rows = ablation_rows()
    store.append(rows)
    out = tmp_path / "fig3"
    assert main(["--figure", "3", "--results", str(store.path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in FIGURE3_FILES:
        assert str(out / name) in printed
    # draw panel (d) from another experiment's rows
    store.append([{**r, "experiment": "my_steps"} for r in rows if r["experiment"] == "ablation_prompt_init"])
    assert main(["--figure", "3", "--results", str(store.path), "--out", str(out), "--panel", "d=my_steps"]) == 0
    assert set(pd.read_csv(out / "figure3.csv")["panel"]) == {"a", "b", "c", "d"}
    assert main(["--figure", "3", "--results", str(store.path), "--out", str(out), "--panel", "z=x"]) == 1
    assert "LETTER=EXPERIMENT" in capsys.readouterr().err
    # an experiment that is no ablation (the demo): a lone panel, one line per method
    store.append(
        [
            {**r, "experiment": "demo", "setting": ""}
            for r in rows
            if r["experiment"] == "ablation_prompt_init" and r["setting"] == "init=class_label"
        ]
    )
    assert (
        main(["--figure", "3", "--results", str(store.path), "--out", str(out / "demo"), "--experiment", "demo"]) == 0
    )
    csv = pd.read_csv(out / "demo" / "figure3.csv")
    assert set(csv["experiment"]) == {"demo"} and len(csv) == len(MODELS)


def test_figure1_writes_latex_tasks_table(tmp_path):
    rows = [
        {**r, "setting": ""}
        for r in ablation_rows()
        if r["experiment"] == "ablation_prompt_init" and r["setting"] == "init=class_label"
    ]
    paths = draw_figure(rows, tmp_path)
    assert set(paths) == set(FIGURE1_FILES) and "tasks.tex" in paths
    assert r"\toprule" in paths["tasks.tex"].read_text()


def test_callback_draws_the_named_figures(tmp_path, caplog):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(ablation_rows())
    out = tmp_path / "cb"
    hook = FigureCallback(str(store.path), str(out), experiment="ablation_prompt_init", figures=["figure3"])
    with caplog.at_level(logging.INFO):
        hook.on_multirun_end(config=None)
    for name in FIGURE3_FILES:
        assert (out / name).exists()
    assert not (out / "figure1.png").exists()  # only the named figure
    assert set(pd.read_csv(out / "figure3.csv")["panel"]) == {"a", "b", "c"}  # the whole store
    # a grouped sweep that is no Figure 3 panel: one panel of its own; figures by old name too
    store.append([{**r, "experiment": "custom"} for r in ablation_rows() if r["experiment"] == "ablation_prompt_init"])
    hook = FigureCallback(str(store.path), str(tmp_path / "custom"), experiment="custom", figures=["3", "figure1"])
    hook.on_multirun_end(config=None)
    assert (tmp_path / "custom" / "figure1.png").exists()
    csv = pd.read_csv(tmp_path / "custom" / "figure3.csv")
    assert set(csv["experiment"]) == {"custom"}


def test_callback_draws_each_protocol_and_refuses_unknown_names(tmp_path, caplog):
    store = ResultsStore(tmp_path / "results.jsonl")
    rows = [r for r in ablation_rows() if r["experiment"] == "ablation_prompt_init"]
    store.append(rows + [{**r, "protocol": "rank", "value": r["value"] + 1} for r in rows])
    out = tmp_path / "cb"
    FigureCallback(str(store.path), str(out), "ablation_prompt_init", ["figure3"], ["paper", "rank"]).on_multirun_end(
        config=None
    )
    paper, rank = pd.read_csv(out / "figure3.csv"), pd.read_csv(out / "rank" / "figure3.csv")
    assert set(paper["protocol"]) == {"generate"} and set(rank["protocol"]) == {"rank"}
    assert (rank["mean"] - paper["mean"]).tolist() == pytest.approx([1.0] * len(paper))
    with pytest.raises(ValueError, match="figures: unknown figure 'figure9'"):
        FigureCallback(str(store.path), str(out), figures=["figure9"])
    with pytest.raises(ValueError, match="unknown protocol 'greedy'"):
        FigureCallback(str(store.path), str(out), protocols=["greedy"])
