"""Issue 17 deliverable 2: `jobs requeue` and `jobs reap` on amqp:// (the test's own RabbitMQ
node, durable quorum queues).

A job's message leaves RabbitMQ without reaching SQL (here: taken and acked by a client that
stores nothing). `requeue` reads the messages still waiting (and puts them back: the queue
holds as many as before), leaves their items alone, and reports the others as in no queue:
there is no unacked copy to re-send on AMQP (RabbitMQ redelivers a worker's unacked messages
itself). `reap` reports the same; `reap --requeue` has no texts to send and says so; `requeue
--input` re-sends the missing items with publisher confirms, and a worker completes the job,
every item exactly once. The `dead-letters` commands read, requeue and purge the dead-letter
queue.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import assert_exactly_once, submit, texts, wait_job
from tests.fixtures.workers import Fleet
from textlstm.cli import cli
from textlstm.settings import Settings, get_settings
from textlstm.testing.rabbitmq import OwnRabbitMQ
from textlstm.testing.waiting import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rabbit_fleet: tuple[Settings, Fleet]
) -> Iterator[Settings]:
    settings, _ = rabbit_fleet
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEXTLSTM_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TEXTLSTM_BROKER_URL", settings.broker_url)
    monkeypatch.setenv("TEXTLSTM_QUEUE", settings.queue)
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def lose_one_message(node: OwnRabbitMQ, queue: str) -> None:
    """Take the first message of `queue` and ack it: gone from RabbitMQ, never stored."""
    from kombu import Connection

    with Connection(node.url, connect_timeout=5) as conn:
        message = conn.default_channel.basic_get(queue=queue, no_ack=False)
        assert message is not None
        conn.default_channel.basic_ack(message.delivery_tag)


def admin(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output.strip()


def test_requeue_and_reap_on_amqp(
    topics: dict,
    cli_env: Settings,
    rabbit_fleet: tuple[Settings, Fleet],
    own_rabbitmq: OwnRabbitMQ,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    from textlstm.client import Client

    settings, fleet = rabbit_fleet
    rows = texts(12, seed=173)
    job = Client(settings.model_copy(update={"message_max_items": 4})).submit(rows, model="topics")
    assert own_rabbitmq.depth(settings.queue) == 3  # confirmed, 4 items per message

    code, out = admin("jobs", "requeue", str(job))
    assert (code, out) == (
        0,
        f"job {job}: queued, 12 of 12 item(s) have no row; 12 waiting in a queue (left alone)",
    )
    assert own_rabbitmq.depth(settings.queue) == 3  # the scan put every message back

    lose_one_message(own_rabbitmq, settings.queue)  # items 0-3: in no queue, no row
    code, out = admin("jobs", "requeue", str(job))
    assert code == 1  # items are missing from everywhere a client can see
    assert out.startswith(
        f"job {job}: queued, 12 of 12 item(s) have no row; 8 waiting in a queue (left alone); "
        "4 in no queue (RabbitMQ shows no client the messages delivered to a worker and not "
        "acked, and redelivers them itself"
    ), out
    assert out.endswith("pass --input to re-send them): 0, 1, 2, 3"), out

    code, out = admin("jobs", "reap", "--older-than", "0s", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["job_id"] == str(job)
    assert {k: doc[k] for k in ("missing", "waiting", "unacked", "lost", "requeued")} == {
        "missing": 12, "waiting": 8, "unacked": None, "lost": 4, "requeued": 0
    }  # fmt: skip
    code, out = admin("jobs", "reap", "--older-than", "0s", "--requeue")
    assert code == 0 and "4 in no queue" in out and "re-sent" not in out, out
    assert own_rabbitmq.depth(settings.queue) == 2  # reap sent nothing: no texts to send

    source = tmp_path / "in.csv"
    with source.open("w", newline="") as f:
        csv.writer(f).writerows([["text"], *[[t] for t in rows]])
    code, out = admin("jobs", "requeue", str(job), "--input", str(source))
    assert (code, out) == (
        0,
        f"job {job}: queued, 12 of 12 item(s) have no row; 8 waiting in a queue (left alone); "
        "4 re-sent from --input",
    )
    assert own_rabbitmq.depth(settings.queue) == 3  # confirmed before requeue returned

    # Five scans above, none counted as a delivery (each message is published again with the
    # returns it had, textlstm.ops.amqp_scan): at three the worker would quarantine them.
    worker = fleet.start("--batch-max-items", "8")
    st = wait_job(settings, job, timeout=120)
    assert (st.status, st.ok) == ("done", 12)
    assert_exactly_once(session_factory, {job: 12})
    wait_until(lambda: own_rabbitmq.depth(settings.queue) == 0, 30, "the queue drained")
    code, out = admin("jobs", "requeue", str(job))
    assert (code, out) == (0, f"job {job}: done, every item has a row; nothing to requeue")
    assert worker.alive()


def test_dead_letters_on_amqp_list_show_requeue_purge(
    topics: dict, cli_env: Settings, own_rabbitmq: OwnRabbitMQ
) -> None:
    """The dead-letter queue through `textlstm-admin dead-letters`: a message RabbitMQ
    dead-lettered itself (rejected) and a record a worker published (a failed write) are both
    listed and shown with their job; `requeue` sends one back to its queue (validated again)
    and takes it off the dead-letter queue, `purge` deletes the rest; reading puts back what
    it does not settle."""
    from kombu import Connection

    from textlstm.broker_options import amqp_dead_letter_queue, amqp_topology, check_amqp_queues
    from textlstm.ops.amqp_deadletters import DeadLetterPublisher
    from textlstm.wire.deadletters import DeadLetter

    settings = cli_env
    url, dead = settings.broker_url, amqp_dead_letter_queue(settings.queue)
    # What a worker declares at start-up (the dead-letter queue with the others).
    check_amqp_queues(
        url, amqp_topology(settings.queue, settings.worker_max_deliveries), create=True
    )
    assert admin("dead-letters", "list") == (0, "no dead letters")
    job = submit(settings, texts(4, seed=190), per_message=2)  # two messages
    with Connection(url, connect_timeout=5) as conn:
        channel = conn.channel()
        rejected = channel.basic_get(queue=settings.queue, no_ack=False)
        channel.basic_reject(rejected.delivery_tag, requeue=False)  # RabbitMQ dead-letters it
        taken = channel.basic_get(queue=settings.queue, no_ack=False)
        part = json.loads(taken.body)[0][0]
        record = DeadLetter.new("store", "could not be stored: the write failed", job_id=str(job),
                                body=part)  # fmt: skip
        assert DeadLetterPublisher(url, settings.queue, {}).publish([record])
        channel.basic_ack(taken.delivery_tag)
    wait_until(lambda: own_rabbitmq.depth(dead) == 2, 10, "two dead letters")

    code, out = admin("dead-letters", "list", "--json")
    assert code == 0, out
    listed = [json.loads(line) for line in out.splitlines()]
    assert [d["stage"] for d in listed] == ["store", "body"]  # newest first
    assert {d["job_id"] for d in listed} == {str(job)}
    assert "a worker rejected it" in listed[1]["reason"]
    code, out = admin("dead-letters", "list")
    assert code == 0 and record.id in out and "store" in out, out
    code, out = admin("dead-letters", "show", listed[1]["id"])
    assert code == 0 and json.loads(out)["job_id"] == str(job), out
    assert own_rabbitmq.depth(dead) == 2  # read and put back

    assert admin("dead-letters", "requeue", listed[1]["id"]) == (0, "requeued 1 message(s)")
    assert own_rabbitmq.depth(settings.queue) == 1 and own_rabbitmq.depth(dead) == 1
    code, out = admin("dead-letters", "requeue", "no-such-id")
    assert code == 1 and "not found: no-such-id" in out, out
    assert admin("dead-letters", "purge", record.id) == (0, "purged 1 dead letter(s)")
    assert admin("dead-letters", "purge", "--all") == (0, "purged 0 dead letter(s)")
    assert admin("dead-letters", "list") == (0, "no dead letters")
