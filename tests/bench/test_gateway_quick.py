"""bench/gateway.py for a second per run: the script runs and the gateway answers every
request with 202 (the full run is bench/results/gateway.md)."""

import json
from pathlib import Path

from tests.bench.runner import run_bench


def test_gateway_quick(tmp_path: Path, pg_admin_url: str) -> None:
    out = tmp_path / "gateway"
    proc = run_bench(
        "gateway.py", "--seconds", "1", "--clients", "2", "--workers", "1", "--batch-size", "10",
        "--pg-admin-url", pg_admin_url, "--out", str(out), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    assert runs["gateway"]["requests"] > 0 and runs["gateway"]["errors"] == 0
    batch = runs["gateway batch"]
    assert batch["requests"] > 0 and batch["errors"] == 0
    assert runs["Producer (linger 5 ms)"]["jobs"] > 0
    assert "| HTTP gateway `POST /v1/jobs` |" in out.with_suffix(".md").read_text()
