"""Issue 17 item 1: Redis Sentinel failover with nothing lost.

Each test starts its own master, one replica and three Sentinels on free loopback ports
(`textlstm.testing.sentinel`; never the shared Redis), two workers and a producer thread that
submits jobs one after another. Once the workers are under way the master is SIGKILLed; the
Sentinels promote the replica within a few seconds, and the killed master is started again, as
its supervisor would, and rejoins as the new master's replica. The workers and the producer keep
running (same processes, same Client): they reach the promoted replica through the Sentinels.

Redis replication is asynchronous, so the last messages the old master acknowledged may never
have reached the replica:

- with `TEXTLSTM_BROKER_WAIT_REPLICAS=1` (the Sentinel default) a job is reported accepted only
  once a replica holds its messages (Redis `WAIT`): every accepted job finishes, every item has
  exactly one row, and nothing needs recovery;
- with 0 (no wait) the loss is measured: the items of accepted jobs that never got a row, and
  where they are (`requeue_job --dry-run`: in no queue and no unacked entry = lost by the
  failover); then `jobs requeue` from the producer's input makes it zero.

`bench/sentinel_failover.py` runs these tests several times with `SENTINEL_FAILOVER_RECORD`
naming a file: each run appends one JSON record (lost messages, failover time, producer
retries) there, and the script writes bench/results/sentinel_failover.{json,md}.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import assert_exactly_once, row_count, texts
from tests.fixtures.workers import Fleet
from textlstm.errors import BrokerError
from textlstm.settings import Settings
from textlstm.testing.sentinel import OwnSentinelSet
from textlstm.testing.waiting import wait_until

pytestmark = [
    pytest.mark.faults,
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]

ITEMS = 120  # per job
PER_MESSAGE = 4  # 30 messages a job


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[OwnSentinelSet]:
    s = OwnSentinelSet(tmp_path / "sentinel")
    try:
        yield s.start()
    finally:
        s.close()


@dataclass
class Run:
    """What one failover run did and measured (the record bench/sentinel_failover.py reads)."""

    wait_replicas: int
    jobs: dict[uuid.UUID, list[str]] = field(default_factory=dict)  # accepted: their texts
    producer_retries: int = 0  # submits that raised BrokerError and were sent again
    producer_errors: list[str] = field(default_factory=list)
    jobs_before_kill: int = 0
    jobs_after_failover: int = 0  # accepted once the old master had rejoined
    failover_s: float = 0.0  # SIGKILL -> the Sentinels name a master that answers as one
    rejoin_s: float = 0.0  # restart of the old master -> it serves as the new one's replica
    lost_items: int = 0
    lost_messages: int = 0
    recovered_items: int = 0

    def record(self) -> dict[str, object]:
        out = asdict(self)
        out["jobs"] = len(self.jobs)
        out["items"] = len(self.jobs) * ITEMS
        out["messages"] = len(self.jobs) * ITEMS // PER_MESSAGE
        out["producer_errors"] = self.producer_errors[:3]
        return out


class ProducerThread(threading.Thread):
    """Submits jobs back to back with one Client, as an application would, re-sending a job
    whose submit raised BrokerError under the same job id (what the error tells one to do)
    until it is accepted."""

    def __init__(self, settings: Settings, run: Run) -> None:
        super().__init__(daemon=True)
        self.settings = settings.model_copy(update={"message_max_items": PER_MESSAGE})
        self.run_ = run
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        from textlstm.client import Client

        client = Client(self.settings)
        k = 0
        while not self.stop.is_set():
            job, inputs = uuid.uuid4(), texts(ITEMS, seed=1000 + k)
            while True:
                try:
                    client.submit(inputs, model="topics", job_id=job, record_job=True)
                    break
                except BrokerError as exc:
                    self.run_.producer_retries += 1
                    self.run_.producer_errors.append(str(exc)[:300])
                    time.sleep(0.5)
            with self.lock:
                self.run_.jobs[job] = inputs
            k += 1
            time.sleep(0.02)

    def accepted(self) -> int:
        with self.lock:
            return len(self.run_.jobs)


def failover_run(
    sentinel_set: OwnSentinelSet,
    e2e_settings: Settings,
    worker_env: dict[str, str],
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    *,
    wait_replicas: int,
) -> tuple[Run, Settings, Fleet]:
    """Two workers and a producer on the Sentinel set; SIGKILL the master mid-run; restart it
    once the replica is promoted; keep producing a few seconds more; return once every
    accepted job has all its rows or nothing moved for 20 s."""
    options = sentinel_set.transport_options
    settings = e2e_settings.model_copy(
        update={
            "broker_url": sentinel_set.url,
            "broker_transport_options": options,
            "broker_wait_replicas": wait_replicas,
            "broker_wait_timeout_ms": 1000,
            # Backpressure on: every submit reads the queue's depth through the Sentinels.
            "queue_max_pending": 100_000,
        }
    )
    env = {
        **worker_env,
        "TEXTLSTM_BROKER_URL": sentinel_set.url,
        "TEXTLSTM_BROKER_TRANSPORT_OPTIONS": json.dumps(options),
    }
    fleet = Fleet(env, tmp_path)
    live = [fleet.start("--batch-max-items", "32", "--name", n) for n in ("sa", "sb")]
    run = Run(wait_replicas)
    producer = ProducerThread(settings, run)
    producer.start()
    try:
        wait_until(lambda: producer.accepted() >= 5, 120, "five jobs accepted")
        first = next(iter(run.jobs))
        wait_until(lambda: row_count(session_factory, first) > 0, 120, "the workers under way")
        old = sentinel_set.master.port
        run.jobs_before_kill = producer.accepted()
        sentinel_set.master.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        sentinel_set.master.proc.wait(10)  # type: ignore[union-attr]
        run.failover_s = round(sentinel_set.wait_failover(old), 2)
        t0 = time.monotonic()
        # Its supervisor restarts it as a replica of the promoted one. Never as an empty
        # master: the Sentinels could promote it back and the other node would resync from it
        # and drop everything (seen here with `down-after` too short for a loaded machine).
        new = sentinel_set.node_at(sentinel_set.master_port() or 0)
        sentinel_set.master.extra_args = (*sentinel_set.master.extra_args, "--replicaof",
                                          "127.0.0.1", str(new.port))  # fmt: skip
        sentinel_set.master.start()
        sentinel_set.wait(lambda: new.client().info("replication").get("connected_slaves"),
                          60, "the old master to rejoin as a replica")  # fmt: skip
        run.rejoin_s = round(time.monotonic() - t0, 2)
        after = producer.accepted()
        wait_until(lambda: producer.accepted() >= after + 5, 120, "jobs accepted after failover")
        run.jobs_after_failover = producer.accepted() - after
    finally:
        producer.stop.set()
        producer.join(120)
    _wait_rows(session_factory, run)
    assert all(w.alive() for w in live), fleet.logs()[-3000:]
    # No worker process died and was restarted, and none fell back to kombu's own transport
    # when Celery switched to another Sentinel's URL to reconnect (its acks would fail).
    for w in live:
        log = w.log()
        assert "exited with" not in log, log[-3000:]
        assert "could not ack" not in _after_reconnect(log), log[-3000:]
    # `status` reaches the promoted replica too: queue depths, and both workers answering
    # Celery's broadcast on it.
    from textlstm.ops.fleet import collect

    st = collect(settings, timeout=5)
    assert not st.errors and len(st.workers) == 2, (st.errors, st.workers)
    assert set(st.queues) >= {settings.queue}
    return run, settings, fleet


def _after_reconnect(log: str) -> str:
    """A worker's log after it reconnected following the last lost connection."""
    lost = log.rfind("Connection to broker lost")
    back = log.find("Connected to", lost)
    return log[back:] if lost >= 0 and back >= 0 else ""


