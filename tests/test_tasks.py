"""The task registry: every registered task carries every piece, its config and its sample data.

Adding a task is one module under ``promptscale/data/tasks/``, its line in the registry, a
``conf/task/<name>.yaml`` and sample files; these tests name the task and the piece that is
missing, so a half-added task fails here rather than deep inside a run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from promptscale.data.example import Example
from promptscale.data.sources import SAMPLE_DIR, DataSource, load_records, split_relpath
from promptscale.data.tasks import SCORED_TASKS, TASKS, TaskSpec, get_task

CONF_TASK = Path(__file__).resolve().parents[1] / "conf" / "task"
CALLABLES = ("check", "format", "from_hub", "template", "postprocess", "count_units")
METRIC_PARTS = ("compute", "prepare", "labelled")
FACTS = ("folder", "splits", "label_words", "hub_config")


def problems(spec: TaskSpec, conf_dir: Path = CONF_TASK, sample_dir: Path = SAMPLE_DIR) -> list[str]:
    """What a registered task lacks, each naming the task and the piece."""
    out = [f"{spec.name}: {p} is missing or not callable" for p in CALLABLES if not callable(getattr(spec, p, None))]
    metric = getattr(spec, "metric", None)
    out += [
        f"{spec.name}: metric.{p} is missing or not callable"
        for p in METRIC_PARTS
        if not callable(getattr(metric, p, None))
    ]
    if not getattr(metric, "names", ()):
        out.append(f"{spec.name}: metric.names is empty")
    out += [f"{spec.name}: {fact} is empty" for fact in FACTS if not getattr(spec, fact, None)]
    if not isinstance(spec.version, int) or spec.version < 1:
        out.append(f"{spec.name}: version must be a positive int, got {spec.version!r}")
    if spec.in_score and not (conf_dir / f"{spec.name}.yaml").is_file():
        out.append(f"{spec.name}: scored task has no conf/task/{spec.name}.yaml")
    for split in spec.splits:
        rel = f"{spec.folder}/{spec.folder}.jsonl" if spec.splits == ("test",) else f"{spec.folder}/{split}.jsonl"
        if not (sample_dir / rel).is_file():
            out.append(f"{spec.name}: embedded sample lacks {rel}")
    return out


@pytest.mark.parametrize("name", list(TASKS))
def test_every_registered_task_is_complete(name):
    spec = TASKS[name]
    assert spec.name == name
    assert problems(spec) == []


def test_the_completeness_check_names_task_and_piece(tmp_path):
    spec = dataclasses.replace(get_task("cb"), format=None, template="not a function", hub_config="")
    found = problems(spec, conf_dir=tmp_path, sample_dir=tmp_path)
    assert "cb: format is missing or not callable" in found
    assert "cb: template is missing or not callable" in found
    assert "cb: hub_config is empty" in found
    assert "cb: scored task has no conf/task/cb.yaml" in found
    assert "cb: embedded sample lacks CB/val.jsonl" in found
    axb = problems(get_task("axb"), conf_dir=tmp_path)  # diagnostics are not trained: no config needed
    assert axb == []


def test_registry_order_and_scored_tasks():
    assert list(TASKS) == ["boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc", "axb", "axg"]
    assert SCORED_TASKS == ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
    assert {n for n, s in TASKS.items() if s.open_ended} == {"record", "wsc"}
    with pytest.raises(KeyError, match="valid tasks: boolq, cb"):
        get_task("squad")


def test_task_specs_are_keyword_only_and_frozen():
    spec = get_task("rte")
    with pytest.raises(TypeError):
        TaskSpec("rte", "RTE")  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.version = 99  # type: ignore[misc]


@pytest.mark.parametrize("name", list(TASKS))
def test_every_piece_runs_on_the_sample(name):
    spec = TASKS[name]
    split = "val" if "val" in spec.splits else "test"
    assert split_relpath(name, split).startswith(f"{spec.folder}/")
    records = load_records(name, split, DataSource())
    examples = [ex for r in records for ex in spec.format(r, prefix=True, train=False)]
    templated = [ex for r in records for ex in spec.template(r)]
    assert spec.count_units(records) == len(examples) == len(templated)
    assert all(isinstance(ex, Example) and ex.task == name for ex in examples + templated)
    prediction, valid = spec.postprocess(examples[0].targets, examples[0])
    assert valid, (name, examples[0].targets)  # the gold target is always a valid answer
    decided = [spec.postprocess(ex.targets, ex)[0] for ex in examples]
    values = spec.metric.compute(*spec.metric.prepare(examples, decided))
    assert tuple(values) == spec.metrics
    if name == "wsc":  # the referent is named every time: right exactly on the true pairs
        truth = [ex.label for ex in examples]
        assert values == {"accuracy": 100.0 * sum(truth) / len(truth)}
    else:
        assert all(v == pytest.approx(100.0) for v in values.values()), values  # gold targets score perfectly
