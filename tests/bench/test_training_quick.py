"""bench/training.py: --quick times a tiny training (CI smoke test); render mode reads the
recorded accuracy run."""

import json
from pathlib import Path

import pytest

from tests.bench.runner import run_bench


@pytest.mark.slow
def test_training_quick_times_one_epoch(tmp_path: Path) -> None:
    out = tmp_path / "training"
    proc = run_bench("training.py", "--quick", "--out", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["meta"]["source"] == "measured"
    (row,) = report["rows"]
    assert row["epochs_run"] == 1
    assert row["train_rows"] > 0
    assert row["train_seconds"] > 0
    assert row["train_examples_per_s"] > 0
    assert "| dataset |" in out.with_suffix(".md").read_text()


def test_training_render_reads_the_accuracy_run(tmp_path: Path) -> None:
    accuracy = {
        "meta": {
            "date": "2026-01-01",
            "machine": "x86_64 CPU, 2 cores",
            "torch": "2.13.0+cpu",
            "threads": 1,
            "overrides": {},
            "command": "python bench/accuracy.py",
        },
        "rows": [
            {
                "dataset": "toy",
                "train_rows": 900,
                "validation": "stratified 10% of train.csv (100 rows)",
                "test_rows": 50,
                "lstm": {
                    "accuracy": 0.5,
                    "train_seconds": 12.0,
                    "epochs_run": 4,
                    "best_epoch": 2,
                    "train_examples_per_s": 300.0,
                },
            }
        ],
    }
    src = tmp_path / "accuracy.json"
    src.write_text(json.dumps(accuracy))
    out = tmp_path / "training"
    proc = run_bench("training.py", "--accuracy-json", str(src), "--out", str(out), timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["meta"]["source"] == "accuracy run"
    assert report["rows"][0]["seconds_per_epoch"] == pytest.approx(3.0)
    md = out.with_suffix(".md").read_text()
    assert "2026-01-01" in md and "`python bench/accuracy.py`" in md
    assert "| toy | 900 | 4 (2) | 12 s | 3.0 | 300 | 50.0 |" in md
