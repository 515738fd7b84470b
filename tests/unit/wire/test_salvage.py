"""What is salvaged from malformed messages so the rejection can be recorded on the job."""

from __future__ import annotations

import uuid

from textlstm.wire.salvage import salvage


def test_readable_parts_of_a_wrong_version_message() -> None:
    jid = uuid.uuid4()
    body = {
        "schema_version": 9,
        "job_id": str(jid),
        "model": "news",
        "total": 3,
        "items": [{"index": 0, "id": "a", "text": "x"}, {"index": 2, "text": 5}, {"index": 7}],
    }
    found = salvage(body)
    assert found.job_id == jid and found.model == "news" and found.total == 3
    assert found.items == ((0, "a"), (2, None))  # index 7 is outside the total


def test_nothing_readable() -> None:
    for body in (None, [1, 2], {"job_id": "nope", "items": "x"}, {"total": True, "items": [3]}):
        found = salvage(body)
        assert found.job_id is None and found.items == () and found.total is None
