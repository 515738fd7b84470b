"""Per-batch stats records (textlstm/serving/stages.py): the one schema the worker writes and
the benchmarks and tests read, instead of parsing the worker's human log line."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from textlstm.serving.stages import (
    SCHEMA_VERSION,
    BatchStats,
    StatsTail,
    StatsWriter,
    mean_batch,
    read_stats,
    stats_path,
)

counts = st.integers(min_value=0, max_value=2**31 - 1)
millis = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
records = st.builds(
    BatchStats,
    items=counts,
    messages=counts,
    model_ref=st.text(max_size=80),
    model=st.none() | st.text(max_size=80),
    ok=counts,
    errors=counts,
    forward_ms=millis,
    db_ms=millis,
    tokens=counts,
    inserted=counts,
    duplicates=counts,
    expired=counts,
    tokenize_ms=millis,
    decode_ms=millis,
    fetch_ms=millis,
    db_attempts=counts,
    host=st.text(max_size=64),
    pid=counts,
    time=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    source=st.text(max_size=20),
)


def record(items: int = 10, **kw: object) -> BatchStats:
    base = BatchStats(items=items, messages=1, model_ref="news", model="news@1", ok=items,
                      errors=0, forward_ms=12.5, db_ms=3.0, inserted=items)  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


@given(records)
def test_a_record_round_trips_through_one_json_line(r: BatchStats) -> None:
    line = r.to_json()
    assert "\n" not in line  # one record, one line, whatever its strings hold
    assert BatchStats.from_json(line) == r
    assert json.loads(line)["v"] == SCHEMA_VERSION


def test_fields_a_newer_writer_added_are_ignored_and_an_unknown_version_is_refused() -> None:
    data = json.loads(record().to_json())
    assert BatchStats.from_json(json.dumps({**data, "gpu_ms": 1.0})) == record()
    with pytest.raises(ValueError, match="schema version 2"):
        BatchStats.from_json(json.dumps({**data, "v": 2}))
    with pytest.raises(ValueError, match="not a stats record"):
        BatchStats.from_json(json.dumps({"v": SCHEMA_VERSION, "items": 1}))
    with pytest.raises(ValueError, match="not a stats record"):
        BatchStats.from_json("[1, 2]")


def test_the_reader_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "host-1.jsonl"
    whole = [record(1), record(2)]
    torn = record(3).to_json()[:25]  # a writer killed mid-line (or still writing)
    path.write_text("".join(r.to_json() + "\n" for r in whole) + torn)
    assert list(read_stats(path)) == whole
    assert list(read_stats(tmp_path)) == whole  # a folder: every .jsonl file in it


def test_a_torn_line_in_the_middle_is_an_error_not_skipped(tmp_path: Path) -> None:
    (tmp_path / "host-1.jsonl").write_text('{"v": 1, "ite\n' + record().to_json() + "\n")
    with pytest.raises(ValueError, match=r"host-1\.jsonl: line 1"):
        list(read_stats(tmp_path))


def test_a_missing_folder_reads_as_no_records(tmp_path: Path) -> None:
    assert list(read_stats(tmp_path / "none")) == [] and mean_batch([]) is None


def test_the_writer_appends_whole_lines_to_one_file_per_process(tmp_path: Path) -> None:
    w = StatsWriter(tmp_path / "stats")
    w.write(record(4))
    w.write(record(6))
    w.close()
    path = stats_path(tmp_path / "stats")
    assert path.name.endswith(f"-{os.getpid()}.jsonl")
    assert [p.name for p in (tmp_path / "stats").iterdir()] == [path.name]
    assert list(read_stats(tmp_path / "stats")) == [record(4), record(6)]
    assert mean_batch(read_stats(path)) == 5


def test_a_writer_that_cannot_write_logs_and_lets_the_work_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the folder should be: mkdir fails
    w = StatsWriter(blocked / "stats")
    w.write(record())
    w.write(record())
    assert [r.levelname for r in caplog.records] == ["ERROR"]  # logged once, never raised


def test_a_tail_returns_only_what_was_appended_since_and_waits_for_a_torn_line(
    tmp_path: Path,
) -> None:
    old = tmp_path / "host-1.jsonl"
    old.write_text(record(1).to_json() + "\n")
    tail = StatsTail(tmp_path)
    assert tail.new() == []
    line = record(2).to_json() + "\n"
    with old.open("a") as fh:
        fh.write(line[:10])
    (tmp_path / "host-2.jsonl").write_text(record(3).to_json() + "\n")  # a restarted process
    assert tail.new() == [record(3)]
    with old.open("a") as fh:
        fh.write(line[10:])
    assert tail.new() == [record(2)]
    assert tail.new() == []


def test_the_setting_is_off_by_default_and_when_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    from textlstm.settings import Settings

    monkeypatch.delenv("TEXTLSTM_WORKER_STATS_DIR", raising=False)
    assert Settings(_env_file=None).worker_stats_dir is None  # type: ignore[call-arg]
    monkeypatch.setenv("TEXTLSTM_WORKER_STATS_DIR", "")  # not the working directory
    assert Settings(_env_file=None).worker_stats_dir is None  # type: ignore[call-arg]
    monkeypatch.setenv("TEXTLSTM_WORKER_STATS_DIR", "~/stats")
    assert Settings(_env_file=None).worker_stats_dir == Path("~/stats").expanduser()  # type: ignore[call-arg]
