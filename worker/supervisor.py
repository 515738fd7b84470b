"""`textlstm-admin worker`: start N Celery worker processes (one per core or GPU) and supervise
them.

Each process is `celery -A worker.app worker -P solo` with its own process index (which picks
its GPU) and thread count; the micro-batching strategy runs batches in that process. SIGTERM or
Ctrl-C is forwarded to every process, which drains (finishes and commits what it holds) and
exits; a process that dies unexpectedly is restarted. One that refuses to start (exit status
`os.EX_CONFIG`, 78: its kombu or Celery lacks a name the worker relies on, after one line on
stderr that says which) is not: restarting cannot fix a package version, so the others are
stopped and the supervisor exits 78 too. Children get SIGTERM if this supervisor is killed
(Linux PR_SET_PDEATHSIG), so none is left orphaned.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import click

from textlstm.errors import EX_CONFIG
from textlstm.settings import Settings

log = logging.getLogger("textlstm.worker")


def celery_argv(*, index: int, queues: str, loglevel: str, name: str = "textlstm") -> list[str]:
    """The command line of one worker process (also what tests and docs use)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "worker",
        "--pool",
        "solo",
        "--concurrency",
        "1",
        "--queues",
        queues,
        "--hostname",
        f"{name}{index}@%h",
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return preexec


def _broker_answers(settings: Settings) -> None:
    """On `sentinel://` (no Sentinel answers, or none knows the master) and amqp:// (RabbitMQ
    refuses the login or the vhost, or does not answer), one line now rather than every
    process retrying the broker connection for ever: that is a wrong setting or a broker that
    is down, not a failover (Sentinels answer during one)."""
    from textlstm.broker_options import probe_broker
    from textlstm.client.publisher import checked_queues
    from textlstm.settings import mask_url

    try:
        probe_broker(
            settings.broker_url, settings.broker_transport_options, queues=checked_queues(settings)
        )
    except ConnectionError as exc:
        raise click.ClickException(f"broker {mask_url(settings.broker_url)}: {exc}") from None


def plan_processes(device: str, gpus: str, concurrency: int) -> int:
    """How many worker processes to start: the option, else one per allowed GPU or core."""
    if concurrency > 0:
        return concurrency
    from textlstm.serving.device import default_processes, parse_gpus

    cuda_count = 0
    if device.strip().lower() != "cpu":
        import torch  # only here: deciding the process count for a GPU host

        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return default_processes(
        device, gpus=parse_gpus(gpus), cuda_count=cuda_count, cores=os.cpu_count() or 1
    )


