"""Concurrent writers (threads with their own connections) never lose or double-count items."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from textlstm.store.jobs import ensure_job, get_job
from textlstm.store.predictions import JobItems, PredictionRecord, save_batch, save_predictions
from textlstm.store.results import iter_predictions


def in_threads(work: Callable[[int], None], n: int) -> None:
    """work(0) … work(n - 1) in n threads at once, each with its own connection; what any of
    them raised is surfaced here."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors


def test_overlapping_batches_from_many_writers(session_factory: sessionmaker[Session]) -> None:
    total, writers = 60, 4
    job_id = uuid.uuid4()
    with session_factory.begin() as s:
        ensure_job(session=s, job_id=job_id, model_ref="m", expected=total)

    def work(offset: int) -> None:
        # Each writer covers 3/4 of the items in its own order: heavy overlap, redelivery-like.
        indexes = [(offset * 15 + k) % total for k in range(45)]
        if offset % 2:
            indexes.reverse()  # and half of them walk backwards, inside batches too
        for start in range(0, len(indexes), 9):
            records = [PredictionRecord(i, "ok", "pos") for i in indexes[start : start + 9]]
            with session_factory.begin() as s:
                ensure_job(session=s, job_id=job_id, model_ref="m", expected=total)
                save_predictions(session=s, job_id=job_id, records=records)

    in_threads(work, writers)
    with session_factory() as s:
        job = get_job(session=s, job_id=job_id)
        assert (job.ok_count, job.error_count, job.status) == (total, 0, "done")
        assert len(list(iter_predictions(session=s, job_id=job_id))) == total


def save_in_own_order(
    session_factory: sessionmaker[Session],
    jobs: list[uuid.UUID],
    writer: int,
    per_batch: int,
    items: Callable[[uuid.UUID], JobItems],
) -> None:
    """Writer `writer`'s save_batch calls: the jobs rotated by a quarter per writer, odd writers
    walking them backwards, `per_batch` jobs a transaction."""
    shift = writer * len(jobs) // 4
    order = jobs[shift:] + jobs[:shift]
    if writer % 2:
        order.reverse()
    for start in range(0, len(order), per_batch):
        with session_factory.begin() as s:
            save_batch(session=s, jobs={j: items(j) for j in order[start : start + per_batch]})


def test_many_job_batches_from_many_writers(session_factory: sessionmaker[Session]) -> None:
    """save_batch from 4 writers whose batches overlap on the same one-item and two-item jobs
    (in opposite orders): every item once, every job's counters exact, no deadlock."""
    jobs = [uuid.uuid4() for _ in range(40)]
    size = {j: 1 + n % 2 for n, j in enumerate(jobs)}

    def work(offset: int) -> None:
        save_in_own_order(
            session_factory, jobs, offset, 8,
            lambda j: JobItems("m", size[j], [PredictionRecord(i, "ok", "pos")
                                                   for i in range(size[j])]),
        )  # fmt: skip

    in_threads(work, 4)
    with session_factory() as s:
        for j in jobs:
            job = get_job(session=s, job_id=j)
            assert (job.ok_count, job.status) == (size[j], "done")
            assert len(list(iter_predictions(session=s, job_id=j))) == size[j]


def test_concurrent_increments_of_the_same_jobs_are_never_lost(
    session_factory: sessionmaker[Session],
) -> None:
    """4 writers store disjoint items of the same 30 jobs at once, each walking the jobs in its
    own order: every writer's increment of a job's counters lands (none is computed from a
    version another writer already replaced), and nothing deadlocks."""
    jobs = [uuid.uuid4() for _ in range(30)]
    writers, per_writer = 4, 3

    def work(w: int) -> None:
        records = [PredictionRecord(w * per_writer + k, "ok" if k else "error", "pos")
                   for k in range(per_writer)]  # fmt: skip
        save_in_own_order(
            session_factory, jobs, w, 6, lambda j: JobItems("m", writers * per_writer, records)
        )

    in_threads(work, writers)
    with session_factory() as s:
        for j in jobs:
            job = get_job(session=s, job_id=j)
            ok = writers * (per_writer - 1)
            assert (job.ok_count, job.error_count, job.status) == (ok, writers, "partial")
            assert len(list(iter_predictions(session=s, job_id=j))) == writers * per_writer
