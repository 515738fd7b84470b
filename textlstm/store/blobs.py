"""Content-addressed bytes (one row per sha256): every file of every registered bundle.

The model registry (store/registry.py) stores and reads bundles through these; nothing here
commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from textlstm.store.bulk_insert import dialect_insert
from textlstm.store.models import Blob, utcnow


def missing_blobs(*, session: Session, digests: Iterable[str]) -> set[str]:
    wanted = set(digests)
    if not wanted:
        return set()
    have = set(session.scalars(select(Blob.sha256).where(Blob.sha256.in_(wanted))))
    return wanted - have


def put_blobs(*, session: Session, blobs: Mapping[str, bytes]) -> int:
    """Store content-addressed bytes (keys must be their sha256); skip ones already stored.

    Bytes already in the database are not even sent, so re-registering a model is cheap.
    Returns how many blobs were new.
    """
    new = missing_blobs(session=session, digests=blobs)
    if not new:
        return 0
    now = utcnow()
    rows = [{"sha256": d, "size": len(blobs[d]), "data": blobs[d], "created_at": now} for d in new]
    table: Table = Blob.__table__  # type: ignore[assignment]
    session.execute(
        dialect_insert(session, table).on_conflict_do_nothing(index_elements=["sha256"]), rows
    )
    return len(new)


def get_blob(*, session: Session, sha256: str) -> bytes | None:
    return session.scalar(select(Blob.data).where(Blob.sha256 == sha256))
