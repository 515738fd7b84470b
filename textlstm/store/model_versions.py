"""Queries on registered model versions and their aliases (`name@production`).

The registry's rules (what may be registered, how a reference resolves) are in
store/registry.py; these are its queries. Nothing here commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from textlstm.store.models import ModelAlias, ModelVersion, utcnow


def get_model_version(*, session: Session, name: str, version: int) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
    )


def get_model_version_by_id(*, session: Session, model_version_id: int) -> ModelVersion | None:
    return session.get(ModelVersion, model_version_id)


def find_model_version_by_digest(
    *, session: Session, name: str, bundle_sha256: str
) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(
            ModelVersion.name == name, ModelVersion.bundle_sha256 == bundle_sha256
        )
    )


def latest_model_version(*, session: Session, name: str) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion)
        .where(ModelVersion.name == name)
        .order_by(ModelVersion.version.desc())
        .limit(1)
    )


def add_model_version(
    *,
    session: Session,
    name: str,
    bundle_sha256: str,
    bundle_size: int,
    labels: list[str],
    config: dict[str, Any],
    metrics: dict[str, Any],
    data_fingerprint: str | None,
    tags: dict[str, str],
) -> ModelVersion:
    """Insert the next version of `name` (max + 1). Two concurrent registrations of different
    bundles under one name collide on uq_model_versions_name_version; the loser's transaction
    fails with IntegrityError and can simply be retried."""
    current = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.name == name)
    )
    mv = ModelVersion(
        name=name,
        version=(current or 0) + 1,
        bundle_sha256=bundle_sha256,
        bundle_size=bundle_size,
        labels=labels,
        config=config,
        metrics=metrics,
        data_fingerprint=data_fingerprint,
        tags=tags,
        created_at=utcnow(),
    )
    session.add(mv)
    session.flush()
    return mv


def list_model_versions(*, session: Session, name: str | None = None) -> list[ModelVersion]:
    stmt = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
    if name is not None:
        stmt = stmt.where(ModelVersion.name == name)
    return list(session.scalars(stmt))


def get_alias(*, session: Session, name: str, alias: str) -> ModelAlias | None:
    return session.get(ModelAlias, (name, alias))


def list_aliases(*, session: Session, name: str | None = None) -> list[ModelAlias]:
    stmt = select(ModelAlias).order_by(ModelAlias.name, ModelAlias.alias)
    if name is not None:
        stmt = stmt.where(ModelAlias.name == name)
    return list(session.scalars(stmt))


def set_alias(*, session: Session, name: str, alias: str, version: int) -> int | None:
    """Point `name@alias` at `version` (creating or moving it); return the previous version."""
    row = session.get(ModelAlias, (name, alias), with_for_update=True)
    if row is None:
        session.add(ModelAlias(name=name, alias=alias, version=version, updated_at=utcnow()))
        session.flush()
        return None
    previous = row.version
    if previous != version:
        row.version = version
        row.updated_at = utcnow()
        session.flush()
    return previous
