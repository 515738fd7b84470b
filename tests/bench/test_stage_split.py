"""The stage split bench/pipeline.py reads from the workers' batch log lines."""

from __future__ import annotations

import importlib.util
import sys

from tests.bench.runner import ROOT


def _pipeline():  # noqa: ANN202 - the bench script, loaded by path like `python bench/…`
    spec = importlib.util.spec_from_file_location("bench_pipeline", ROOT / "bench" / "pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_pipeline", module)
    spec.loader.exec_module(module)
    return module


LINE = (
    "[2026-12-02 20:00:00,000: INFO/MainProcess] batch size={n} messages=1 tokens=900 "
    "model=news@1 ok={n} errors=0 inserted={n} duplicates=0 forward_ms={fwd} db_ms={db} "
    "db_attempts=1 mean_size=2.00 tokenize_ms={tok} decode_ms={dec}{fetch}\n"
)


def test_fetch_is_its_own_stage_and_the_rest_is_what_no_stage_timed() -> None:
    logs = LINE.format(n=100, fwd=500.0, db=200.0, tok=100.0, dec=50.0, fetch=" fetch_ms=30.0")
    logs += LINE.format(n=300, fwd=300.0, db=100.0, tok=50.0, dec=25.0, fetch=" fetch_ms=20.0")
    split = _pipeline().stage_split(logs, worker_s=2.0)
    assert split["mean_batch"] == 200.0 and split["batches"] == 2
    # 2,000 ms of worker time: forward excludes tokenizing, which forward_ms includes.
    assert split["stages_pct"] == {
        "fetch": 2.5,
        "decode": 3.8,
        "tokenize": 7.5,
        "forward": 32.5,
        "write": 15.0,
        "celery+ack+idle (rest)": 38.8,
    }


def test_a_batch_line_without_fetch_ms_counts_no_fetch() -> None:
    logs = LINE.format(n=10, fwd=100.0, db=50.0, tok=10.0, dec=5.0, fetch="")
    stages = _pipeline().stage_split(logs, worker_s=1.0)["stages_pct"]
    assert stages["fetch"] == 0.0 and stages["write"] == 5.0
