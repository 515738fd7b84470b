"""bench/levers.py --quick, the CI smoke test: every lever runs and reports throughputs."""

import json
from pathlib import Path

import pytest

from tests.bench.runner import run_bench

SECTIONS = ("bucketing_window", "threads_vs_processes", "quantization", "batch_size")


@pytest.mark.slow
def test_levers_quick_writes_every_lever_with_positive_throughputs(tmp_path: Path) -> None:
    out = tmp_path / "levers"
    proc = run_bench("levers.py", "--quick", "--out", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["levers"]) == set(SECTIONS)
    assert set(report["verdict"]) == set(SECTIONS)
    for name in SECTIONS:
        section = report["levers"][name]
        rows = {r["config"]: r for r in section["configs"]}
        assert section["baseline"] in rows, name
        assert len(rows) >= 2 or name == "quantization", name
        for config, row in rows.items():
            for key in ("median_texts_per_s", "min_texts_per_s", "max_texts_per_s"):
                assert row[key] > 0, (name, config, key)
            assert row["ratio_vs_baseline"] > 0, (name, config)
    quant = report["levers"]["quantization"]
    if quant["quantize_dynamic"]["available"] and "error" not in quant["quantize_dynamic"]:
        assert "int8 (LSTM + Linear)" in {r["config"] for r in quant["configs"]}
    for row in quant["configs"]:
        assert 0.0 <= row["test_accuracy"] <= 1.0
    md = out.with_suffix(".md").read_text()
    assert "## Verdict" in md and "torch" in md