def supervise(
    commands: Sequence[tuple[list[str], dict[str, str]]],
    *,
    on_exit: Callable[[int], None] | None = None,
) -> int:
    """Run every command, restart any that dies unexpectedly, forward SIGTERM/SIGINT; return
    the worst exit status once all have exited after a stop request. A process that exits with
    EX_CONFIG (unusable settings, or a kombu/Celery it cannot run on; said on its stderr) is
    not restarted: the others are stopped and EX_CONFIG returned. `on_exit(pid)` is called
    once per exited process (the metrics drop its live gauges)."""
    stopping = False
    config_error = False
    procs: list[subprocess.Popen[bytes] | None] = [None] * len(commands)
    reaped: set[int] = set()

    def exited(p: subprocess.Popen[bytes]) -> None:
        if on_exit is not None and p.pid not in reaped:
            reaped.add(p.pid)
            on_exit(p.pid)

    def start(i: int) -> None:
        argv, env = commands[i]
        procs[i] = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent())  # noqa: PLW1509

    def stop_all() -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def on_signal(signum: int, _frame: object) -> None:
        stop_all()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for i in range(len(commands)):
            start(i)
        while True:
            alive = False
            for i, p in enumerate(procs):
                if p is None:
                    continue
                code = p.poll()
                if code is not None:
                    exited(p)
                if code is None:
                    alive = True
                elif code == EX_CONFIG and not stopping:
                    log.error("worker process %d cannot start with these settings; stopping", i)
                    config_error = True
                    stop_all()
                elif not stopping:
                    log.error("worker process %d exited with %s; restarting it", i, code)
                    time.sleep(1.0)
                    start(i)
                    alive = True
            if not alive:
                break
            time.sleep(0.2)
        if config_error:
            return EX_CONFIG
        codes = [p.returncode for p in procs if p is not None]
        return max((abs(c) for c in codes), default=0)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@click.command()
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(0),
    default=None,
    help="Worker processes (default: one per CPU core, or one per allowed GPU).",
)
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N [default: auto].")
@click.option("--gpus", default=None, help="GPU indices to spread processes over, e.g. 0,1.")
@click.option(
    "--threads",
    type=click.IntRange(0),
    default=None,
    help="torch threads per CPU process (default: cores // processes).",
)
@click.option("--queues", "-Q", default=None, help="Queue(s) to consume [default: TEXTLSTM_QUEUE].")
@click.option("--batch-max-items", type=click.IntRange(1), default=None, help="Items per batch.")
@click.option(
    "--batch-max-wait-ms", type=click.IntRange(0), default=None, help="Longest wait to fill one."
)
@click.option(
    "--batch-idle-ms", type=click.IntRange(0), default=None, help="Flush once the queue is quiet."
)
@click.option("--warmup", "warmup_model", default=None, help="Model to load and run first.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics of all processes here (0 = off) [default: "
    "TEXTLSTM_METRICS_PORT].",
)
@click.option(
    "--name",
    default=None,
    help="Node name prefix: processes are NAME0@host, NAME1@host… [default: TEXTLSTM_WORKER_NAME].",
)
@click.option("--loglevel", "-l", default="info", show_default=True)
def worker(
    concurrency: int | None,
    device: str | None,
    gpus: str | None,
    threads: int | None,
    queues: str | None,
    batch_max_items: int | None,
    batch_max_wait_ms: int | None,
    batch_idle_ms: int | None,
    warmup_model: str | None,
    metrics_port: int | None,
    name: str | None,
    loglevel: str,
) -> None:
    """Consume classification jobs from the broker and write predictions to SQL.

    Options override the TEXTLSTM_WORKER_* settings (README.md, "Knobs"). Without --queues the
    processes take the high, normal and bulk queues of TEXTLSTM_QUEUE, in that order.
    """
    from textlstm.serving.device import assign_device, parse_gpus
    from textlstm.settings import get_settings, mask_url, subprocess_env

    s = get_settings()
    _broker_answers(s)
    device = device or s.worker_device
    gpus = s.worker_gpus if gpus is None else gpus
    assign_device(device, process_index=0, gpus=parse_gpus(gpus), cuda_count=1)  # syntax check
    n = plan_processes(device, gpus, s.worker_concurrency if concurrency is None else concurrency)
    overrides = {
        "TEXTLSTM_WORKER_DEVICE": device,
        "TEXTLSTM_WORKER_GPUS": gpus,
        "TEXTLSTM_WORKER_CONCURRENCY": str(n),
    }
    for key, value in (
        ("TEXTLSTM_WORKER_THREADS", threads),
        ("TEXTLSTM_WORKER_BATCH_MAX_ITEMS", batch_max_items),
        ("TEXTLSTM_WORKER_BATCH_MAX_WAIT_MS", batch_max_wait_ms),
        ("TEXTLSTM_WORKER_BATCH_IDLE_MS", batch_idle_ms),
        ("TEXTLSTM_WORKER_WARMUP_MODEL", warmup_model),
    ):
        if value is not None:
            overrides[key] = str(value)
    if warmup_model:
        from textlstm.wire.refs import parse_model_ref

        parse_model_ref(warmup_model)  # one line here, not one failed start per process
    from textlstm.wire.queues import consume_order

    queue_list = queues or ",".join(consume_order(s.queue))
    port = s.metrics_port if metrics_port is None else metrics_port
    node = name or s.worker_name
    metrics_dir = None
    if port:
        import tempfile

        # Children record into this directory; this process serves their sum on one port.
        metrics_dir = tempfile.mkdtemp(prefix="textlstm-metrics-")
        overrides["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        overrides["TEXTLSTM_METRICS_PORT"] = "0"  # children do not serve their own
    click.echo(
        f"starting {n} worker process(es): device {device}, queue(s) {queue_list}, "
        f"broker {mask_url(s.broker_url)}, database {mask_url(s.database_url)}"
        + (f", metrics on :{port}/metrics" if port else ""),
        err=True,
    )
    commands = [
        (
            celery_argv(index=i, queues=queue_list, loglevel=loglevel, name=node),
            subprocess_env({**overrides, "TEXTLSTM_WORKER_PROCESS_INDEX": str(i)}),
        )
        for i in range(n)
    ]
    if metrics_dir is None:
        sys.exit(supervise(commands))
    import shutil

    from textlstm.serving.metrics import mark_dead, serve

    try:
        server = serve(port, s.metrics_addr, multiproc_dir=metrics_dir)
    except OSError as exc:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        raise click.ClickException(f"metrics port {port}: {exc}") from None
    try:
        code = supervise(commands, on_exit=lambda pid: mark_dead(pid, metrics_dir))
    finally:
        server.shutdown()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.exit(code)
