"""Engines and sessions, built on demand (never at import) from a URL.

SQLite gets the pragmas an embedded multi-process store needs (WAL so readers never block the
writer, foreign keys on, a busy timeout) and `BEGIN IMMEDIATE` transactions: a transaction that
reads then writes (as saving predictions does) otherwise fails at once with "database is locked"
when another process wrote in between, instead of waiting for the busy timeout.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from textlstm.errors import StoreError
from textlstm.settings import mask_url


def make_engine(url: str, *, sqlite_busy_timeout_ms: int = 10_000, **kwargs: Any) -> Engine:
    """Create an engine for `url`; the caller disposes of it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine, busy_timeout_ms=sqlite_busy_timeout_ms)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **kwargs)
    if parsed.get_driver_name() == "psycopg":
        _binary_lists(engine)
    return engine


_shared: dict[tuple[str, int], tuple[Engine, sessionmaker[Session]]] = {}
_shared_lock = threading.Lock()
_shared_pid = os.getpid()


def _forget_shared() -> None:
    """In a forked child: drop the parent's engines without closing their connections.

    A pooled connection is a socket the parent still uses; closing it here (or, worse, using
    it) would break the parent's transaction. `dispose(close=False)` is SQLAlchemy's way to
    abandon a pool in a child. The lock is replaced too: another parent thread may have held
    it at the fork, and it would stay held for ever in the child.
    """
    global _shared_lock, _shared_pid
    for engine, _ in _shared.values():
        engine.dispose(close=False)
    _shared.clear()
    _shared_lock = threading.Lock()
    _shared_pid = os.getpid()


os.register_at_fork(after_in_child=_forget_shared)


def shared_session_factory(
    url: str, *, sqlite_busy_timeout_ms: int = 10_000
) -> sessionmaker[Session]:
    """One engine and session factory per database URL per process, made on first use.

    `Client()` without a session factory used to build and dispose of an engine per call:
    connecting and initialising the dialect cost ~30 ms a submit on PostgreSQL (34 jobs/s
    against 138 with a kept engine, bench/results/gateway.md), a trap for every loop of
    `Client.submit`. Thread-safe. Fork-safe: a child never sees its parent's engines (the
    at-fork hook, and a pid check for a fork that bypassed it), so a worker forked after a
    client call still connects afresh.
    """
    global _shared_pid
    key = (url, int(sqlite_busy_timeout_ms))
    with _shared_lock:
        if _shared_pid != os.getpid():  # forked without os.fork's hooks (e.g. a C extension)
            _shared.clear()
            _shared_pid = os.getpid()
        found = _shared.get(key)
        if found is None:
            engine = make_engine(url, sqlite_busy_timeout_ms=sqlite_busy_timeout_ms)
            found = _shared[key] = (engine, make_session_factory(engine))
    return found[1]


def dispose_shared() -> None:
    """Close every shared engine's pooled connections (tests; a process about to exit)."""
    with _shared_lock:
        for engine, _ in _shared.values():
            engine.dispose()
        _shared.clear()


def _binary_lists(engine: Engine) -> None:
    """Send Python lists (the worker's id and count arrays) in psycopg's binary format.

    psycopg's default for a `%s` list is its text format, which quotes every element in Python
    (a regex search each). In a replay of 20,000 one-text jobs this and skipping an empty
    identity map cut the worker's client CPU in `save_batch` from 22.1 to 18.7 µs a job.
    Registering the binary dumper last makes it the automatic choice, on this engine's
    connections only.
    """
    from psycopg.types.array import ListBinaryDumper

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.adapters.register_dumper(list, ListBinaryDumper)


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    in_memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (pysqlite's own BEGIN handling is legacy).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys = ON")
        if not in_memory:
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; safe with WAL
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (results are read after the txn)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def translate_db_errors(url: str) -> Iterator[None]:
    """Turn "cannot connect" / "no such table" into one StoreError line with a masked URL."""
    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        hint = ""
        lowered = reason.lower()
        if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
            hint = " (run `textlstm-admin db upgrade` first)"
        raise StoreError(f"database {mask_url(url)}: {reason}{hint}") from None
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreError(f"database {mask_url(url)}: {reason}") from None


@contextmanager
def session_scope(database_url: str, *, sqlite_busy_timeout_ms: int = 10_000) -> Iterator[Session]:
    """One short-lived engine and one transaction (committed on success): for CLI commands.
    Long-running processes keep an engine and a session factory instead (`Client` uses
    `shared_session_factory`)."""
    engine = make_engine(database_url, sqlite_busy_timeout_ms=sqlite_busy_timeout_ms)
    try:
        with translate_db_errors(database_url), make_session_factory(engine).begin() as session:
            yield session
    finally:
        engine.dispose()
