"""`textlstm-admin models`: register bundles, list and show versions, move aliases, export."""

from __future__ import annotations

import json

import click

from textlstm.cli.results import format_table


def _parse_tags(pairs: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--tag")
        tags[key] = value
    return tags


def _scope():  # type: ignore[no-untyped-def]
    from textlstm.settings import get_settings
    from textlstm.store.db import session_scope

    return session_scope(get_settings().database_url)


@click.group()
def models() -> None:
    """Register, list, show, alias and export models (stored in TEXTLSTM_DATABASE_URL)."""


@models.command()
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
@click.option("--name", required=True, help="Model name; versions count 1, 2, 3... per name.")
@click.option("--alias", "aliases", multiple=True, help="Point this alias at it (repeatable).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Free-form tag.")
def register(bundle: str, name: str, aliases: tuple[str, ...], tags: tuple[str, ...]) -> None:
    """Verify BUNDLE and store it in the database as the next version of NAME."""
    from textlstm.store.registry import register_bundle

    with _scope() as session:
        mv, created = register_bundle(
            session=session, path=bundle, name=name, aliases=aliases, tags=_parse_tags(tags)
        )
        ref, digest, size = mv.ref, mv.bundle_sha256, mv.bundle_size
    if created:
        click.echo(f"registered {ref} (bundle {digest[:12]}, {size / 1e6:.2f} MB)")
    else:
        click.echo(f"already registered as {ref} (same bundle {digest[:12]}); nothing stored")
    for alias in aliases:
        click.echo(f"{name}@{alias} -> {ref}")


@models.command("list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per version (JSON Lines).")
def list_(name: str | None, as_json: bool) -> None:
    """All versions (of NAME), with aliases and headline metrics."""
    from textlstm.store.model_versions import list_model_versions
    from textlstm.store.registry import aliases_by_version, headline_metrics, version_summary

    with _scope() as session:
        versions = list_model_versions(session=session, name=name)
        aliases = aliases_by_version(session=session, name=name)
        if as_json:
            # One line per version, so a script can stream it; none registered prints nothing.
            for mv in versions:
                doc = version_summary(mv, aliases)
                click.echo(json.dumps(doc, sort_keys=True, ensure_ascii=False))
            return
        rows = [
            (
                mv.name,
                mv.version,
                ",".join(aliases.get((mv.name, mv.version), [])) or None,
                len(mv.labels),
                _metric(headline_metrics(mv.metrics), "accuracy"),
                _metric(headline_metrics(mv.metrics), "macro_f1"),
                mv.bundle_sha256[:12],
                mv.created_at.strftime("%Y-%m-%d %H:%M"),
            )
            for mv in versions
        ]
    if not rows:
        click.echo("no models registered" + (f" under {name!r}" if name else ""))
        return
    headers = ("name", "version", "aliases", "labels", "accuracy", "macro_f1", "bundle", "created")
    click.echo(format_table(headers, rows))


def _metric(metrics: dict[str, float], key: str) -> str | None:
    return f"{metrics[key]:.4f}" if key in metrics else None


@models.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(ref: str, as_json: bool) -> None:
    """Details of REF (name, name@VERSION or name@ALIAS)."""
    from textlstm.store.registry import resolve, version_details

    with _scope() as session:
        mv = resolve(session=session, ref=ref)
        doc = version_details(session=session, mv=mv)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    for key in (
        "name",
        "version",
        "aliases",
        "bundle_sha256",
        "bundle_size",
        "labels",
        "metrics",
        "data_fingerprint",
        "tags",
        "created_at",
    ):
        value = doc[key]
        shown = json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value
        click.echo(f"{key:<17}{shown}")
    click.echo(f"{'model':<17}{json.dumps(doc['config'].get('model'), sort_keys=True)}")


@models.command()
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.argument("alias")
def alias(name: str, version: int, alias: str) -> None:
    """Point NAME@ALIAS at VERSION (promote, or roll back by pointing at an older one)."""
    from textlstm.store.registry import set_alias

    with _scope() as session:
        previous = set_alias(session=session, name=name, version=version, alias=alias)
    if previous is None:
        click.echo(f"{name}@{alias} -> {version} (new alias)")
    elif previous == version:
        click.echo(f"{name}@{alias} already -> {version}")
    else:
        click.echo(f"{name}@{alias}: {previous} -> {version}")


@models.command()
@click.argument("ref")
@click.argument("dest", type=click.Path(path_type=str))
def export(ref: str, dest: str) -> None:
    """Write the bundle of REF from the database into DEST (a new or empty directory)."""
    from textlstm.store.registry import export_bundle

    with _scope() as session:
        mv, out = export_bundle(session=session, ref=ref, dest=dest)
        click.echo(f"exported {mv.ref} (bundle {mv.bundle_sha256[:12]}) to {out}")
