"""bench/purge.py on a few thousand rows: the script runs, every run deletes every old row and
the writer's job keeps all of its own (the full run is 200,000 rows, bench/results/purge.md)."""

import json
from pathlib import Path

from tests.bench.runner import run_bench


def test_purge_quick(tmp_path: Path, pg_admin_url: str) -> None:
    out = tmp_path / "purge"
    proc = run_bench(
        "purge.py", "--rows", "6000", "--batch-rows", "1000", "--pg-admin-url", pg_admin_url,
        "--out", str(out), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    batched, single = runs
    assert batched["rows"] == single["rows"] == 6000
    # The 3,000-row job in 3 ranges and then its row; 60 jobs of 50 rows, 20 per transaction.
    assert batched["transactions"] == 3 + 1 + 3 and single["transactions"] == 1
    assert batched["txn_max_ms"] > 0 and batched["writer_p50_ms_before"] > 0
    assert "| rows per txn |" in out.with_suffix(".md").read_text()
