"""ORM models: the schema Alembic migrates to (migrations/versions) and compares against.

Tables:
  blobs           content-addressed bytes (one row per sha256): every file of every bundle,
                  manifest included, so a worker needs only the database URL to fetch a model
  model_versions  registered models: name + version (1, 2, 3… per name), bundle digest, lineage
  model_aliases   movable per-name pointers (`production`, `staging`) to a version
  jobs            one row per submitted job (UUID chosen by the producer), status and counts
  predictions     one row per item, primary key (job_id, item_index): writes are idempotent
  webhook_deliveries  one row per job with a webhook URL that reached a final status: the
                  delivery's state, attempts and last outcome (never the signing secret)
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from textlstm.wire.events import FINAL_STATUSES, WEBHOOK_URL_CHARS

# Stable constraint names, so later migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JOB_STATUSES = ("queued", "running", "done", "failed", "partial", "expired", "cancelled")
#: Final statuses: a job in one of them is never written again. The one list (it lives in
#: textlstm/wire/events.py, which producers import too) that decides which jobs `jobs purge`
#: (textlstm/ops/retention.py) may delete and which publish a final event; a new one goes there.
FINISHED_STATUSES = FINAL_STATUSES
WEBHOOK_STATES = ("pending", "delivered", "failed")
#: `expired`: not started before the job's deadline (migration 0002); counted as an error.
#: `cancelled`: not yet stored when the job was cancelled (migration 0003_cancelled); counted as
#: an error too, and never classified.
ITEM_STATUSES = ("ok", "error", "expired", "cancelled")

# JSONB on PostgreSQL (indexable, operators for analysts), JSON text elsewhere. none_as_null so a
# Python None is SQL NULL, not the JSON literal null.
JSONDoc = JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Blob(Base):
    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        # The same bytes under the same name are one version: registration is idempotent.
        UniqueConstraint("name", "bundle_sha256"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    bundle_sha256: Mapped[str] = mapped_column(String(64), ForeignKey("blobs.sha256"), index=True)
    bundle_size: Mapped[int] = mapped_column(BigInteger)
    labels: Mapped[list[str]] = mapped_column(JSONDoc)
    config: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    data_fingerprint: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[dict[str, str]] = mapped_column(JSONDoc)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class ModelAlias(Base):
    __tablename__ = "model_aliases"
    __table_args__ = (
        # Composite key to (name, version): an alias can only point at a version of its own name.
        ForeignKeyConstraint(
            ["name", "version"],
            ["model_versions.name", "model_versions.version"],
            name="fk_model_aliases_name_version_model_versions",
        ),
    )

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    alias: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'partial', 'expired', 'cancelled')",
            name="status",
        ),
        CheckConstraint(
            "expected_count >= 1 AND ok_count >= 0 AND error_count >= 0 "
            "AND ok_count + error_count <= expected_count",
            name="counts",
        ),
        CheckConstraint("expired_count >= 0 AND expired_count <= error_count", name="expired"),
        CheckConstraint(
            "cancelled_count >= 0 AND expired_count + cancelled_count <= error_count",
            name="cancelled",
        ),
        Index("ix_jobs_status_submitted_at", "status", "submitted_at"),
        Index("ix_jobs_submitted_at", "submitted_at"),
        # Retention (migration 0004_retention): old finished jobs, oldest first, no scan.
        Index("ix_jobs_finished_at", "finished_at"),
        # amqp:// workers re-read the recently cancelled jobs twice a second (migration
        # 0006_cancelled_recent): only the rows returned are read.
        Index("ix_jobs_status_finished_at", "status", "finished_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    model_ref: Mapped[str] = mapped_column(String(100))
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="queued")
    expected_count: Mapped[int] = mapped_column(Integer)
    ok_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    #: Items stored as `expired` (a subset of error_count): the job's deadline passed first.
    expired_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    #: Items stored as `cancelled` (a subset of error_count): the job was cancelled first.
    cancelled_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # `metadata` is reserved on declarative classes; the column keeps the natural name.
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONDoc)
    #: Optional URL POSTed once the job reaches a final status (migration 0003_webhooks).
    webhook_url: Mapped[str | None] = mapped_column(String(WEBHOOK_URL_CHARS))
    #: The token of the write that made the job final (store/events.py): set once, so exactly
    #: one write sees its own token and publishes the job's final event.
    finished_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    @property
    def done_count(self) -> int:
        return self.ok_count + self.error_count


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        CheckConstraint("status IN ('ok', 'error', 'expired', 'cancelled')", name="status"),
        CheckConstraint("item_index >= 0", name="item_index_nonnegative"),
        Index("ix_predictions_job_id_external_id", "job_id", "external_id"),
        Index("ix_predictions_model_version_id_label", "model_version_id", "label"),
        Index("ix_predictions_created_at", "created_at"),
    )

    # The primary key *is* the idempotency key: a redelivered batch inserts nothing new.
    job_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    item_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    external_id: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(200))
    score: Mapped[float | None] = mapped_column(Float)
    probabilities: Mapped[dict[str, float] | None] = mapped_column(JSONDoc)
    error: Mapped[str | None] = mapped_column(Text)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """The delivery of a job's webhook: created `pending` with its final event, claimed by a
    worker's sender when `next_attempt_at` has passed, `delivered` or `failed` in the end."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="state"),
        Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    )

    job_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(String(WEBHOOK_URL_CHARS))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
