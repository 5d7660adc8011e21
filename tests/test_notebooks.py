"""The analysis notebooks: committed without outputs, and run end to end on a tiny demo sweep."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient
from test_ensemble import train_prompt_runs

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"


@pytest.fixture(scope="module")
def demo_outputs(tmp_path_factory):
    """A tiny demo sweep: prompt tuning x 2 seeds, model tuning, and one Figure 3 ablation job."""
    root = tmp_path_factory.mktemp("outputs")
    base = ["task=cb", "method.prompt_length=4"]
    train_prompt_runs(root, [[*base, "seed=0"], [*base, "seed=1"], ["task=cb", "method=model_tuning"]], "demo")
    train_prompt_runs(
        root, [[*base, "method.init=random_uniform", "figure.group_by=[method.init]"]], "ablation_prompt_init"
    )
    return root


def test_notebooks_run_clean(demo_outputs, monkeypatch):
    monkeypatch.setenv("PROMPTSCALE_OUTPUTS", str(demo_outputs))
    monkeypatch.setenv("PROMPTSCALE_RESULTS", str(demo_outputs / "results.jsonl"))
    monkeypatch.setenv("PROMPTSCALE_EXPERIMENT", "demo")
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(demo_outputs)}}
        ).execute()
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{path.name}: {errors}"
        printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        assert "no gap figure" not in printed, f"{path.name}: {printed}"
    figures = demo_outputs / "figures" / "notebooks"
    for name in (
        "demo/figure1.png",
        "demo/tasks.md",
        "figure3/figure3.png",
        "demo/neighbours.md",
        "demo/nearest_similarity.png",
        "demo/ensemble.md",
        "demo/gap.png",
        "demo/gap.md",
        "demo/gap/gap.png",
        "demo/flips.csv",
    ):
        assert (figures / name).stat().st_size > 0, name
    assert "| demo | tiny_s |  | cb | 2 | 0,1 |" in (figures / "demo" / "ensemble.md").read_text()
    gap = (figures / "demo" / "gap.md").read_text()  # one size, prompt tuning (2 seeds) vs model tuning (1)
    assert "Gap closed at: " in gap and "| tiny_s (181K) | 1 / 2 |" in gap
