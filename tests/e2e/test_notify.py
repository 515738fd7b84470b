"""Issue 18, deliverable 2, end to end: real worker processes, the real Redis, PostgreSQL and
a real HTTP receiver on 127.0.0.1 (allowed through TEXTLSTM_WEBHOOK_ALLOW, as a deployment
would allow an internal receiver).

- a finished job's webhook arrives once, signed, and the delivery is recorded;
- `client.wait` is woken by the final event, measured against the 0.5 s polling fallback;
- two workers finishing the last items of jobs at once publish exactly one event per job;
- a receiver that is slow never slows the batches.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import texts
from tests.fixtures.receiver import Receiver
from tests.fixtures.workers import WorkerProc
from textlstm.client import Client
from textlstm.client import jobs as client_jobs
from textlstm.settings import Settings
from textlstm.store.events import get_delivery
from textlstm.wire.events import finished_channel, verify_signature

PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
SECRET = "e2e-webhook-secret"
HOOK_ENV = {"TEXTLSTM_WEBHOOK_SECRET": SECRET, "TEXTLSTM_WEBHOOK_ALLOW": "127.0.0.1"}


def submit(settings: Settings, n: int, *, per_message: int = 256, **kw: Any) -> uuid.UUID:
    s = settings.model_copy(update={"message_max_items": per_message})
    return Client(s).submit(texts(n), model="topics", record_job=False, **kw)


@PG
def test_webhook_fires_once_with_a_valid_signature(
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
    receiver: Receiver,
) -> None:
    workers(env=HOOK_ENV)
    job = submit(e2e_settings, 300, per_message=50, webhook=receiver.url)
    st = Client(e2e_settings).wait(job, timeout=60)
    assert st.status == "done"
    (req,) = receiver.wait_for(1, timeout=15)
    time.sleep(1.0)  # nothing else arrives
    assert len(receiver.requests) == 1
    assert verify_signature(SECRET.encode(), req.body, req.headers["X-Textlstm-Signature"])
    event = json.loads(req.body)
    assert (event["job_id"], event["status"], event["ok"]) == (str(job), "done", 300)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with session_factory() as s:
            d = get_delivery(session=s, job_id=job)
            if d is not None and d.state == "delivered":
                break
        time.sleep(0.05)
    assert (d.state, d.attempts, d.last_status_code) == ("delivered", 1, 200)


@PG
def test_wait_is_woken_by_the_event(
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
    record_property: Callable[[str, object], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two waiters on each job: one subscribed (the default), one on a broker that is down,
    which falls back to polling every 0.5 s. The subscribed waiter's SQL re-check is pushed
    past the test's horizon, so it can only return in time because the event woke it.
    Latency = return time - the job's finished_at, recorded (as a property), not asserted."""
    monkeypatch.setattr(client_jobs, "RECHECK_S", 300.0)
    workers()
    no_redis = e2e_settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    lat: dict[str, list[float]] = {"event": [], "poll": []}
    for trial in range(6):
        jid = uuid.uuid4()
        done: dict[str, float] = {}

        def waiter(kind: str, settings: Settings, jid: uuid.UUID = jid, done: dict = done) -> None:
            Client(settings).wait(jid, timeout=60, poll_interval=0.5)
            done[kind] = time.time()

        threads = [threading.Thread(target=waiter, args=a)
                   for a in (("event", e2e_settings), ("poll", no_redis))]  # fmt: skip
        for t in threads:
            t.start()
        time.sleep(0.3 + 0.13 * trial)  # both waiting; vary the phase against the poll
        submit(e2e_settings, 20, job_id=jid)
        for t in threads:
            t.join(60)
        assert set(done) == {"event", "poll"}, f"trial {trial}: a waiter did not return"
        st = Client(e2e_settings).status(jid)
        assert st.finished and st.finished_at is not None
        for kind in lat:
            lat[kind].append(done[kind] - st.finished_at.timestamp())
    event_ms = statistics.mean(lat["event"]) * 1000
    poll_ms = statistics.mean(lat["poll"]) * 1000
    summary = (
        f"wait latency after finished_at, mean of 6: event {event_ms:.0f} ms "
        f"(max {max(lat['event']) * 1000:.0f}), polling 0.5 s {poll_ms:.0f} ms "
        f"(max {max(lat['poll']) * 1000:.0f})"
    )
    record_property("wait_latency", summary)  # in the JUnit report (pytest --junitxml)


