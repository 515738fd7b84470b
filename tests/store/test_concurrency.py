"""Concurrent writers (threads with their own connections) never lose or double-count items."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy.orm import Session, sessionmaker

from textlstm.store import repository as repo
from textlstm.store.repository import PredictionRecord


def test_overlapping_batches_from_many_writers(session_factory: sessionmaker[Session]) -> None:
    total, writers = 60, 4
    job_id = uuid.uuid4()
    with session_factory.begin() as s:
        repo.ensure_job(session=s, job_id=job_id, model_ref="m", expected=total)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            # Each writer covers 3/4 of the items in its own order: heavy overlap, redelivery-like.
            indexes = [(offset * 15 + k) % total for k in range(45)]
            if offset % 2:
                indexes.reverse()  # and half of them walk backwards, inside batches too
            for start in range(0, len(indexes), 9):
                records = [PredictionRecord(i, "ok", "pos") for i in indexes[start : start + 9]]
                with session_factory.begin() as s:
                    repo.ensure_job(session=s, job_id=job_id, model_ref="m", expected=total)
                    repo.save_predictions(session=s, job_id=job_id, records=records)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    with session_factory() as s:
        job = repo.get_job(session=s, job_id=job_id)
        assert (job.ok_count, job.error_count, job.status) == (total, 0, "done")
        assert len(list(repo.iter_predictions(session=s, job_id=job_id))) == total
