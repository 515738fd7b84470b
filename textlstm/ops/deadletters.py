"""Reading and editing the dead-letter lists (`textlstm-admin dead-letters`, `status`).

The record format is `textlstm.wire.deadletters`; the functions here take a Redis client.
"""

from __future__ import annotations

from typing import Any

from textlstm.wire.deadletters import DeadLetter, dead_letter_key

__all__ = ["count", "dead_letter_key", "find", "read", "remove", "requeue_entry"]

#: Moves one record's entry back onto the list it came from, if the record is still there
#: (two operators requeueing at once push it once). KEYS: dead-letter list, target list.
REQUEUE = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


def count(client: Any, key: str) -> int:
    return int(client.llen(key))


def read(client: Any, key: str, limit: int | None = None) -> list[tuple[bytes, DeadLetter]]:
    """Records newest first, each with its stored bytes (to remove exactly that one).
    A record that does not parse is shown as one with stage `unreadable`."""
    raws = client.lrange(key, 0, -1 if limit is None else limit - 1)
    out = []
    for raw in raws:
        try:
            out.append((raw, DeadLetter.from_json(raw)))
        except (ValueError, TypeError, KeyError) as exc:
            out.append((raw, DeadLetter(id="?", at=0, stage="unreadable", reason=str(exc))))
    return out


def find(client: Any, key: str, record_id: str) -> tuple[bytes, DeadLetter] | None:
    for raw, record in read(client, key):
        if record.id == record_id:
            return raw, record
    return None


def remove(client: Any, key: str, raw: bytes) -> bool:
    return int(client.lrem(key, 1, raw)) == 1


def requeue_entry(client: Any, key: str, raw: bytes, record: DeadLetter) -> bool:
    """Put a whole entry back at the consuming end of its list; False if already gone."""
    if record.entry is None or record.list is None:
        raise ValueError(f"dead letter {record.id} holds no broker entry to put back")
    return bool(client.eval(REQUEUE, 2, key, record.list, raw, record.entry))
