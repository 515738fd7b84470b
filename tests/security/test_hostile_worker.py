"""Issue 6 item 2 on a real worker: hostile messages are each rejected with a clear reason
(stored on the job when its id is readable), the worker stays up, and valid neighbours are
unaffected. A pickle payload is refused by content type and never deserialised: its
`__reduce__` would create a file, and the file never appears.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import (
    assert_exactly_once,
    assert_queue_drained,
    msg,
    stored,
    submit,
    task_body,
    texts,
    wait_job,
)
from tests.fixtures.workers import Fleet
from textlstm.settings import Settings
from textlstm.testing.redis_server import OwnRedis
from textlstm.wire.deadletters import DeadLetter, dead_letter_key
from textlstm.wire.messages import TASK_NAME


class Boom:
    """Pickles to a call that creates `path`: proof of execution if it is ever unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def publish(url: str, queue: str, body: bytes, content_type: str, **headers: Any) -> None:
    """A raw kombu publish: any body bytes under any content type, as a hostile producer."""
    from kombu import Connection, Queue

    with Connection(url) as conn:
        conn.Producer().publish(
            body,
            routing_key=queue,
            exchange="",
            content_type=content_type,
            content_encoding="binary" if content_type != "application/json" else "utf-8",
            headers={"task": TASK_NAME, "id": str(uuid.uuid4()), **headers},
            declare=[Queue(queue)],
        )


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_hostile_messages_are_refused_and_valid_neighbours_finish(
    topics: dict,
    e2e_settings: Settings,
    worker_env: dict[str, str],
    own_redis: OwnRedis,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    import pickle

    settings = e2e_settings.model_copy(update={"broker_url": own_redis.url})
    url, q = own_redis.url, settings.queue
    env = {**worker_env, "TEXTLSTM_BROKER_URL": url, "TEXTLSTM_WORKER_VISIBILITY_TIMEOUT_S": "600"}
    fleet = Fleet(env, tmp_path)
    marker = tmp_path / "pwned"
    try:
        w = fleet.start("--batch-max-items", "4096")
        before = submit(settings, texts(40, seed=150), per_message=3)
        jobs = {k: uuid.uuid4() for k in ("version", "big", "types", "dup", "nul", "sur")}
        sql = "'; DROP TABLE predictions; --\" \\ %s $1 ?"
        ok_jobs = {k: uuid.uuid4() for k in ("sql", "control", "blank", "huge", "extra")}
        bodies = [
            (b"\x80\x81 not json {", "application/json"),
            (pickle.dumps(([Boom(marker)], {}, {})), "application/x-python-serialize"),
            (b"!!python/object/apply:os.system ['touch pwned']", "application/x-yaml"),
            (task_body("not an object"), "application/json"),
            (task_body(msg(jobs["version"], [{"index": 0, "text": "a"}], schema_version=9)), ""),
            (task_body(msg(jobs["big"], [{"index": 0, "text": "x" * 10_000_000}])), ""),
            (
                task_body(msg(jobs["types"], [{"index": 0, "text": 42}, {"index": 1, "text": []}])),
                "",
            ),
            (
                task_body(
                    msg(jobs["dup"], [{"index": 0, "text": "a"}, {"index": 0, "text": "b"}], 1)
                ),
                "",
            ),
            (task_body(msg(jobs["nul"], [{"index": 0, "id": "a\x00", "text": "a"}])), ""),
            (
                task_body(msg(jobs["sur"], [{"index": 0, "text": "a"}], metadata={"k": "\ud800"})),
                "",
            ),
            (task_body(msg(uuid.uuid4(), [{"index": 0, "text": "a"}]), {"extra": 1}), ""),
            (task_body({"schema_version": 1, "job_id": str(uuid.uuid4())}), ""),
            # Accepted: stored verbatim / as `empty text` errors / classified.
            (
                task_body(
                    msg(ok_jobs["sql"], [{"index": 0, "id": sql, "text": sql}], metadata={sql: sql})
                ),
                "",
            ),
            (
                task_body(
                    msg(ok_jobs["control"], [{"index": 0, "text": "\x00\x1b[2J\u202e\ud800 goal"}])
                ),
                "",
            ),
            (
                task_body(
                    msg(ok_jobs["blank"], [{"index": 0, "text": ""}, {"index": 1, "text": " \n\t"}])
                ),
                "",
            ),
            (
                task_body(
                    msg(ok_jobs["huge"], [{"index": i, "text": "match"} for i in range(100_000)])
                ),
                "",
            ),
            (task_body(msg(ok_jobs["extra"], [{"index": 0, "text": "a", "x": 1}], future=1)), ""),
        ]
        for body, ctype in bodies:
            publish(url, q, body, ctype or "application/json")
        after = submit(settings, texts(40, seed=151), per_message=3)
        for j in (before, after, *ok_jobs.values()):
            wait_job(settings, j, timeout=120)
        assert_exactly_once(session_factory, {before: 40, after: 40})

        reasons = {
            "version": "unsupported message schema_version 9",
            "big": "text is 10000000 characters; the limit is 20000",
            "types": "item 0: text must be a string, got int",
            "dup": "index 0 is out of range or repeated",
            "nul": "id contains a NUL character",
            "sur": "metadata contains a lone surrogate",
        }
        for key, reason in reasons.items():
            st = wait_job(settings, jobs[key], timeout=30)
            assert st.status == "failed", key
            rows = stored(session_factory, jobs[key])
            assert rows and all(r.error.startswith("message rejected: ") for r in rows), key
            assert all(reason in r.error for r in rows), (key, rows[0].error)
            assert all(r.error.count("message rejected") == 1 for r in rows), rows[0].error
        w.wait_for(
            lambda log: log.count("rejected message") + log.count("dead-lettered a message") >= 12,
            30,
            "12 refusals logged",
        )
        # Every refused message is on the dead-letter list, with its reason; the pickle and
        # the YAML are refused by their content type before kombu could decode them.
        c = own_redis.client()
        records = [DeadLetter.from_json(r) for r in c.lrange(dead_letter_key(q), 0, -1)]
        assert len(records) == 12, [r.reason for r in records]
        reasons_seen = " | ".join(r.reason for r in records)
        assert "content-type 'application/x-python-serialize' is not accepted" in reasons_seen
        assert "content-type 'application/x-yaml' is not accepted" in reasons_seen
        assert "body is not UTF-8" in reasons_seen
        assert all(r.entry for r in records)
        c.close()
        assert not marker.exists(), "the pickle payload was deserialised"

        row = stored(session_factory, ok_jobs["sql"])[0]
        assert row.external_id == sql and row.status == "ok"
        assert wait_job(settings, ok_jobs["sql"]).metadata == {sql: sql}
        assert stored(session_factory, ok_jobs["control"])[0].status == "ok"
        blank = stored(session_factory, ok_jobs["blank"])
        assert [r.error for r in blank] == ["empty text: nothing to classify"] * 2
        assert_exactly_once(session_factory, {ok_jobs["huge"]: 100_000})
        assert wait_job(settings, ok_jobs["extra"]).status == "done"
        c = own_redis.client()
        assert_queue_drained(c, [q])
        c.close()
        assert w.alive()
    finally:
        fleet.close()


def test_pickle_payload_fixture_really_executes_when_unpickled(tmp_path: Path) -> None:
    """The control: the same payload, unpickled on purpose, does create the file."""
    import pickle

    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(Boom(marker)))
    assert marker.exists()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_job_id_sent_with_two_totals_fails_alone_and_is_dead_lettered(
    own_fleet: tuple[Settings, Fleet], own_redis: OwnRedis, session_factory: sessionmaker[Session]
) -> None:
    """Two messages of one new job id that disagree on the total land in one micro-batch:
    the first is stored, the other is dead-lettered with why, and every neighbour in that
    batch is stored in the same round."""
    from textlstm.testing.processes import paused

    settings, fleet = own_fleet
    w = fleet.start("--batch-max-items", "4096", "--batch-max-wait-ms", "2000")
    job = uuid.uuid4()
    with paused(w):
        before = submit(settings, texts(30, seed=170), per_message=3)
        publish(settings.broker_url, settings.queue,
                task_body(msg(job, [{"index": 0, "text": "a"}, {"index": 1, "text": "b"}])),
                "application/json")  # fmt: skip
        publish(settings.broker_url, settings.queue,
                task_body(msg(job, [{"index": 4, "text": "c"}], total=5)),
                "application/json")  # fmt: skip
        after = submit(settings, texts(30, seed=171), per_message=3)
    for j in (before, after):
        assert wait_job(settings, j, timeout=60).status == "done"
    assert_exactly_once(session_factory, {before: 30, after: 30, job: 2})
    c = own_redis.client()
    records = [DeadLetter.from_json(r) for r in c.lrange(dead_letter_key(settings.queue), 0, -1)]
    assert [(r.stage, r.job_id) for r in records] == [("store", str(job))]
    assert "already used by a job of 2 items" in records[0].reason
    assert records[0].body is not None and records[0].body["total"] == 5
    assert_queue_drained(c, [settings.queue])
    c.close()
    batches = w.batch_sizes()
    assert 63 in batches, batches  # all 63 items were one micro-batch
