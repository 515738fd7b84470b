"""`record_job`, the producer's ensure_job: one INSERT when the job is new, and the same
checks as ensure_job when the id exists (a reused id with other contents is refused)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from textlstm.errors import ValidationError
from textlstm.store.jobs import ensure_job, get_job, record_job


def _statements(session: Session) -> list[str]:
    seen: list[str] = []
    event.listen(session.get_bind(), "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_a_new_job_is_one_statement_and_an_agreeing_repeat_is_accepted(
    session_factory: sessionmaker[Session],
) -> None:
    job_id = uuid.uuid4()
    with session_factory.begin() as s:
        seen = _statements(s)
        assert record_job(session=s, job_id=job_id, model_ref="m", expected=3,
                          metadata={"k": 1}, webhook_url="https://h.example/x")  # fmt: skip
        sent = [q for q in seen if not q.startswith("BEGIN")]  # SQLite's BEGIN IMMEDIATE
        assert len(sent) == 1 and sent[0].lstrip().upper().startswith("INSERT")
    with session_factory.begin() as s:
        assert not record_job(session=s, job_id=job_id, model_ref="m", expected=3)
        job = get_job(session=s, job_id=job_id)
        assert (job.status, job.expected_count, job.model_ref, job.meta, job.webhook_url) == (
            "queued", 3, "m", {"k": 1}, "https://h.example/x"
        )  # fmt: skip
        _, created = ensure_job(session=s, job_id=job_id, model_ref="m", expected=3)
        assert not created  # the worker's path sees the producer's row


@pytest.mark.parametrize(("model_ref", "expected"), [("m", 4), ("other", 3)])
def test_a_reused_id_with_other_contents_is_refused(
    session_factory: sessionmaker[Session], model_ref: str, expected: int
) -> None:
    job_id = uuid.uuid4()
    with session_factory.begin() as s:
        ensure_job(session=s, job_id=job_id, model_ref="m", expected=3)
    with session_factory.begin() as s, pytest.raises(ValidationError, match=str(job_id)):
        record_job(session=s, job_id=job_id, model_ref=model_ref, expected=expected)


def test_an_empty_job_is_refused(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as s, pytest.raises(ValidationError, match="at least one"):
        record_job(session=s, job_id=uuid.uuid4(), model_ref="m", expected=0)
