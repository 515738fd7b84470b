"""`textlstm-admin db`: create and migrate the schema with Alembic (the only way it is made)."""

from __future__ import annotations

import click

from textlstm.settings import get_settings, mask_url


@click.group()
def db() -> None:
    """Create or migrate the database schema (TEXTLSTM_DATABASE_URL)."""


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Upgrade the schema to REVISION (default: head)."""
    from textlstm.store import migrate

    url = get_settings().database_url
    migrate.upgrade(url, revision)
    current = ", ".join(migrate.current_revisions(url)) or "base"
    click.echo(f"{mask_url(url)}: at revision {current}")


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Downgrade the schema to REVISION (`base` drops every table: data is lost)."""
    from textlstm.store import migrate

    url = get_settings().database_url
    migrate.downgrade(url, revision)
    current = ", ".join(migrate.current_revisions(url)) or "base"
    click.echo(f"{mask_url(url)}: at revision {current}")


@db.command()
def current() -> None:
    """Show the database's revision and whether it is up to date."""
    from textlstm.store import migrate

    url = get_settings().database_url
    revs = migrate.current_revisions(url)
    heads = migrate.head_revisions(url)
    state = "up to date" if set(revs) == set(heads) else f"behind (head is {', '.join(heads)})"
    click.echo(f"{mask_url(url)}: at revision {', '.join(revs) or 'base'}, {state}")
