"""`textlstm-admin worker` and `submit`: imports, argv, and submitting to the real Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from textlstm.cli import cli
from worker.supervisor import celery_argv, supervise


def test_worker_and_submit_help_and_imports_stay_light() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from textlstm.cli import cli\n"
        "for cmd in ('worker', 'submit'):\n"
        "    r = CliRunner().invoke(cli, [cmd, '--help'])\n"
        "    assert r.exit_code == 0, r.output\n"
        "import worker.app, worker.tasks\n"
        "assert 'torch' not in sys.modules, 'torch imported before a worker process starts'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_worker_argv_is_one_solo_consumer_per_process() -> None:
    argv = celery_argv(index=3, queues="q1,q2", loglevel="info")
    assert argv[argv.index("-A") + 1] == "worker.app"
    assert argv[argv.index("--pool") + 1] == "solo"
    assert argv[argv.index("--queues") + 1] == "q1,q2"
    assert argv[argv.index("--hostname") + 1] == "textlstm3@%h"


def test_supervisor_restarts_a_crashed_process_only_until_stopped(tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    # First run exits 3 (a crash); the restarted one exits 0 after sending us SIGTERM.
    script = (
        "import os, signal, sys, pathlib\n"
        f"p = pathlib.Path({str(marker)!r})\n"
        "n = int(p.read_text()) if p.exists() else 0\n"
        "p.write_text(str(n + 1))\n"
        "if n == 0: sys.exit(3)\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "os.kill(os.getppid(), signal.SIGTERM)\n"
        "signal.pause()\n"
    )
    code = supervise([([sys.executable, "-c", script], {})])
    assert marker.read_text() == "2" and code == 0


def test_worker_refuses_a_bad_device_with_one_line() -> None:
    result = CliRunner().invoke(cli, ["worker", "--device", "tpu"])
    assert result.exit_code == 1 and "invalid device 'tpu'" in result.output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_submit_enqueues_a_file_and_records_the_job(
    settings_env: str, tmp_path: Path, tiny_bundle: Path, redis_client: object, queue_name: str
) -> None:
    from textlstm.client import Client

    runner = CliRunner()
    reg = runner.invoke(cli, ["models", "register", str(tiny_bundle), "--name", "topics"])
    assert reg.exit_code == 0, reg.output
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"body": f"text {i}"}) + "\n" for i in range(300)))
    result = runner.invoke(cli, ["submit", str(data), "--model", "topics", "--text-column", "body"])
    assert result.exit_code == 0, result.output
    job_id = result.output.splitlines()[0]
    st = Client().status(job_id)
    assert (st.status, st.expected, st.metadata) == ("queued", 300, {"source": str(data)})
    assert redis_client.llen(queue_name) == 2  # type: ignore[attr-defined]  # 256 + 44 items
    bad = runner.invoke(cli, ["submit", str(data), "--model", "nosuch", "--text-column", "body"])
    assert bad.exit_code == 1 and "nosuch" in bad.output
