"""Issue 17 deliverable 2: producer backpressure on amqp:// (the test's own RabbitMQ node, no
worker: nothing drains the queue). The depth is the queue's ready `message_count` from a
passive `queue.declare`, against the same TEXTLSTM_QUEUE_MAX_PENDING, with the same one-line
refusals as on Redis (tests/ops/test_backpressure.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fixtures.jobs import texts
from textlstm.cli import cli
from textlstm.client import Client
from textlstm.errors import QueueFullError
from textlstm.settings import Settings, get_settings
from textlstm.testing.rabbitmq import OwnRabbitMQ

pytestmark = [pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def test_refuse_and_block_read_the_rabbitmq_queue_depth(
    e2e_settings: Settings,
    own_rabbitmq: OwnRabbitMQ,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    s = e2e_settings.model_copy(
        update={
            "broker_url": own_rabbitmq.url,
            "message_max_items": 4,
            "queue_max_pending": 5,
            "queue_full_policy": "refuse",
        }
    )
    q = s.queue
    client = Client(s)
    client.submit(texts(12, seed=174), model="topics", record_job=False)  # 3 messages
    assert own_rabbitmq.depth(q) == 3

    with pytest.raises(QueueFullError) as refused:
        client.submit(texts(12, seed=175), model="topics", record_job=False)
    assert str(refused.value) == (
        f"queue {q!r} holds 3 pending messages; 3 more would pass the limit of 5 "
        "(TEXTLSTM_QUEUE_MAX_PENDING). Nothing was sent: retry later, add workers, or use "
        "TEXTLSTM_QUEUE_FULL_POLICY=block"
    )
    assert own_rabbitmq.depth(q) == 3  # all or nothing

    with pytest.raises(QueueFullError) as blocked:
        client.submit(texts(12, seed=176), model="topics", record_job=False, on_full="block",
                      full_timeout=0.5)  # fmt: skip
    assert str(blocked.value).startswith(
        f"queue {q!r} still holds 5 pending messages (limit 5, TEXTLSTM_QUEUE_MAX_PENDING) "
        "after waiting 0.5s; sent 2 of 3 message(s) of this job."
    )
    assert own_rabbitmq.depth(q) == 5  # what fitted was sent (and confirmed)

    # The command line: the same refusal, as one line.
    monkeypatch.setenv("TEXTLSTM_BROKER_URL", own_rabbitmq.url)
    monkeypatch.setenv("TEXTLSTM_QUEUE", q)
    monkeypatch.setenv("TEXTLSTM_QUEUE_MAX_PENDING", "5")
    monkeypatch.setenv("TEXTLSTM_MESSAGE_MAX_ITEMS", "4")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("text\n" + "\n".join(texts(4, seed=177)) + "\n")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["submit", "in.csv", "--model", "topics"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: queue {q!r} holds 5 pending messages; 1 more would pass the limit of 5 "
        "(TEXTLSTM_QUEUE_MAX_PENDING). Nothing was sent: retry later, add workers, or use "
        "TEXTLSTM_QUEUE_FULL_POLICY=block"
    ]
    assert own_rabbitmq.depth(q) == 5
