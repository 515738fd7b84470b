"""Alembic on real PostgreSQL and SQLite: up/down/up works and the ORM has not drifted."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from textlstm.store import migrate
from textlstm.store.db import make_engine
from textlstm.store.models import Base


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    assert migrate.current_revisions(empty_db_url) == ()
    migrate.upgrade(empty_db_url)
    assert migrate.current_revisions(empty_db_url) == migrate.head_revisions(empty_db_url)
    assert _tables(empty_db_url) == set(Base.metadata.tables)
    migrate.downgrade(empty_db_url, "base")
    assert migrate.current_revisions(empty_db_url) == ()
    assert _tables(empty_db_url) == set()
    migrate.upgrade(empty_db_url)
    assert _tables(empty_db_url) == set(Base.metadata.tables)


def test_no_drift_between_migrations_and_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_sqlite_pragmas(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_busy_timeout_ms=1234)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    finally:
        engine.dispose()
