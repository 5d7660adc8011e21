"""The report package: protocol choice, the invalid-output panel and column, the figure registry,
and imports that point down only. Synthetic rows with known answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_figures import row as figure_row

from promptscale.report import FIGURE_NAMES, FIGURES, DrawOptions, FigureSpec, check_figure_names
from promptscale.report.cli import main
from promptscale.report.figure3 import plot_figure3
from promptscale.report.figures import draw_figure, plot_figure
from promptscale.report.scores import invalid_table, score_table
from promptscale.report.selection import describe_protocol, protocol_rows
from promptscale.report.tables import tasks_markdown
from promptscale.store.results import ResultsStore

# Per (method, protocol): rte accuracy at size k = BASE + 10k; cb accuracy = f1 = the same.
BASE = {
    ("prompt_tuning", "generate"): 50.0,
    ("prompt_tuning", "rank"): 60.0,
    ("prompt_design", "generate"): 30.0,
    ("prompt_design", "rank"): 40.0,
}
INVALID = {"prompt_tuning": 20.0, "prompt_design": 70.0}  # rte's; cb's is half of it


def row(method, model, protocol, task, metric, value, **over) -> dict:
    """One seed-0 row of a run that wrote both protocols (``test_figures.row`` with the protocol set)."""
    return figure_row(method, model, 0, task, metric, value, protocol=protocol, **over)


def both_protocols() -> list[dict]:
    """Two methods x two sizes, each run with a full set of rows per protocol (as training writes)."""
    rows = []
    for (method, protocol), base in BASE.items():
        for k, model in enumerate(("small", "base")):
            value = base + 10 * k
            rows += [row(method, model, protocol, t, m, value) for t, m in (("rte", "accuracy"), ("cb", "accuracy"))]
            rows.append(row(method, model, protocol, "cb", "f1_macro", value))
            if protocol == "generate":
                rows.append(row(method, model, protocol, "rte", "invalid", INVALID[method] / (k + 1)))
                rows.append(row(method, model, protocol, "cb", "invalid", INVALID[method] / 2 / (k + 1)))
    return rows


def old_rows() -> list[dict]:
    """A store written before protocols: no protocol or selected_by column (rank classification)."""
    rows = [r for r in both_protocols() if r["protocol"] == "rank"]
    for r in rows:
        del r["protocol"], r["selected_by"]
    return rows


def means(table: pd.DataFrame) -> dict[tuple[str, str], float]:
    return {(r.method, r.model): r.mean for r in table.itertuples()}


@pytest.mark.parametrize(
    ("choice", "pt", "pd_"),
    [("paper", "generate", "rank"), ("generate", "generate", "generate"), ("rank", "rank", "rank")],
)
def test_protocol_choice_picks_each_methods_rows(choice, pt, pd_):
    table = score_table(both_protocols(), protocol=choice)
    expected = {
        ("prompt_tuning", "small"): BASE[("prompt_tuning", pt)],
        ("prompt_tuning", "base"): BASE[("prompt_tuning", pt)] + 10,
        ("prompt_design", "small"): BASE[("prompt_design", pd_)],
        ("prompt_design", "base"): BASE[("prompt_design", pd_)] + 10,
    }
    assert means(table) == pytest.approx(expected)
    assert dict(zip(table["method"], table["protocol"])) == {"prompt_tuning": pt, "prompt_design": pd_}
    assert set(table["selected_by"]) == {"generate"} and table.attrs["protocol"] == choice


def test_old_rows_read_as_rank_and_the_error_names_the_protocols_present(tmp_path, capsys):
    table = score_table(old_rows(), protocol="rank")
    assert means(table)[("prompt_tuning", "base")] == pytest.approx(70.0)
    assert set(table["protocol"]) == {"rank"} and set(table["selected_by"]) == {"rank"}
    # prompt design ranks under the paper's protocol, so an old store still has that line
    with pytest.warns(UserWarning, match=r"2 run\(s\) have no rows under the paper protocol"):
        assert set(score_table(old_rows(), protocol="paper")["method"]) == {"prompt_design"}
    only_pt = [r for r in old_rows() if r["method"] == "prompt_tuning"]
    with pytest.raises(ValueError, match=r"no result rows under the generate protocol .*have protocol\(s\): rank"):
        score_table(only_pt, protocol="generate")
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(only_pt)
    assert main(["--results", str(store.path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "no result rows under the paper protocol" in err and "Pass --protocol rank" in err
    assert main(["--results", str(store.path), "--out", str(tmp_path / "o"), "--protocol", "rank"]) == 0
    assert main(["--results", str(store.path), "--out", str(tmp_path / "o"), "--protocol", "best"]) == 1
    assert "unknown protocol 'best'; choose one of paper, generate, rank" in capsys.readouterr().err


def test_runs_without_rows_under_the_choice_are_left_out_with_a_warning():
    mixed = [r for r in both_protocols() if r["model"] == "base"] + [r for r in old_rows() if r["model"] == "small"]
    with pytest.warns(UserWarning, match=r"2 run\(s\) have no rows under the generate protocol.*prompt_tuning/small"):
        rows = protocol_rows(mixed, "generate")
    assert {r["model"] for r in rows} == {"base"}


def test_invalid_table_is_the_mean_over_scored_tasks_of_generate_rows():
    table = invalid_table(both_protocols())
    # prompt_tuning small: rte 20, cb 10 -> 15; base: rte 10, cb 5 -> 7.5 (prompt design's generate rows too)
    assert means(table) == pytest.approx(
        {
            ("prompt_tuning", "small"): 15.0,
            ("prompt_tuning", "base"): 7.5,
            ("prompt_design", "small"): 52.5,
            ("prompt_design", "base"): 26.25,
        }
    )
    assert set(table["tasks"]) == {"cb,rte"}
    assert means(invalid_table(both_protocols(), tasks=["rte"]))[("prompt_tuning", "small")] == pytest.approx(20.0)
    with pytest.raises(ValueError, match=r"no invalid-output rates: .*protocol\(s\): rank"):
        invalid_table(old_rows())


def test_table_shows_both_protocols_on_adjacent_lines_with_an_invalid_column():
    md = tasks_markdown(both_protocols(), ("generate", "rank"))
    lines = [line for line in md.splitlines() if line.startswith("| Prompt Tuning | small")]
    assert lines == [
        "| Prompt Tuning | small | 77M | 1 | generate | 50.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 | 15.0 ± 0.0 |",
        "| Prompt Tuning | small | 77M | 1 | rank | 60.0 ± 0.0 | 60.0 ± 0.0 | 60.0 ± 0.0 |  |",
    ]
    assert "| Invalid % |" in md
    assert "Invalid %" not in tasks_markdown(old_rows(), ("rank",))


def test_draw_figure_tables_show_every_protocol_the_rows_have(tmp_path):
    paths = draw_figure(both_protocols(), tmp_path, invalid=True)
    csv = pd.read_csv(paths["figure1.csv"])
    assert dict(zip(csv["method"], csv["protocol"])) == {"prompt_tuning": "generate", "prompt_design": "rank"}
    tasks = pd.read_csv(paths["tasks.csv"])
    assert set(zip(tasks["method"], tasks["protocol"])) == {(m, p) for m, p in BASE}
    assert "| Prompt Design | small | 77M | 1 | rank | 40.0 ± 0.0 |" in paths["tasks.md"].read_text()


def test_invalid_panel_and_protocol_in_legend():
    fig = plot_figure(both_protocols(), invalid=True, reference=False)
    score_ax, invalid_ax = fig.axes
    legend = score_ax.get_legend().get_title().get_text()
    assert describe_protocol("paper", ["prompt_design"]) in legend and "Prompt Design: rank classification" in legend
    assert invalid_ax.get_ylabel() == "Invalid outputs (%)"
    lines = {line.get_label(): list(line.get_ydata()) for line in invalid_ax.get_lines()}
    assert lines["Prompt Tuning"] == pytest.approx([15.0, 7.5]) and lines["Prompt Design"] == pytest.approx(
        [52.5, 26.25]
    )
    assert (
        "rank protocol: rank classification"
        in plot_figure(old_rows(), protocol="rank").axes[0].get_legend().get_title().get_text()
    )


def test_figure3_invalid_panels_next_to_each_ablation():
    rows = [
        {**r, "experiment": "ablation_objective", "setting": f"pretraining={m}"}
        for r, m in (
            (r, "span_corruption" if r["method"] == "prompt_design" else "lm_adaptation") for r in both_protocols()
        )
    ]
    rows = [{**r, "method": "prompt_tuning"} for r in rows]
    fig = plot_figure3(rows, invalid=True)
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert titles[4:6] == ["(c) Pre-training method", "(c) Pre-training method: invalid outputs"]
    invalid_ax = next(ax for ax in fig.axes if ax.get_title(loc="left") == "(c) Pre-training method: invalid outputs")
    lines = {line.get_label(): list(line.get_ydata()) for line in invalid_ax.get_lines()}
    assert lines["Span Corruption"] == pytest.approx([52.5, 26.25]) and lines["LM Adaptation (100K)"] == pytest.approx(
        [15.0, 7.5]
    )


def test_a_registered_figure_is_drawable_by_name(tmp_path, capsys, monkeypatch):
    seen = {}

    def draw_count(rows: list[dict], out_dir: Path, options: DrawOptions) -> dict[str, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        seen["options"] = options
        path = out_dir / "count.json"
        path.write_text(json.dumps({"rows": len(rows)}))
        return {"count.json": path}

    monkeypatch.setitem(FIGURES, "count", FigureSpec(draw_count, ("count.json",), "how many rows"))
    assert "count" in FIGURE_NAMES and check_figure_names(["count", "1"]) == ["count", "figure1"]
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(both_protocols())
    out = tmp_path / "o"
    args = ["--figure", "count", "--results", str(store.path), "--out", str(out), "--protocol", "rank", "--invalid"]
    assert main(args) == 0
    assert json.loads((out / "count.json").read_text()) == {"rows": len(both_protocols())}
    assert seen["options"] == DrawOptions(protocol="rank", invalid=True, results=str(store.path))
    assert str(out / "count.json") in capsys.readouterr().out
    assert main(["--list"]) == 0 and "count\thow many rows" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "figure1, figure3, gap, count" in capsys.readouterr().out
    assert main(["--figure", "figur1", "--results", str(store.path)]) == 1
    assert "unknown figure 'figur1' (did you mean 'figure1'?)" in capsys.readouterr().err


def test_figure_names_are_cheap_and_the_imports_point_down():
    code = (
        "import sys, promptscale.report as r, promptscale.report.wandb;"
        "print(sorted(r.FIGURE_NAMES), 'matplotlib' in sys.modules, 'pandas' in sys.modules,"
        "'promptscale.report.figures' in sys.modules, 'promptscale.report.scores' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['figure1', 'figure3', 'gap'] False False False False"
