"""One publisher and one Celery app for the whole client side (issue 15, deliverable 5).

`Client.submit`, the batching `Producer` and `jobs requeue` (`textlstm.ops.recovery`) all send
through `textlstm.client.publisher`, on the app of `textlstm.client.celery_app`, which
`textlstm-admin status` asks the workers with too. Shown three ways: on the source (nothing
else in textlstm builds a Celery app or sends a task), on the wire (a real Redis: what each of
the three puts in the queue has the same shape, headers and task-id rule), and in an outage
(each raises the same one-line BrokerError with the password masked).
"""

from __future__ import annotations

import ast
import base64
import json
import re
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import queued
from textlstm.client import Client, Producer
from textlstm.client.backpressure import Gate
from textlstm.client.celery_app import client_app
from textlstm.client.publisher import publish_messages
from textlstm.errors import BrokerError
from textlstm.ops.recovery import requeue_job
from textlstm.settings import Settings
from textlstm.store.jobs import ensure_job
from textlstm.wire.messages import (
    ENVELOPE_VERSION,
    TASK_NAME,
    ClassifyMessage,
    Item,
    Limits,
    parse_body,
)

PACKAGE = Path(__file__).resolve().parents[2] / "textlstm"
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def settings_for(broker_url: str, queue: str, **kw: Any) -> Settings:
    return Settings(
        _env_file=None,
        broker_url=broker_url,
        queue=queue,
        message_max_items=2,  # type: ignore[call-arg]
        **kw,
    )


def _calls(path: Path) -> set[str]:
    """Names called in `path`: `Celery(...)` -> "Celery", `app.send_task(...)` -> "send_task"."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            out.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return out


def test_only_the_publisher_sends_and_only_the_factory_builds_an_app() -> None:
    senders, builders = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        calls = _calls(path)
        rel = str(path.relative_to(PACKAGE.parent))
        if calls & {"send_task", "producer_or_acquire", "send_task_message"}:
            senders.append(rel)
        if "Celery" in calls:
            builders.append(rel)
    assert senders == ["textlstm/client/publisher.py"]
    assert builders == ["textlstm/client/celery_app.py"]


def test_one_app_per_broker_url(redis_url: str) -> None:
    a = client_app(settings_for(redis_url, "q1"))
    assert client_app(settings_for(redis_url, "q2", default_model="m")) is a
    other = client_app(settings_for("redis://127.0.0.1:1/0", "q1"))
    assert other is not a
    for app in (a, other):
        assert app.conf.task_serializer == "json" and list(app.conf.accept_content) == ["json"]
        assert app.conf.result_backend is None and app.conf.task_ignore_result
    # Sent by name: the client registers no task. Asked in a fresh interpreter, because a
    # test process that imported worker.tasks has Celery's shared task on every app it makes.
    probe = (
        "from textlstm.client.celery_app import client_app; from textlstm.settings import "
        "Settings; app = client_app(Settings(broker_url='redis://127.0.0.1:1/0', "
        f"_env_file=None)); app.finalize(); print({TASK_NAME!r} in app.tasks)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def _decoded(redis_client: Any, queue: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(kombu envelope, task body) for each message waiting in `queue`, oldest first."""
    out = []
    for env in queued(redis_client, queue):
        args, kwargs, _embed = json.loads(base64.b64decode(env["body"]))
        assert kwargs == {} and len(args) == 1
        out.append((env, args[0]))
    return out


def _shape(env: dict[str, Any]) -> tuple[Any, ...]:
    """The parts of a kombu envelope that do not depend on what it carries."""
    h = env["headers"]
    return (
        env["content-type"],
        env["content-encoding"],
        tuple(sorted(env)),
        tuple(sorted(h)),
        tuple(sorted(env["properties"])),
        h["task"],
        h["kwargsrepr"],
        h["ignore_result"],
    )


