"""Item 6: the producer refuses or blocks when a queue holds too many pending messages.

The gate's decisions are checked with a fake depth and clock; then `Client.submit` against the
real Redis (no worker: nothing drains the queue unless the test does)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from textlstm.client import Client
from textlstm.client.backpressure import Gate
from textlstm.errors import QueueFullError
from textlstm.settings import Settings


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def gate(depths: list[int], policy: str, limit: int = 10, timeout: float = 5.0) -> Gate:
    ft = FakeTime()
    it = iter(depths)
    last = [0]

    def depth() -> int:
        last[0] = next(it, last[0])
        return last[0]

    return Gate("q", limit, policy, timeout, depth, clock=ft.clock, sleep=ft.sleep, poll_s=1.0)


def test_no_limit_admits_everything_without_reading_the_depth() -> None:
    g = Gate("q", 0, "refuse", 1.0, depth=lambda: 1 / 0)  # type: ignore[arg-type,return-value]
    assert g.admit(500, sent=0, total=500) == 500


def test_refuse_is_all_or_nothing() -> None:
    assert gate([4], "refuse").admit(6, sent=0, total=6) == 6
    with pytest.raises(QueueFullError, match="holds 5 pending messages; 6 more would pass"):
        gate([5], "refuse").admit(6, sent=0, total=6)
    with pytest.raises(QueueFullError, match="job needs 11 messages"):
        gate([0], "refuse").admit(11, sent=0, total=11)


def test_block_sends_what_fits_waits_for_room_then_times_out() -> None:
    g = gate([8, 10, 10, 3], "block")
    assert g.admit(20, sent=0, total=20) == 2  # room for 2
    assert g.admit(18, sent=2, total=20) == 7  # waited two polls, then room for 7
    stuck = gate([10], "block", timeout=3.0)
    with pytest.raises(QueueFullError, match=r"after waiting 3s; sent 4 of 9"):
        stuck.admit(5, sent=4, total=9)


@pytest.fixture
def limited(redis_url: str, queue_name: str) -> Settings:
    return Settings(
        broker_url=redis_url,
        queue=queue_name,
        queue_max_pending=5,
        message_max_items=1,
        _env_file=None,  # type: ignore[call-arg]
    )


def test_submit_refuses_with_a_clear_error_and_sends_nothing(
    limited: Settings, redis_client: Any, queue_name: str
) -> None:
    client = Client(limited)
    client.submit(["a", "b", "c"], model="m")
    assert redis_client.llen(queue_name) == 3
    with pytest.raises(QueueFullError) as err:
        client.submit(["d", "e", "f"], model="m")
    assert f"queue '{queue_name}' holds 3 pending messages" in str(err.value)
    assert "TEXTLSTM_QUEUE_MAX_PENDING" in str(err.value)
    assert redis_client.llen(queue_name) == 3  # nothing of the refused job was sent
    # Other priorities have their own queue and their own room.
    client.submit(["g", "h", "i", "j", "k"], model="m", priority="high")
    assert redis_client.llen(f"{queue_name}.high") == 5


def test_submit_blocks_until_a_consumer_makes_room(
    limited: Settings, redis_client: Any, queue_name: str
) -> None:
    client = Client(limited)
    client.submit(["a"] * 5, model="m")

    def drain() -> None:  # a slow "worker": takes one message every 0.3 s
        for _ in range(4):
            time.sleep(0.3)
            redis_client.rpop(queue_name)

    t = threading.Thread(target=drain)
    started = time.monotonic()
    t.start()
    client.submit(["b"] * 3, model="m", on_full="block", full_timeout=10)
    waited = time.monotonic() - started
    t.join()
    assert 0.5 < waited < 5, waited
    assert redis_client.llen(queue_name) == 4  # 5 + 3 - 4 taken
    # One fits; the second waits for room that never comes, and the error says what was sent.
    with pytest.raises(QueueFullError, match="after waiting 0.5s; sent 1 of 2"):
        client.submit(["c"] * 2, model="m", on_full="block", full_timeout=0.5)
