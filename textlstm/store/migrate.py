"""Run Alembic programmatically: the only way a schema is created or changed.

The migration scripts live in the top-level `migrations/` directory of the source tree (next to
`alembic.ini`, for the plain `alembic` command) and are installed as the package
`textlstm_migrations` (pyproject.toml's package-dir). Alembic is pointed at that package as a
resource, not at a path next to this file, so `textlstm-admin db …` works from a wheel, an
editable install or a checkout, from any working directory.
"""

from __future__ import annotations

import importlib.util

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from textlstm.errors import StoreError
from textlstm.store.db import make_engine, translate_db_errors

MIGRATIONS_PACKAGE = "textlstm_migrations"
# Alembic's package-resource form, "package:directory": the package's own directory.
SCRIPT_LOCATION = f"{MIGRATIONS_PACKAGE}:."


def alembic_config(database_url: str) -> Config:
    """An Alembic config for `database_url` whose scripts come from the installed package."""
    if importlib.util.find_spec(MIGRATIONS_PACKAGE) is None:
        # A plain error, not Alembic's traceback: the install is incomplete, not the database.
        raise StoreError(
            f"migration scripts not found: package {MIGRATIONS_PACKAGE!r} is not installed; "
            "reinstall textlstm"
        )
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
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
