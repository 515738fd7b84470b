"""bench/export.py on a few thousand rows: the script runs, and every export writes what it
selected (the full run is 1,000,000 rows, bench/results/export.md)."""

import json
from pathlib import Path

from tests.bench.runner import run_bench


def test_export_quick(tmp_path: Path, pg_admin_url: str) -> None:
    out = tmp_path / "export"
    proc = run_bench(
        "export.py", "--rows", "3000", "--pg-admin-url", pg_admin_url, "--out", str(out),
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    assert runs["one job (small), jsonl"]["rows"] == 300
    for fmt in ("csv", "jsonl", "parquet"):
        assert runs[f"--model, {fmt}"]["rows"] == 3000
        assert runs[f"--model, {fmt}"]["peak_rss_mb"] > 0
    assert 0 < runs["--max-score 0.6, jsonl"]["rows"] < 3000  # scores are uniform in 0.5-1.0
    assert "| export | rows |" in out.with_suffix(".md").read_text()
