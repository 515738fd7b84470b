"""Garbage-collector tuning for workers and high-rate producers (textlstm/gc_tuning.py)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("threshold", "expected"), [(50_000, 50_000), (0, 700)])
def test_tune_gc_freezes_the_start_up_heap_and_sets_the_young_threshold(
    threshold: int, expected: int
) -> None:
    """In a child process: the test process keeps its own collector settings."""
    import subprocess
    import sys

    code = (
        "import gc; from textlstm.gc_tuning import tune_gc; "
        f"tune_gc({threshold}); print(gc.get_threshold()[0], gc.get_freeze_count() > 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(expected), str(threshold > 0)]
