"""Run Alembic programmatically: the only way a schema is created or changed.

The migration scripts live in the top-level `migrations/` directory of the source tree (next to
`alembic.ini`); this module finds them relative to the package so `textlstm-admin db …` works
from any working directory of a source or editable install.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from textlstm.errors import StoreError
from textlstm.store.db import make_engine, translate_db_errors

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> Config:
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise StoreError(
            f"migration scripts not found at {MIGRATIONS_DIR}; run from a source checkout "
            "or an editable install"
        )
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    with translate_db_errors(database_url):
        command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    with translate_db_errors(database_url):
        command.downgrade(alembic_config(database_url), revision)


def current_revisions(database_url: str) -> tuple[str, ...]:
    """Revisions the database is at (empty before the first upgrade)."""
    engine = make_engine(database_url)
    try:
        with translate_db_errors(database_url), engine.connect() as conn:
            return tuple(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def head_revisions(database_url: str) -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())
