"""The batching producer (textlstm.client.producer) and the version 2 envelope, against the real
Redis and, where jobs are recorded, the real databases."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import queued
from textlstm.client.producer import Producer
from textlstm.errors import BrokerError, NotFoundError, ValidationError
from textlstm.settings import Settings
from textlstm.store.jobs import get_job
from textlstm.store.registry import register_bundle
from textlstm.wire.messages import ENVELOPE_VERSION, Limits, parse_body


def settings_for(redis_url: str, queue: str, **kw: Any) -> Settings:
    return Settings(_env_file=None, broker_url=redis_url, queue=queue, **kw)  # type: ignore[call-arg]


def bodies(redis_client: Any, queue: str) -> list[dict[str, Any]]:
    out = []
    for env in queued(redis_client, queue):
        args, kwargs, _ = json.loads(base64.b64decode(env["body"]))
        assert kwargs == {} and len(args) == 1
        out.append(args[0])
    return out


def test_small_jobs_are_coalesced_into_envelopes_of_max_items(
    redis_client: Any, redis_url: str, queue_name: str, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    with Producer(settings_for(redis_url, queue_name), linger_ms=10_000, max_items=8) as p:
        jobs = [p.submit([f"text {i}"], model="sent") for i in range(20)]
        # Two full envelopes went out as the buffer filled; four jobs wait for the linger.
        assert redis_client.llen(queue_name) == 2
    sent = bodies(redis_client, queue_name)  # close() flushed the rest
    assert [b["schema_version"] for b in sent] == [ENVELOPE_VERSION] * 3
    assert [len(b["messages"]) for b in sent] == [8, 8, 4]
    parsed = [m for b in sent for m in parse_body(b, limits=Limits()).messages]
    assert [m.job_id for m in parsed] == jobs
    assert [(m.total, m.items[0].text) for m in parsed] == [(1, f"text {i}") for i in range(20)]
    assert (p.sent_messages, p.sent_jobs) == (3, 20)


def test_linger_sends_a_partial_buffer_and_a_lone_job_goes_as_version_1(
    redis_client: Any, redis_url: str, queue_name: str
) -> None:
    p = Producer(settings_for(redis_url, queue_name), linger_ms=50)
    try:
        start = time.monotonic()
        p.submit(["alone"], model="sent")
        while not redis_client.llen(queue_name):
            assert time.monotonic() - start < 5, "the linger thread never sent the job"
            time.sleep(0.005)
        waited = time.monotonic() - start
        assert 0.04 <= waited < 1.0
        (body,) = bodies(redis_client, queue_name)
        assert body["schema_version"] == 1 and body["items"][0]["text"] == "alone"
    finally:
        p.close()
    p.close()  # twice is fine


def test_big_jobs_priorities_and_threads(
    redis_client: Any, redis_url: str, queue_name: str
) -> None:
    s = settings_for(redis_url, queue_name, message_max_items=4)
    with Producer(s, linger_ms=10_000) as p:
        big = p.submit([f"t{i}" for i in range(10)], model="sent")  # 3 parts of one job
        urgent = p.submit(["now"], model="sent", priority="high")

        def burst(k: int) -> None:
            for i in range(25):
                p.submit([f"{k}-{i}"], model="sent")

        threads = [threading.Thread(target=burst, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    normal = [
        m
        for b in bodies(redis_client, queue_name)
        for m in parse_body(b, limits=Limits(message_max_items=4)).messages
    ]
    high = [
        m
        for b in bodies(redis_client, f"{queue_name}.high")
        for m in parse_body(b, limits=Limits()).messages
    ]
    assert [m.job_id for m in high] == [urgent]
    assert sorted(i.index for m in normal if m.job_id == big for i in m.items) == list(range(10))
    texts = sorted(m.items[0].text for m in normal if m.job_id != big)
    assert texts == sorted(f"{k}-{i}" for k in range(4) for i in range(25))
    # Every envelope holds at most message_max_items items.
    for b in bodies(redis_client, queue_name):
        parts = b["messages"] if b["schema_version"] == 2 else [b]
        assert sum(len(m["items"]) for m in parts) <= 4


def test_bad_jobs_raise_at_submit_and_nothing_is_buffered(
    redis_client: Any, redis_url: str, queue_name: str
) -> None:
    with Producer(settings_for(redis_url, queue_name, max_text_chars=10), linger_ms=0) as p:
        with pytest.raises(ValidationError, match="item 0: text is 11 characters"):
            p.submit(["x" * 11], model="sent")
        with pytest.raises(ValidationError, match="job is empty"):
            p.submit([], model="sent")
        with pytest.raises(ValidationError, match="priority"):
            p.submit(["ok"], model="sent", priority="urgent")
    assert redis_client.llen(queue_name) == 0


def test_job_rows_in_bulk_and_unknown_models_refused(
    db_url: str,
    redis_client: Any,
    redis_url: str,
    queue_name: str,
    session_factory: sessionmaker[Session],
    fake_bundle: Path,
) -> None:
    with session_factory.begin() as s:
        register_bundle(session=s, path=fake_bundle, name="sent", aliases=["production"])
    s = settings_for(redis_url, queue_name, database_url=db_url)
    with Producer(s, linger_ms=10_000) as p:
        with pytest.raises(NotFoundError, match="no alias 'staging'"):
            p.submit(["a"], model="sent@staging")
        jobs = [p.submit([f"t{i}"], model="sent@production", metadata={"n": i}) for i in range(30)]
    with session_factory() as sess:
        rows = [get_job(session=sess, job_id=j) for j in jobs]
    assert [(r.status, r.expected_count, r.meta) for r in rows] == [
        ("queued", 1, {"n": i}) for i in range(30)
    ]
    assert len(bodies(redis_client, queue_name)) == 1  # 30 jobs, one envelope


def test_a_broker_outage_keeps_the_jobs_and_says_so(queue_name: str) -> None:
    s = settings_for("redis://127.0.0.1:1/0", queue_name)  # nothing listens on port 1
    p = Producer(s, linger_ms=10_000)
    p.submit(["kept"], model="sent")
    with pytest.raises(BrokerError, match="could not enqueue 1 buffered job part"):
        p.flush()
    assert sum(len(b.messages) for b in p._buffers.values()) == 1  # still buffered
    with pytest.raises(BrokerError):
        p.close()


def test_envelope_parts_are_validated_one_by_one() -> None:
    job = str(uuid.uuid4())
    good = {
        "schema_version": 1,
        "job_id": job,
        "model": "m",
        "total": 1,
        "items": [{"index": 0, "text": "fine"}],
    }
    bad_index = {**good, "job_id": str(uuid.uuid4()), "items": [{"index": 5, "text": "x"}]}
    nested = {"schema_version": 2, "messages": [good]}
    parsed = parse_body(
        {"schema_version": 2, "messages": [good, bad_index, nested, "junk"]}, limits=Limits()
    )
    assert [str(m.job_id) for m in parsed.messages] == [job]
    reasons = [str(e) for _, e in parsed.rejected]
    assert reasons[0].startswith("envelope part 1: message item 0: index 5")
    assert reasons[1].startswith("envelope part 2: must be a schema_version 1 message")
    assert reasons[2].startswith("envelope part 3: message must be a JSON object")
    for body, error in [
        ({"schema_version": 2}, "non-empty list"),
        ({"schema_version": 2, "messages": []}, "non-empty list"),
        ({"schema_version": 2, "messages": [good] * 3}, "carries 3 messages; the limit is 2"),
        ({"schema_version": 3, "messages": [good]}, "unsupported message schema_version 3"),
    ]:
        with pytest.raises(ValidationError, match=error):
            parse_body(body, limits=Limits(message_max_items=2))
