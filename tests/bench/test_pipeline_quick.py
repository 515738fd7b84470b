"""bench/pipeline.py --quick: every mode on a few hundred texts, so the benchmark never rots.

It starts its own redis-server, a throwaway PostgreSQL database, two real worker processes and
the tutorial Celery worker. The numbers of a smoke run mean nothing; what is checked is that
every mode ran to its last row and the report holds what the full run reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.runner import run_bench

MODES = ["ceiling 1x1", "ceiling 1x2", "ceiling 2x1", "ceiling 2x1 int8", "bulk", "producer",
         "producer_gc", "raw", "light", "bulk int8", "producer int8", "raw int8",
         "naive"]  # fmt: skip


@pytest.mark.slow
def test_every_mode_runs_and_reports(tmp_path: Path, pg_admin_url: str) -> None:
    out = tmp_path / "pipeline"
    proc = run_bench(
        "pipeline.py", "--quick", "--out", str(out), "--pg-admin-url", pg_admin_url, timeout=280
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    summary = report["summary"]
    assert list(summary) == MODES
    for mode in MODES:
        assert summary[mode]["texts_per_s"] > 0, mode
    for mode in ("bulk", "producer", "producer_gc", "raw", "light", "naive"):
        run = report["runs"][mode][0]
        assert run["n"] == (150 if mode == "naive" else 60 if mode == "light" else 300)
        assert 0 < run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"], mode
        assert run["worker_rss_mb"] > 50, mode
        # The machine's CPU split: the workers worked. (A run of 0.2 s can show PostgreSQL at
        # 0: /proc counts in 10 ms ticks.)
        cores = run["cores_used"]
        assert cores["machine"] > 0 and cores["workers"] > 0, mode
        assert cores["postgres"] >= 0 and cores["bench+producers+other"] >= 0, mode
    for mode in ("bulk", "producer", "raw"):
        stages = summary[mode]["stages_pct"]
        assert set(stages) == {
            "fetch",
            "decode",
            "tokenize",
            "forward",
            "write",
            "celery+ack+idle (rest)",
        }
        assert stages["forward"] > 0 and stages["write"] > 0, mode
        assert summary[mode]["mean_batch"] > 1, mode  # several texts per forward pass
    assert summary["naive"]["mean_batch"] == 1.0
    for mode in ("producer", "producer_gc"):  # the producers coalesced jobs into envelopes
        assert 1 < summary[mode]["jobs_per_envelope"] <= 256, mode
        assert summary[mode]["producer_cpu_us_per_job"] > 0, mode  # the producers' own clock
    ratios = report["ratios"]
    assert {"bulk_vs_ceiling", "producer_vs_ceiling", "producer_gc_vs_ceiling", "raw_vs_naive",
            "light_p99"} <= set(ratios)  # fmt: skip
    for mode in ("bulk", "producer", "raw"):  # the int8 pass ran on quantized workers
        assert ratios[f"{mode}_int8"]["vs_fp32"] > 0
        assert report["runs"][f"{mode} int8"][0]["n"] == 300
    md = out.with_suffix(".md").read_text()
    assert "## Targets" in md and "| naive |" in md and "Where the workers' time goes" in md
    assert "Where the machine's CPU goes" in md and "## int8 weights" in md
    assert "µs of producer CPU per job" in md
