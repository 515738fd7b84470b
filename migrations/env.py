"""Alembic environment: URL from textlstm settings, target metadata from the ORM.

`textlstm.store.migrate` passes the URL in ``config.attributes["database_url"]`` (so tests and the
CLI never touch the environment); the plain `alembic` command falls back to get_settings().
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection

from textlstm.errors import TextlstmError
from textlstm.settings import get_settings
from textlstm.store.db import make_engine
from textlstm.store.models import Base, UTCDateTime

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return url
    try:
        return get_settings().database_url
    except TextlstmError as exc:
        # The plain `alembic` command prints any exception from here with its traceback; a
        # settings mistake is one line (`textlstm-admin db` reads the settings itself).
        raise SystemExit(f"error: {exc}") from None


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Keep app types out of migration files: UTCDateTime is a plain timezone-aware DateTime.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection | None = None, **kwargs: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=True,
        render_item=_render_item,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=_database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _driver_execute(connection: Connection, sql: str) -> None:
    connection.connection.driver_connection.execute(sql)  # type: ignore[union-attr]


def run_migrations_online() -> None:
    engine = make_engine(_database_url())
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Batch mode copies tables, so foreign keys must be off while it does. The pragma
                # is ignored inside a transaction, so it goes to the driver directly (a SQLAlchemy
                # execute would autobegin first).
                _driver_execute(connection, "PRAGMA foreign_keys = OFF")
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
            if sqlite:
                _driver_execute(connection, "PRAGMA foreign_keys = ON")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
