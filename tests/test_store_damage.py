"""A damaged results store never blocks a reader or a later run: every bad line or file is moved
aside to ``quarantine/`` with a warning naming the file and line (issue 11, case 1)."""

from __future__ import annotations

import json
import subprocess
import warnings

import pytest
from test_results import make_row

from promptscale.store.results import ResultsStore


def old_layout_store(path, runs: int) -> None:
    """A store as the previous (single-file, flock) code wrote it."""
    path.write_text(
        "".join(json.dumps(make_row(run_id=f"r{i}", config_hash=f"h{i}"), sort_keys=True) + "\n" for i in range(runs))
    )


def quarantined(store: ResultsStore) -> list[str]:
    folder = store.dir / "quarantine"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_garbage_last_line_ending_in_newline_is_quarantined_not_buried(tmp_path):
    """The issue's recipe: before, the next append buried the garbage as line 8 and every later
    read failed with ``line 8: malformed result row``."""
    old_layout_store(tmp_path / "results.jsonl", 9)
    subprocess.run(
        "head -7 results.jsonl > s; echo 'GARBAGE {not json' >> s; mv s results.jsonl",
        shell=True,
        cwd=tmp_path,
        check=True,
    )
    store = ResultsStore(tmp_path / "results.jsonl")
    with pytest.warns(UserWarning, match=r"results\.jsonl, line 8: skipped a malformed result row"):
        assert store.append([make_row(run_id="new", config_hash="new")], once=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # healed: later readers and runs see no trouble at all
        assert [r["run_id"] for r in ResultsStore(store.path).rows()] == [*(f"r{i}" for i in range(7)), "new"]
        assert ResultsStore(store.path).append([make_row(run_id="next", config_hash="next")], once=True)
        export = [json.loads(line) for line in store.path.read_text().splitlines()]  # plain JSON lines again
    assert [r["run_id"] for r in export] == [*(f"r{i}" for i in range(7)), "new", "next"]
    (saved,) = quarantined(store)
    assert saved.startswith("results.jsonl.line8.corrupt-")
    assert (store.dir / "quarantine" / saved).read_text() == "GARBAGE {not json\n"


def test_old_store_with_garbage_in_the_middle_reads_with_a_warning(tmp_path):
    path = tmp_path / "results.jsonl"
    old_layout_store(path, 3)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b'{"run_id": "torn", "val\n' + b"".join(lines[1:]))
    before = path.read_bytes()
    with pytest.warns(UserWarning, match=r"results\.jsonl, line 2"):
        assert [r["run_id"] for r in ResultsStore(path).rows()] == ["r0", "r1", "r2"]
    assert path.read_bytes() == before  # a reader does not rewrite the store


def test_garbage_last_line_of_the_export_is_rewritten_on_next_append(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    for i in range(3):
        store.append([make_row(run_id=f"r{i}", config_hash=f"h{i}")], once=True)
    with open(store.path, "a") as f:
        f.write("GARBAGE {not json\n")
    assert len(store.rows()) == 3  # the store proper is untouched by damage to its export
    with pytest.warns(UserWarning, match=r"results\.jsonl: torn or malformed last line"):
        store.append([make_row(run_id="r3", config_hash="h3")], once=True)
    assert [json.loads(line)["run_id"] for line in store.path.read_text().splitlines()] == ["r0", "r1", "r2", "r3"]


def _row_line(**over) -> bytes:
    return json.dumps(make_row(**over), sort_keys=True).encode() + b"\n"


MISSING_FIELD = json.dumps({k: v for k, v in make_row(config_hash="h").items() if k != "seed"}).encode() + b"\n"
DAMAGE = {  # a per-run file's bytes, the line named in the warning
    "torn write": (_row_line(config_hash="h", metric="a") + _row_line(config_hash="h", metric="b")[:50], 2),
    "non-JSON line": (_row_line(config_hash="h") + b"GARBAGE {not json\n", 2),
    "missing field": (MISSING_FIELD, 1),
    "non-UTF-8 bytes": (_row_line(config_hash="h").replace(b"prompt_tuning", b"prompt\xff\xfetuning"), 1),
    "not an object": (b"[1, 2]\n", 1),
    "empty file": (b"", 1),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_run_file_is_moved_aside_and_the_config_runs_again(tmp_path, damage):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append([make_row(run_id="fine", config_hash="other")], once=True)
    data, line = DAMAGE[damage]
    (store.dir / "h.ok.jsonl").write_bytes(data)
    with pytest.warns(UserWarning, match=rf"h\.ok\.jsonl, line {line}: damaged result file"):
        assert not store.has_config("h")  # an incomplete run is not a finished one
    assert [r["run_id"] for r in store.rows()] == ["fine"]
    (moved,) = quarantined(store)
    assert moved.startswith("h.ok.jsonl.corrupt-") and (store.dir / "quarantine" / moved).read_bytes() == data
    assert store.append([make_row(run_id="again", config_hash="h")], once=True)  # its slot is free again
    assert [r["run_id"] for r in ResultsStore(store.path).rows()] == ["fine", "again"]


def test_damaged_line_in_the_imported_legacy_rows_is_skipped_not_moved(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append([make_row(run_id="a", config_hash="a")])
    legacy = store.dir / "_legacy.jsonl"
    legacy.write_bytes(_row_line(run_id="old", config_hash="old") + b"\xff\xfe garbage\n")
    with pytest.warns(UserWarning, match=r"_legacy\.jsonl, line 2"):
        assert [r["run_id"] for r in store.rows()] == ["old", "a"]
    assert legacy.exists()  # moving it would re-import the export as legacy rows


def test_leftover_temporary_files_of_killed_writers_are_ignored(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append([make_row(run_id="a", config_hash="a")], once=True)
    (store.dir / ".tmp-node7-1234-abc").write_bytes(_row_line(config_hash="b")[:30])  # SIGKILL mid-write
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["run_id"] for r in store.rows()] == ["a"] and not store.has_config("b")
