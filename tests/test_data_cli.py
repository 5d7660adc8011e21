"""`promptscale-data`: validate and show, run in-process (plus one real subprocess)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from promptscale.data.cli import main
from promptscale.data.sources import SAMPLE_DIR, validate_dir
from promptscale.data.tasks import TASKS


def test_validate_sample_prints_one_json_object(capsys):
    assert main(["validate", str(SAMPLE_DIR)]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    assert report == validate_dir(SAMPLE_DIR)
    assert list(report) == list(TASKS)
    assert report["multirc"] == {"train": 26, "val": 25, "test": 10}


def test_validate_partial_dir(tmp_path, capsys):
    for rel in ("RTE/val.jsonl", "AX-b/AX-b.jsonl"):
        (tmp_path / rel).parent.mkdir(parents=True)
        shutil.copy(SAMPLE_DIR / rel, tmp_path / rel)
    assert main(["validate", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"rte": {"val": 16}, "axb": {"test": 8}}


def test_validate_warns_about_a_task_folder_without_train(tmp_path, capsys):
    (tmp_path / "ReCoRD").mkdir()
    shutil.copy(SAMPLE_DIR / "ReCoRD" / "val.jsonl", tmp_path / "ReCoRD" / "val.jsonl")
    assert main(["validate", str(tmp_path)]) == 0  # zero-shot prompt design needs no train split
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"record": {"val": 12}}
    warnings = captured.err.splitlines()
    assert len(warnings) == 1
    assert warnings[0].startswith("promptscale-data: warning: ReCoRD/train.jsonl not found")
    assert main(["validate", str(SAMPLE_DIR)]) == 0
    assert capsys.readouterr().err == ""  # the complete sample has nothing to warn about


def test_validate_empty_split_exits_1_naming_the_file(tmp_path, capsys):
    (tmp_path / "CB").mkdir()
    shutil.copy(SAMPLE_DIR / "CB" / "train.jsonl", tmp_path / "CB" / "train.jsonl")
    (tmp_path / "CB" / "val.jsonl").write_text("\n")
    assert main(["validate", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "promptscale-data: error: CB/val.jsonl: no records" in captured.err


def test_validate_non_utf8_exits_1_naming_file_and_line(tmp_path, capsys):
    (tmp_path / "BoolQ").mkdir()
    data = (SAMPLE_DIR / "BoolQ" / "test.jsonl").read_bytes().splitlines(keepends=True)
    data[1] = data[1].replace(b'"', b'"\xff', 1)
    (tmp_path / "BoolQ" / "test.jsonl").write_bytes(b"".join(data))
    assert main(["validate", str(tmp_path)]) == 1
    assert "BoolQ/test.jsonl line 2: field '<utf-8>': not UTF-8: byte 0xff" in capsys.readouterr().err


def test_validate_malformed_exits_1_naming_file_line_field(tmp_path, capsys):
    path = tmp_path / "CB" / "val.jsonl"
    path.parent.mkdir()
    lines = (SAMPLE_DIR / "CB" / "val.jsonl").read_text().splitlines()
    lines[2] = json.dumps(json.loads(lines[2]) | {"label": "yes"})
    path.write_text("\n".join(lines) + "\n")
    assert main(["validate", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        "CB/val.jsonl line 3: field 'label': expected one of ['contradiction', 'entailment', 'neutral'], got 'yes'"
    ) in captured.err


def test_validate_bad_json_exits_1(tmp_path, capsys):
    path = tmp_path / "WiC" / "train.jsonl"
    path.parent.mkdir()
    path.write_text((SAMPLE_DIR / "WiC" / "train.jsonl").read_text() + "{oops\n")
    assert main(["validate", str(tmp_path)]) == 1
    assert "WiC/train.jsonl line 17: field '<json>'" in capsys.readouterr().err


def test_validate_missing_dir_exits_2(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err


def test_validate_dir_without_superglue_files_exits_1(tmp_path, capsys):
    assert main(["validate", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {}
    assert "no SuperGLUE files found" in captured.err


def test_console_module_runs_as_a_process():
    result = subprocess.run(
        [sys.executable, "-m", "promptscale.data.cli", "validate", str(SAMPLE_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["axg"] == {"test": 8}


def test_show_unknown_task_lists_valid_tasks(capsys):
    assert main(["show", "superglue"]) == 2
    assert "valid tasks: " + ", ".join(TASKS) in capsys.readouterr().err


def test_show_missing_data_dir_exits_2(tmp_path, capsys):
    assert main(["show", "cb", "--data-dir", str(tmp_path / "absent")]) == 2
    assert "data.dir=" in capsys.readouterr().err


def test_show_missing_split_file_exits_2(tmp_path, capsys):
    assert main(["show", "cb", "--data-dir", str(tmp_path)]) == 2
    assert "CB/val.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize("task", list(TASKS))
def test_show_prints_formatted_pairs(task, capsys):
    pytest.importorskip("promptscale.data.formats")
    assert main(["show", task, "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert f"--- {task}/" in out and "inputs:  " in out and "targets: " in out
    assert (
        main(
            [
                "show",
                task,
                "-n",
                "1",
                "--split",
                "train" if task not in ("axb", "axg") else "test",
                "--no-prefix",
                "--train",
            ]
        )
        == 0
    )
    assert "inputs:  " in capsys.readouterr().out


def test_show_prefix_flag_changes_inputs(capsys):
    pytest.importorskip("promptscale.data.formats")
    main(["show", "rte", "-n", "1"])
    with_prefix = capsys.readouterr().out
    main(["show", "rte", "-n", "1", "--no-prefix"])
    without_prefix = capsys.readouterr().out
    assert with_prefix != without_prefix
    assert "inputs:  rte " in with_prefix and "inputs:  rte " not in without_prefix
