"""worker/acks.py: which delivery tags one `basic.ack(multiple=True)` may cover (pure)."""

from __future__ import annotations

from worker.acks import Outstanding, split


def test_a_batch_of_the_oldest_deliveries_is_one_multiple_ack() -> None:
    # 1-4 committed, 5-9 still held by the batcher: ack up to 4 at once.
    assert split({1, 2, 3, 4}, range(1, 10)) == (4, [])


def test_never_past_a_delivery_the_batch_does_not_hold() -> None:
    # 3 is held uncommitted (another priority): a multiple ack of 5 would ack it too.
    assert split({1, 2, 4, 5}, [1, 2, 3, 4, 5, 6]) == (2, [4, 5])
    # The lowest outstanding is not the batch's: no multiple ack at all.
    assert split({2, 3, 4}, [1, 2, 3, 4]) == (None, [2, 3, 4])


def test_settled_deliveries_leave_no_gap() -> None:
    # 3 was rejected (settled): it no longer blocks the run.
    assert split({1, 2, 4, 5}, [1, 2, 4, 5, 9]) == (5, [])


def test_one_message_is_a_plain_ack() -> None:
    assert split({7}, [7, 8]) == (None, [7])
    assert split({7, 9}, [7, 8, 9]) == (None, [7, 9])


def test_outstanding_per_channel() -> None:
    a, b = object(), object()
    out = Outstanding()
    for tag in (1, 2, 3):
        out.received(a, tag)
    out.received(b, 1)
    out.settled(a, [1, 3])
    assert out.of(a) == {2} and out.of(b) == {1}
    assert out.of(object()) == set()
