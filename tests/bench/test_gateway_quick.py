"""bench/gateway.py for a second per run: the script runs and the gateway answers every
request with 202 (the full run is bench/results/gateway.md)."""

import json
from pathlib import Path

from tests.bench.runner import run_bench


def test_gateway_quick(tmp_path: Path, pg_admin_url: str) -> None:
    out = tmp_path / "gateway"
    row = {"jobs_per_s": 12.5, "p50_ms": 3.25, "p99_ms": 9.75, "server_cpu_ms_per_request": 4.5}
    before = tmp_path / "earlier.json"
    before.write_text(json.dumps({"runs": {"gateway": row, "gateway batch": row}}))
    proc = run_bench(
        "gateway.py", "--seconds", "1", "--clients", "2", "--workers", "1", "--batch-size", "10",
        "--pg-admin-url", pg_admin_url, "--out", str(out),
        "--before", str(before), "--before-note", "the old code", timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    assert runs["gateway"]["requests"] > 0 and runs["gateway"]["errors"] == 0
    batch = runs["gateway batch"]
    assert batch["requests"] > 0 and batch["errors"] == 0
    assert runs["Producer (linger 5 ms)"]["jobs"] > 0
    assert "| HTTP gateway `POST /v1/jobs` |" in out.with_suffix(".md").read_text()
    md = out.with_suffix(".md").read_text()
    assert "Before (the old code) and after" in md
    (line,) = [x for x in md.splitlines() if x.startswith("| `POST /v1/jobs` |")]
    assert line.startswith("| `POST /v1/jobs` | 12.5 → ") and "| 4.5 → " in line
    recorded = json.loads(out.with_suffix(".json").read_text())
    assert recorded["config"]["before"] == "earlier.json"  # no machine directory recorded
    assert recorded["before"]["gateway"] == row
