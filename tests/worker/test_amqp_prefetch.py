"""The amqp:// delivery count and the careful prefetch (`worker.strategy`), without a broker:
a quorum queue counts a dead worker's return against every message it held, so a worker takes
messages delivered before one at a time, and opens the full window on the first new one."""

from __future__ import annotations

from typing import Any

import pytest

from worker import kombu_seam
from worker.strategy import Prefetch, amqp_deliveries


def test_deliveries_are_the_returns_counted_by_rabbitmq_plus_this_one() -> None:
    assert amqp_deliveries({"x-delivery-count": 0}) == 1
    assert amqp_deliveries({"x-delivery-count": 3}) == 4
    # Returns it had before an operator's scan published it again (textlstm.ops.amqp_scan).
    assert amqp_deliveries({"x-delivery-count": 1, "textlstm-returns": 2}) == 4
    for unreadable in ({}, None, {"x-delivery-count": "3"}, {"x-delivery-count": True},
                       {"x-delivery-count": -1}):  # fmt: skip
        assert amqp_deliveries(unreadable) == 1


class Timer:
    def __init__(self) -> None:
        self.pending: list[Any] = []

    def call_after(self, seconds: float, fun: Any) -> object:
        self.pending.append(fun)
        return object()

    def run(self) -> None:
        pending, self.pending = self.pending, []
        for fun in pending:
            fun()


def test_the_window_opens_on_a_new_message_and_closes_on_a_redelivered_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumed: list[int] = []
    monkeypatch.setattr(kombu_seam, "consume_with_prefetch", lambda c, n: consumed.append(n))
    timer = Timer()
    prefetch = Prefetch(object(), timer, 256)
    prefetch.saw(2)  # delivered before: stays at 1, nothing to change
    timer.run()
    assert (prefetch.current, consumed) == (1, [])
    prefetch.saw(1)  # new: the full window, from the event loop, not inside the delivery
    assert consumed == []
    prefetch.saw(1)  # one change scheduled, however many messages
    timer.run()
    assert (prefetch.current, consumed) == (256, [256])
    prefetch.saw(3)  # another worker died: careful again
    timer.run()
    assert (prefetch.current, consumed) == (1, [256, 1])


def test_a_failed_change_keeps_the_current_window(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(consumer: Any, n: int) -> None:
        raise ConnectionError("gone")

    monkeypatch.setattr(kombu_seam, "consume_with_prefetch", fail)
    timer = Timer()
    prefetch = Prefetch(object(), timer, 64)
    prefetch.saw(1)
    timer.run()
    assert prefetch.current == 1  # the reconnection starts again at 1 anyway
