"""Pure parts of status and metrics: reply parsing, the text report, what a batch records,
and the supervisor calling back for each exited process (metrics drop its live gauges)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from textlstm.cli.status import render
from textlstm.ops.fleet import FleetStatus, parse_replies
from textlstm.serving.metrics import WorkerMetrics
from worker.supervisor import celery_argv, supervise


def test_parse_replies_and_render() -> None:
    workers = parse_replies(
        {
            "b1@h2": {
                "device": "cuda:0",
                "models": ["news@2"],
                "queues": ["q.high", "q"],
                "items": 5,
                "batches": 1,
                "buffered_messages": 0,
                "pid": 7,
            },
            "a0@h1": "not a dict",
        }
    )
    assert [w.node for w in workers] == ["a0@h1", "b1@h2"]
    assert workers[0].device is None and workers[1].models == ["news@2"]
    st = FleetStatus(
        broker="redis://:***@r:6379/0",
        database="postgresql+psycopg://u:***@db/t",
        queues={"q.high": 0, "q": 12, "q.bulk": 3400},
        unacked=256,
        workers=workers,
        jobs={"queued": 2, "running": 1, "done": 9, "failed": 0, "partial": 0, "expired": 1},
        oldest_in_flight={
            "job_id": "j-1",
            "status": "running",
            "submitted_at": "…",
            "age_s": 4000.0,
            "done": 10,
            "expected": 99,
        },
        aliases={"news@production": 2},
    )
    text = render(st)
    assert "q.bulk  3400" in text and "delivered, not yet acked: 256" in text
    assert "workers online: 2" in text and "cuda:0" in text
    assert "jobs: 2 queued, 1 running, 9 done, 1 expired" in text
    assert "oldest in flight: j-1 (running, 10/99 items, submitted 67m ago)" in text
    assert "news@production -> v2" in text and "***" in text
    down = FleetStatus(
        broker="b",
        database="d",
        errors={"workers": "OperationalError: x", "database": "StoreError: y"},
    )
    assert "workers: unavailable (OperationalError: x)" in render(down)
    assert "jobs: unavailable (StoreError: y)" in render(down)


def test_observe_batch_counts_ok_errors_expired_and_waits() -> None:
    reg = CollectorRegistry()
    m = WorkerMetrics(
        processed=Counter("p", "", ["model"], registry=reg),
        failed=Counter("f", "", ["model", "reason"], registry=reg),
        batch_size=Histogram("b", "", registry=reg),
        queue_wait=Histogram("w", "", registry=reg),
        inference=Histogram("i", "", registry=reg),
        db_write=Histogram("d", "", registry=reg),
        rejected=Counter("r", "", registry=reg),
        dead_lettered=Counter("dl", "", ["stage"], registry=reg),
        load_seconds=Gauge("l", "", ["model"], registry=reg),
        loaded=Gauge("m", "", ["model"], registry=reg),
        processes=Gauge("x", "", ["device"], registry=reg),
        cancelled=Counter("c", "", registry=reg),
    )
    report = SimpleNamespace(
        model="news@2",
        model_ref="news",
        items=10,
        ok=6,
        errors=4,
        expired=3,
        forward_ms=12.0,
        db_ms=5.0,
        queue_wait_s=(0.5,) * 10,
    )
    m.observe_batch(report)
    m.observe_batch(
        SimpleNamespace(
            **{
                **vars(report),
                "model": None,
                "ok": 0,
                "errors": 10,
                "expired": 0,
                "queue_wait_s": (),
            }
        )
    )
    get = reg.get_sample_value
    assert get("p_total", {"model": "news@2"}) == 6
    assert get("f_total", {"model": "news@2", "reason": "expired"}) == 3
    assert get("f_total", {"model": "news@2", "reason": "error"}) == 1
    assert get("f_total", {"model": "news", "reason": "unavailable"}) == 10
    assert get("b_count") == 2 and get("b_sum") == 20
    assert get("w_count") == 10 and get("i_count") == 1  # no forward pass without a model
    m.model_loaded("news@2", 1.5)
    m.model_evicted("news@2")
    assert get("l", {"model": "news@2"}) == 1.5 and get("m", {"model": "news@2"}) == 0


def test_supervisor_reports_each_exited_process_once() -> None:
    seen: list[int] = []
    script = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "os.kill(os.getppid(), signal.SIGTERM)\n"
        "signal.pause()\n"
    )
    code = supervise([([sys.executable, "-c", script], {})], on_exit=seen.append)
    assert code == 0 and len(seen) == 1


def test_node_names_tell_workers_on_one_host_apart() -> None:
    argv = celery_argv(index=2, queues="q.high,q,q.bulk", loglevel="info", name="gpu-a")
    assert argv[argv.index("--hostname") + 1] == "gpu-a2@%h"


def test_a_busy_metrics_port_is_one_line_and_starts_nothing(tmp_path: object) -> None:
    import socket

    from click.testing import CliRunner

    from textlstm.cli import cli

    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["worker", "--device", "cpu", "-c", "1", "--metrics-port", str(port)]
        )
    assert result.exit_code == 1 and f"Error: metrics port {port}:" in result.output


def test_metrics_add_up_over_processes_and_dead_ones_leave_the_live_gauges(
    tmp_path: object,
) -> None:
    """What the supervisor does for N worker processes, with two small processes instead."""
    import os
    import socket
    import subprocess
    import urllib.request
    from pathlib import Path

    from prometheus_client.parser import text_string_to_metric_families

    from textlstm.serving.metrics import mark_dead, serve

    mp = Path(str(tmp_path)) / "mp"
    mp.mkdir()
    child = (
        "import sys\n"
        "from textlstm.serving.metrics import get_metrics\n"
        "m = get_metrics()\n"
        "m.process_started('cpu')\n"
        "m.model_loaded('news@2', 0.5)\n"
        "m.processed.labels('news@2').inc(5)\n"
        "m.batch_size.observe(5)\n"
        "print('ready', flush=True)\n"
        "if sys.argv[1] == 'stay': sys.stdin.read()\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp)}
    gone = subprocess.run([sys.executable, "-c", child, "exit"], env=env, check=True)
    assert gone.returncode == 0
    stay = subprocess.Popen(
        [sys.executable, "-c", child, "stay"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert stay.stdout is not None and stay.stdout.readline().strip() == b"ready"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = serve(port, "127.0.0.1", multiproc_dir=str(mp))

        def scrape() -> dict[tuple[str, str], float]:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            return {
                (x.name, ",".join(f"{k}={v}" for k, v in sorted(x.labels.items()))): x.value
                for fam in text_string_to_metric_families(body)
                for x in fam.samples
            }

        before = scrape()
        assert before[("textlstm_items_processed_total", "model=news@2")] == 10
        assert before[("textlstm_batch_size_count", "")] == 2
        assert before[("textlstm_worker_processes", "device=cpu")] == 2
        # The supervisor marks an exited process dead: its live gauges go, its counts stay.
        dead_pid = next(
            int(p.stem.rsplit("_", 1)[1])
            for p in mp.glob("gauge_livesum_*.db")
            if int(p.stem.rsplit("_", 1)[1]) != stay.pid
        )
        mark_dead(dead_pid, str(mp))
        after = scrape()
        assert after[("textlstm_worker_processes", "device=cpu")] == 1
        assert after[("textlstm_model_loaded", "model=news@2")] == 1
        assert after[("textlstm_items_processed_total", "model=news@2")] == 10
        server.shutdown()
    finally:
        stay.kill()
        stay.wait()


def test_render_on_amqp_says_what_is_not_counted() -> None:
    """On amqp:// status has ready depths and the dead-letter queue's, no unacked count
    (textlstm.broker_options.amqp_queue_depths)."""
    st = FleetStatus(broker="amqp://guest:***@r:5672//", database="d", queues={"q": 75})
    text = render(st)
    assert " 75" in text
    assert "not counted on this broker" in text and "acked: None" not in text
    st.dead_letters = 2
    assert "dead letters: 2  (textlstm-admin dead-letters list)" in render(st)
    assert "set TEXTLSTM_RABBITMQ_MANAGEMENT_URL" in text


def test_render_on_amqp_with_the_management_api() -> None:
    """TEXTLSTM_RABBITMQ_MANAGEMENT_URL set: its unacked count, or its one-line error."""
    st = FleetStatus(broker="amqp://g:***@r//", database="d", queues={"q": 6}, unacked=4)
    text = render(st)
    assert "delivered, not yet acked: 4  (RabbitMQ management API)" in text
    why = "TEXTLSTM_RABBITMQ_MANAGEMENT_URL: cannot read unacked counts (x)"
    st = FleetStatus(broker="amqp://g:***@r//", database="d", queues={"q": 6},
                     errors={"unacked": why})  # fmt: skip
    text = render(st)
    assert f"delivered, not yet acked: unavailable ({why})" in text and " 6" in text