@PG
def test_two_workers_publish_one_event_per_job(
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    redis_client: Any,
) -> None:
    """100 jobs of 2 items, one item per message, drained by two worker processes at once: the
    two items of a job are often stored by both workers in the same instant. Every final event
    published on Redis is counted (a pattern subscription made before anything is sent)."""
    w1, w2 = workers(), workers()  # both consuming before anything is sent
    pubsub = redis_client.pubsub()
    pubsub.psubscribe(finished_channel(e2e_settings.queue, "*"))
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
    jobs = [submit(e2e_settings, 2, per_message=1) for _ in range(100)]
    client = Client(e2e_settings)
    for job in jobs:
        assert client.wait(job, timeout=90).status == "done"
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if msg is not None:
            seen[json.loads(msg["data"])["job_id"]] += 1
    pubsub.close()
    assert seen == Counter({str(j): 1 for j in jobs})
    both = sum(1 for w in (w1, w2) if any(b.inserted for b in w.batches()))
    assert both == 2, "one worker took every item: the race was not exercised"


@PG
def test_a_slow_receiver_never_slows_the_batches(
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    receiver: Receiver,
    record_property: Callable[[str, object], None],
) -> None:
    """The receiver answers nothing until the test releases it: 5 jobs, each waited for
    before the next, all finish while the first webhook is still held by the receiver, so no
    micro-batch waited for a delivery. Released, every webhook arrives. Timings are recorded
    (as a property), not asserted."""
    receiver.hold.clear()
    w = workers(env={**HOOK_ENV, "TEXTLSTM_WEBHOOK_TIMEOUT_S": "60"})
    client = Client(e2e_settings)
    took = []
    try:
        for _ in range(5):
            started = time.monotonic()
            job = submit(e2e_settings, 50, webhook=receiver.url)
            assert client.wait(job, timeout=30).status == "done"
            took.append(time.monotonic() - started)
        assert receiver.answered == 0  # every job ended while its webhook could not be answered
    finally:
        receiver.hold.set()
    assert len(receiver.wait_for(5, timeout=60)) == 5
    db_ms = [b.db_ms for b in w.batches()]
    record_property(
        "slow_receiver",
        f"held receiver: job submit->wait {statistics.mean(took) * 1000:.0f} ms mean, "
        f"max {max(took) * 1000:.0f} ms; batch db_ms max {max(db_ms):.1f}",
    )


@PG
def test_a_delivery_left_by_a_stopped_worker_is_sent_by_the_next_one(
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
    receiver: Receiver,
) -> None:
    """A job finished, its delivery recorded `pending`, and no worker sent it (the one that
    finished it was killed right after its commit): the next worker to start finds it in SQL
    on its sweep and delivers it."""
    from textlstm.store.predictions import JobItems, PredictionRecord, save_batch

    jid = uuid.uuid4()
    with session_factory.begin() as s:
        recs = [PredictionRecord(0, "ok", "pos")]
        out = save_batch(
            session=s, jobs={jid: JobItems("topics", 1, recs, webhook_url=receiver.url)}
        )
    assert [f.webhook for f in out.finished] == [True]
    workers(env={**HOOK_ENV, "TEXTLSTM_WEBHOOK_SWEEP_INTERVAL_S": "0.5"})
    (req,) = receiver.wait_for(1, timeout=30)
    assert json.loads(req.body)["job_id"] == str(jid)
    assert verify_signature(SECRET.encode(), req.body, req.headers["X-Textlstm-Signature"])


@PG
def test_submit_webhook_and_wait_from_the_cli(
    workers: Callable[..., WorkerProc],
    topics: dict,
    settings_env: str,
    receiver: Receiver,
    tmp_path: Any,
) -> None:
    """`textlstm-admin submit FILE --webhook URL --wait`: the summary is printed once the job is
    done (woken by its event) and the receiver gets the signed event; a bad URL is one line."""
    from click.testing import CliRunner

    from textlstm.cli import cli

    workers(env=HOOK_ENV)
    data = tmp_path / "in.csv"
    data.write_text("text\n" + "\n".join(texts(30)) + "\n")
    result = CliRunner().invoke(
        cli, ["submit", str(data), "--model", "topics", "--webhook", receiver.url, "--wait"]
    )
    assert result.exit_code == 0, result.output
    assert ": done, 30 ok, 0 error(s) of 30" in result.output
    (req,) = receiver.wait_for(1, timeout=15)
    assert verify_signature(SECRET.encode(), req.body, req.headers["X-Textlstm-Signature"])
    bad = CliRunner().invoke(
        cli, ["submit", str(data), "--model", "topics", "--webhook", "ftp://x/"]
    )
    assert bad.exit_code != 0
    assert "webhook URL must be http or https" in bad.output and bad.output.count("\n") == 1
