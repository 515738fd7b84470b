"""The stage split bench/pipeline.py computes from the workers' batch records."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tests.bench.runner import ROOT
from textlstm.serving.stages import BatchStats, StatsWriter, read_stats


def _pipeline():  # noqa: ANN202 - the bench script, loaded by path like `python bench/…`
    spec = importlib.util.spec_from_file_location("bench_pipeline", ROOT / "bench" / "pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_pipeline", module)
    spec.loader.exec_module(module)
    return module


def batch(n: int, fwd: float, db: float, tok: float, dec: float, fetch: float) -> BatchStats:
    """A worker's record of one micro-batch (what TEXTLSTM_WORKER_STATS_DIR collects)."""
    return BatchStats(items=n, messages=1, tokens=900, model_ref="news", model="news@1", ok=n,
                      errors=0, inserted=n, forward_ms=fwd, db_ms=db, tokenize_ms=tok,
                      decode_ms=dec, fetch_ms=fetch)  # fmt: skip


def test_fetch_is_its_own_stage_and_the_rest_is_what_no_stage_timed() -> None:
    records = [
        batch(100, fwd=500.0, db=200.0, tok=100.0, dec=50.0, fetch=30.0),
        batch(300, fwd=300.0, db=100.0, tok=50.0, dec=25.0, fetch=20.0),
    ]
    split = _pipeline().stage_split(records, worker_s=2.0)
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


def test_a_record_without_fetch_time_counts_no_fetch() -> None:
    records = [batch(10, fwd=100.0, db=50.0, tok=10.0, dec=5.0, fetch=0.0)]
    stages = _pipeline().stage_split(records, worker_s=1.0)["stages_pct"]
    assert stages["fetch"] == 0.0 and stages["write"] == 5.0


def test_no_records_is_one_text_per_task_and_no_split() -> None:
    # The tutorial worker (one plain Celery task per text) writes no batch records.
    assert _pipeline().stage_split([], worker_s=1.0) == {"mean_batch": 1.0, "stages_pct": None}


def test_the_split_reads_what_a_worker_wrote(tmp_path: Path) -> None:
    writer = StatsWriter(tmp_path)
    for r in (
        batch(100, 500.0, 200.0, 100.0, 50.0, 30.0),
        batch(300, 300.0, 100.0, 50.0, 25.0, 20.0),
    ):
        writer.write(r)
    writer.close()
    split = _pipeline().stage_split(list(read_stats(tmp_path)), worker_s=2.0)
    assert split["batches"] == 2 and split["stages_pct"]["forward"] == 32.5
