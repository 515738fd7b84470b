"""bench/pipeline_gpu.py's CPU fallback: `--device cuda --quick` on a machine without CUDA falls
back to the CPU and still writes the sweep, parity and pipeline; `--require-gpu` refuses."""

import json
import os
from pathlib import Path

import pytest

from tests.bench.runner import run_bench

FALLBACK_LINE = "CUDA is not available"


def env() -> dict[str, str]:
    # db 12 of the shared Redis; gpu_check.py starts its own redis-server if this does not answer.
    # No GPU visible, so the fallback is what runs on a machine with CUDA too.
    return {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "TEXTLSTM_BROKER_URL": os.environ.get(
            "TEXTLSTM_PIPELINE_GPU_TEST_BROKER", "redis://127.0.0.1:6379/12"
        ),
    }


@pytest.mark.slow
@pytest.mark.timeout(330)
def test_quick_falls_back_to_cpu_and_writes_sweep_parity_and_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    proc = run_bench(
        "pipeline_gpu.py", "--device", "cuda", "--quick", "--threads", "1", "--out", str(out),
        timeout=300, env=env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    fallback = [line for line in proc.stdout.splitlines() if FALLBACK_LINE in line]
    assert len(fallback) == 1, proc.stdout
    assert "falling back to --device cpu" in fallback[0]

    report = json.loads(out.with_suffix(".json").read_text())
    assert report["fell_back_to_cpu"] is True
    assert report["device_requested"] == "cuda"
    assert report["device_info"]["device"] == "cpu"
    assert report["config"]["precisions"] == ["fp32", "bf16"]  # no fp16 on CPU

    fp32 = report["sweep"]["fp32"]
    assert fp32["available"] and fp32["lstm_dtype"] == "float32"
    assert [r["batch_size"] for r in fp32["rows"]] == report["config"]["batch_sizes"]
    for row in fp32["rows"]:
        for kind in ("predict", "forward"):
            for key in ("median_texts_per_s", "min_texts_per_s", "max_texts_per_s"):
                assert row[kind][key] > 0, (row["batch_size"], kind, key)
        assert row["peak_mb"] is None  # CPU: no CUDA memory stats
    bf16 = report["sweep"]["bf16"]
    assert bf16["available"] or bf16["error"]
    assert report["best"]["predict_fp32"]["texts_per_s"] > 0

    parity = report["parity"]
    assert parity["texts"] > 0
    if "error" not in parity["vs_fp32"]["bf16"]:
        assert 0 <= parity["vs_fp32"]["bf16"]["max_abs_prob_diff"] < 0.5
        assert 0 <= parity["vs_fp32"]["bf16"]["label_agreement_pct"] <= 100

    (pipeline,) = report["pipeline"]
    assert pipeline["texts_per_s"] > 0, pipeline
    assert pipeline["mean_batch"] > 0
    assert pipeline["device_used"] == ["cpu"]
    assert pipeline["ratio_vs_best_fp32_predict"] > 0

    md = out.with_suffix(".md").read_text()
    assert "CPU fallback" in md and "## Pipeline" in md and "### fp32" in md
    assert "the pipeline runs fp32" in md


def test_require_gpu_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    proc = run_bench(
        "pipeline_gpu.py", "--device", "cuda", "--require-gpu", "--quick", "--out", str(out),
        timeout=60, env=env(),
    )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert FALLBACK_LINE in lines[0] and "--require-gpu" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.with_suffix(".json").exists()