def _wait_rows(session_factory: sessionmaker[Session], run: Run, stall_s: float = 20.0) -> None:
    last, changed = -1, time.monotonic()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        total = sum(row_count(session_factory, j) for j in run.jobs)
        if total == len(run.jobs) * ITEMS:
            return
        if total != last:
            last, changed = total, time.monotonic()
        elif time.monotonic() - changed > stall_s:
            return
        time.sleep(0.5)


def _measure_loss(settings: Settings, run: Run) -> None:
    """Items of accepted jobs with no row, in no queue and no unacked entry: lost."""
    from textlstm.ops.recovery import requeue_job

    for job, inputs in run.jobs.items():
        report = requeue_job(job, settings=settings, input_texts=inputs, dry_run=True)
        run.lost_items += report.from_input
    run.lost_messages = -(-run.lost_items // PER_MESSAGE)


def _record(run: Run) -> None:
    path = os.environ.get("SENTINEL_FAILOVER_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(run.record()) + "\n")


def test_failover_with_wait_for_a_replica_loses_nothing(
    sentinel_set: OwnSentinelSet,
    topics: dict,
    e2e_settings: Settings,
    worker_env: dict[str, str],
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    run, settings, fleet = failover_run(
        sentinel_set, e2e_settings, worker_env, session_factory, tmp_path, wait_replicas=1
    )
    try:
        _measure_loss(settings, run)
        _record(run)
        assert run.lost_items == 0, run.record()
        assert run.jobs_before_kill >= 5 and len(run.jobs) >= run.jobs_before_kill + 5
        assert_exactly_once(session_factory, dict.fromkeys(run.jobs, ITEMS))
        # The same two worker processes (checked alive in failover_run) stored the jobs
        # accepted after the failover, which only ever existed on the promoted replica.
        assert run.jobs_after_failover >= 5
    finally:
        fleet.close()


def test_failover_without_wait_is_measured_and_requeue_recovers_it(
    sentinel_set: OwnSentinelSet,
    topics: dict,
    e2e_settings: Settings,
    worker_env: dict[str, str],
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    from textlstm.ops.recovery import requeue_job

    run, settings, fleet = failover_run(
        sentinel_set, e2e_settings, worker_env, session_factory, tmp_path, wait_replicas=0
    )
    try:
        _measure_loss(settings, run)
        for job, inputs in run.jobs.items():
            report = requeue_job(job, settings=settings, input_texts=inputs)
            run.recovered_items += report.from_input
        _record(run)
        assert run.recovered_items == run.lost_items
        _wait_rows(session_factory, run)
        assert_exactly_once(session_factory, dict.fromkeys(run.jobs, ITEMS))
    finally:
        fleet.close()


def test_a_lagging_replica_loses_unwaited_messages_and_wait_refuses_them(
    sentinel_set: OwnSentinelSet, e2e_settings: Settings, queue_name: str
) -> None:
    """The window WAIT closes, made wide and certain: the replication link is cut (the
    replica stopped, the master dropping its connection) while a producer sends; then the
    master dies and the replica is promoted. Without WAIT the job was reported accepted and
    every one of its messages is gone; with WAIT 1 the job was refused (BrokerError), so the
    producer knew to send it again, and sent again after the failover it is on the new master."""
    from textlstm.client import Client

    settings = e2e_settings.model_copy(
        update={
            "broker_url": sentinel_set.url,
            "broker_transport_options": sentinel_set.transport_options,
            "queue": queue_name,
            "message_max_items": PER_MESSAGE,
            "broker_wait_timeout_ms": 300,
        }
    )
    unwaited = settings.model_copy(update={"broker_wait_replicas": 0})
    waited = settings.model_copy(update={"broker_wait_replicas": 1})
    replica, master = sentinel_set.replica, sentinel_set.master
    old = master.port
    replica.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:
        master.client().client_kill_filter(_type="replica")
        accepted = Client(unwaited).submit(texts(40), model="topics", record_job=False)
        refused = uuid.uuid4()
        with pytest.raises(BrokerError, match="only 0 of 1 replica"):
            Client(waited).submit(texts(40), model="topics", job_id=refused, record_job=False)
        master.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        master.proc.wait(10)  # type: ignore[union-attr]
    finally:
        replica.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    failover_s = sentinel_set.wait_failover(old)
    new = sentinel_set.client()
    lost = 10 - int(new.llen(queue_name))  # 40 items, 4 a message: 10 messages each
    assert lost == 10, f"{lost} of job {accepted}'s 10 messages lost"

    promoted = sentinel_set.node_at(sentinel_set.master_port() or 0)
    master.extra_args = (*master.extra_args, "--replicaof", "127.0.0.1", str(promoted.port))
    master.start()  # rejoins as a replica: WAIT 1 can be met again
    # Connected is not enough: a replica in full resync does not acknowledge WAIT yet.
    sentinel_set.wait(lambda: _replica_online(new), 60, "the old master to rejoin, in sync")
    Client(waited).submit(texts(40), model="topics", job_id=refused, record_job=False)
    assert new.llen(queue_name) == 10  # the refused job, sent again: all there
    path = os.environ.get("SENTINEL_FAILOVER_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            record = {"scenario": "lag", "unwaited_lost": lost, "waited_lost": 0,
                      "failover_s": round(failover_s, 2)}  # fmt: skip
            f.write(json.dumps(record) + "\n")
    new.close()


def _replica_online(client: Any) -> bool:
    """A replica is connected and has finished its initial sync (state `online`)."""
    info = client.info("replication")
    replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
    return any(r.get("state") == "online" for r in replicas)