@SQLITE
def test_client_producer_and_requeue_put_the_same_kind_of_message_on_the_wire(
    redis_client: Any,
    redis_url: str,
    queue_name: str,
    db_url: str,
    session_factory: sessionmaker[Session],
) -> None:
    s = settings_for(redis_url, queue_name, database_url=db_url)
    # Client: a 3-item job at high priority -> 2 version 1 messages on <queue>.high.
    job_c = Client(s).submit(["a", "b", "c"], model="m", priority="high", record_job=False)
    # Producer: two one-text jobs -> 1 version 2 envelope on <queue>.
    with Producer(s, linger_ms=10_000, record_jobs=False) as p:
        job_p = [p.submit([t], model="m") for t in ("x", "y")]
    # Recovery: a recorded 3-item job with no row and no copy in the broker, re-sent from its
    # input -> 2 version 1 messages on <queue>.
    job_r = uuid.uuid4()
    with session_factory.begin() as sess:
        ensure_job(
            session=sess,
            job_id=job_r,
            model_ref="m",
            expected=3,
            metadata=None,
            submitted_at=datetime.now(UTC),
        )
    report = requeue_job(job_r, settings=s, input_texts=["r0", "r1", "r2"])
    assert (report.from_input, report.messages_sent) == (3, 2)

    high = _decoded(redis_client, f"{queue_name}.high")
    normal = _decoded(redis_client, queue_name)
    assert len(high) == 2 and len(normal) == 3
    client_msgs, producer_msg, recovery_msgs = high, normal[0], normal[1:]

    # One shape whoever sent it: JSON, the same header and property names, the task by name.
    (shape,) = {_shape(env) for env, _ in [*high, *normal]}
    assert shape[:2] == ("application/json", "utf-8") and shape[5:] == (TASK_NAME, "{}", None)
    # Each on its priority's queue.
    routing = [env["properties"]["delivery_info"]["routing_key"] for env, _ in [*high, *normal]]
    assert routing == [f"{queue_name}.high"] * 2 + [queue_name] * 3

    limits = Limits()
    for job, msgs in ((job_c, client_msgs), (job_r, recovery_msgs)):
        firsts = []
        for env, body in msgs:
            (msg,) = parse_body(body, limits=limits).messages
            first, n = msg.items[0].index, len(msg.items)
            firsts.append(first)
            assert msg.job_id == job and body["schema_version"] == 1
            # A re-sent chunk keeps its task id; the texts stay out of the headers.
            assert env["headers"]["id"] == str(uuid.uuid5(job, str(first)))
            assert env["headers"]["argsrepr"] == f"<job {job} items {first}+{n}>"
        assert firsts == [0, 2]
    env, body = producer_msg
    assert body["schema_version"] == ENVELOPE_VERSION
    assert [m.job_id for m in parse_body(body, limits=limits).messages] == job_p
    assert env["headers"]["argsrepr"] == "<envelope of 2 job(s)>"
    for env, _ in [*high, *normal]:
        assert not re.search(r"\b(a|b|c|x|y|r0|r1|r2)\b", json.dumps(env["headers"]))


def test_threads_share_one_client_and_its_app(
    redis_client: Any, redis_url: str, queue_name: str
) -> None:
    """More threads than the pool has connections (10): each send waits for a free one."""
    client = Client(settings_for(redis_url, queue_name))
    jobs: list[uuid.UUID] = []
    errors: list[BaseException] = []
    start = threading.Barrier(12)

    def send(n: int) -> None:
        try:
            start.wait(timeout=10)
            jobs.append(client.submit([f"t{n}", "u", "v"], model="m", record_job=False))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == [] and len(jobs) == 12
    sent = [
        parse_body(body, limits=Limits()).messages[0]
        for _, body in _decoded(redis_client, queue_name)
    ]
    assert len(sent) == 24
    assert {m.job_id for m in sent} == set(jobs)


def test_a_call_is_refused_before_sending_when_its_queue_is_ambiguous(
    redis_client: Any, redis_url: str, queue_name: str
) -> None:
    s = settings_for(redis_url, queue_name)
    now, job = datetime.now(UTC), uuid.uuid4()
    high = ClassifyMessage(job, "m", 2, (Item(0, "a"),), None, now, "high")
    bulk = ClassifyMessage(job, "m", 2, (Item(1, "b"),), None, now, "bulk")
    with pytest.raises(ValueError, match="one priority"):
        publish_messages(s, [high, bulk])
    gate = Gate(queue=queue_name, limit=0, policy="refuse", timeout_s=0, depth=lambda: 0)
    with pytest.raises(ValueError, match="gate of queue"):
        publish_messages(s, [high], gate=gate)  # high goes to <queue>.high, not <queue>
    assert list(redis_client.scan_iter(match=f"*{queue_name}*")) == []


ONE_LINE = re.compile(r"could not [^\n]+ on broker redis://:\*\*\*@127\.0\.0\.1:1/0: [^\n]+")


@SQLITE
def test_a_broker_outage_is_the_same_one_line_error_from_every_producer(
    queue_name: str, db_url: str, session_factory: sessionmaker[Session]
) -> None:
    s = settings_for("redis://:hunter2@127.0.0.1:1/0", queue_name, database_url=db_url)
    errors: dict[str, BrokerError] = {}

    with pytest.raises(BrokerError) as info:
        Client(s).submit(["a"], model="m", record_job=False)
    errors["client"] = info.value

    p = Producer(s, linger_ms=10_000, record_jobs=False)
    p.submit(["a"], model="m")
    with pytest.raises(BrokerError) as info:
        p.flush()
    errors["producer"] = info.value
    with pytest.raises(BrokerError):
        p.close()  # still buffered: the close tries again, and says so

    job = uuid.uuid4()
    with session_factory.begin() as sess:
        ensure_job(
            session=sess,
            job_id=job,
            model_ref="m",
            expected=1,
            metadata=None,
            submitted_at=datetime.now(UTC),
        )
    with pytest.raises(BrokerError) as info:
        requeue_job(job, settings=s, input_texts=["a"])
    errors["requeue"] = info.value

    for who, exc in errors.items():
        assert ONE_LINE.fullmatch(str(exc)), (who, str(exc))
        assert "hunter2" not in str(exc), who
        assert exc.__cause__ is None and exc.__suppress_context__, who  # no kombu chain
    causes = {str(exc).rsplit(": ", 1)[1] for exc in errors.values()}
    assert len(causes) == 1, causes  # the same refused connection, said the same way
