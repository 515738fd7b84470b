"""`textlstm-admin dead-letters` against a real Redis: list, show, requeue (a raw entry back to
its list exactly as it was; an envelope part validated again and published), purge, and
one-line errors."""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from click.testing import CliRunner

from textlstm.cli import cli
from textlstm.wire.deadletters import DeadLetter, dead_letter_key
from worker.envelope import Accepted, inspect


def part(job: uuid.UUID) -> dict:
    return {"schema_version": 1, "job_id": str(job), "model": "topics", "total": 1,
            "items": [{"index": 0, "text": "goal"}]}  # fmt: skip


@pytest.fixture
def records(redis_client: redis.Redis, queue_name: str) -> list[DeadLetter]:
    job = uuid.uuid4()
    made = [
        DeadLetter.new("envelope", "headers must be an object, got list", id="tag-1",
                       list=queue_name, entry='{"headers": []}'),
        DeadLetter.new("part", "envelope part 1: message field 'model': missing", body=part(job),
                       job_id=str(job)),
        DeadLetter.new("store", "nothing to put back"),
    ]  # fmt: skip
    redis_client.lpush(dead_letter_key(queue_name), *(r.to_json() for r in reversed(made)))
    return made


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_list_show_requeue_and_purge(
    settings_env: str, records: list[DeadLetter], redis_client: redis.Redis, queue_name: str
) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["dead-letters", "list"])
    assert out.exit_code == 0, out.output
    assert "tag-1" in out.output and "envelope" in out.output and "part" in out.output
    lines = runner.invoke(cli, ["dead-letters", "list", "--json"]).output.splitlines()
    assert [json.loads(x)["stage"] for x in lines] == ["envelope", "part", "store"]
    assert "entry" not in json.loads(lines[0])

    shown = json.loads(runner.invoke(cli, ["dead-letters", "show", "tag-1"]).output)
    assert shown["entry"] == '{"headers": []}' and shown["list"] == queue_name

    missing = runner.invoke(cli, ["dead-letters", "show", "nope"])
    assert missing.exit_code == 1 and missing.output.count("\n") == 1
    assert "dead letter nope not found" in missing.output

    out = runner.invoke(cli, ["dead-letters", "requeue", "tag-1", records[1].id])
    assert out.exit_code == 0 and "requeued 2 message(s)" in out.output, out.output
    queued = redis_client.lrange(queue_name, 0, -1)
    assert b'{"headers": []}' in queued  # the raw entry, exactly as it was taken
    published = [inspect(e) for e in queued if e != b'{"headers": []}']
    assert len(published) == 1 and isinstance(published[0], Accepted)
    assert published[0].body[0][0]["job_id"] == records[1].body["job_id"]

    out = runner.invoke(cli, ["dead-letters", "requeue", records[2].id])
    assert "holds no message to requeue" in out.output  # left on the list
    assert redis_client.llen(dead_letter_key(queue_name)) == 1

    assert "purged 1" in runner.invoke(cli, ["dead-letters", "purge", "--all"]).output
    assert runner.invoke(cli, ["dead-letters", "list"]).output.strip() == "no dead letters"
    usage = runner.invoke(cli, ["dead-letters", "purge"])
    assert usage.exit_code == 2 and "--all" in usage.output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_part_still_invalid_is_not_requeued(
    settings_env: str, redis_client: redis.Redis, queue_name: str
) -> None:
    bad = {**part(uuid.uuid4()), "total": 0}
    record = DeadLetter.new("part", "total 0", body=bad)
    redis_client.lpush(dead_letter_key(queue_name), record.to_json())
    out = CliRunner().invoke(cli, ["dead-letters", "requeue", record.id])
    assert out.exit_code == 1 and "total" in out.output and out.output.count("\n") == 1
    assert redis_client.llen(dead_letter_key(queue_name)) == 1
    assert redis_client.llen(queue_name) == 0


def test_an_unreachable_broker_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from textlstm.settings import get_settings

    monkeypatch.setenv("TEXTLSTM_BROKER_URL", "redis://user:secret@127.0.0.1:1/0")
    get_settings.cache_clear()
    out = CliRunner().invoke(cli, ["dead-letters", "list"])
    get_settings.cache_clear()
    assert out.exit_code == 1 and out.output.count("\n") == 1, out.output
    assert "could not reach the broker" in out.output and "secret" not in out.output
