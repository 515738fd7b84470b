"""A producer checks a model reference in SQL once, then trusts it for KNOWN_REF_TTL_S:
a stream of jobs to one model costs no lookup each, while an unknown reference is refused
every time and a model registered a moment ago is accepted at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from textlstm.client import Client
from textlstm.client.known_refs import KnownRefs
from textlstm.errors import NotFoundError
from textlstm.settings import Settings
from textlstm.store.db import make_engine, make_session_factory
from textlstm.store.registry import register_bundle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_reference_is_trusted_until_it_expires() -> None:
    clock = Clock()
    known = KnownRefs(ttl_s=10, clock=clock)
    assert "news" not in known
    known.add("news")
    clock.now += 9.9
    assert "news" in known and "news@2" not in known
    clock.now += 0.2
    assert "news" not in known


def test_it_stays_small() -> None:
    known = KnownRefs(ttl_s=10, clock=Clock(), max_refs=4)
    for i in range(5):
        known.add(f"m{i}")
    assert "m4" in known and "m3" in known and "m0" not in known and "m1" not in known


@pytest.fixture
def counted(db_url: str, redis_url: str, queue_name: str) -> Iterator[tuple[Client, list[str]]]:
    """A Client on a real database whose engine records every statement sent to it."""
    engine = make_engine(db_url)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    settings = Settings(database_url=db_url, broker_url=redis_url, queue=queue_name, _env_file=None)  # type: ignore[call-arg]
    try:
        yield Client(settings, session_factory=make_session_factory(engine)), statements
    finally:
        engine.dispose()


def _registry_reads(statements: list[str]) -> int:
    return sum("model_versions" in s or "model_aliases" in s for s in statements)


def test_one_lookup_for_many_jobs_to_one_model(
    counted: tuple[Client, list[str]], session_factory: sessionmaker[Session], fake_bundle: Path
) -> None:
    client, statements = counted
    with session_factory.begin() as s:
        register_bundle(session=s, path=fake_bundle, name="news", aliases=["production"])
    client.submit(["a"], model="news@production")
    first = _registry_reads(statements)
    assert first >= 1
    for text in ("b", "c", "d"):
        client.submit([text], model="news@production")
    client.submit_many([{"texts": ["e"], "model": "news@production"}])
    assert _registry_reads(statements) == first  # no lookup after the first
    client.submit(["f"], model="news@1")  # another reference is checked on its own
    assert _registry_reads(statements) > first


def test_unknown_references_are_never_remembered(
    counted: tuple[Client, list[str]], session_factory: sessionmaker[Session], fake_bundle: Path
) -> None:
    client, _ = counted
    for _ in range(2):
        with pytest.raises(NotFoundError, match="not registered"):
            client.submit(["a"], model="late")
    with session_factory.begin() as s:
        register_bundle(session=s, path=fake_bundle, name="late")
    client.submit(["a"], model="late")  # accepted at once


def test_the_job_keeps_the_reference_as_sent(
    counted: tuple[Client, list[str]], session_factory: sessionmaker[Session], fake_bundle: Path
) -> None:
    """Only the check is cached: the job row holds `news@production` as sent (the worker
    resolves it when it runs), so an alias moved between two submits applies to the second."""
    client, _ = counted
    with session_factory.begin() as s:
        register_bundle(session=s, path=fake_bundle, name="news", aliases=["production"])
    one = client.submit(["a"], model="news@production")
    two = client.submit(["b"], model="news@production")
    assert client.status(one).model_ref == client.status(two).model_ref == "news@production"
