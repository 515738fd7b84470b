"""Initial schema: blobs, model registry, jobs, predictions and the prediction_results view.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    # Same as textlstm.store.models.JSONDoc: JSONB on PostgreSQL, JSON text elsewhere.
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
    )


def _ts() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


# Flat, documented view for analysts (README.md): one row per item with model and job info.
PREDICTION_RESULTS_VIEW = """
CREATE VIEW prediction_results AS
SELECT p.job_id, p.item_index, p.external_id, p.status, p.label, p.score, p.probabilities,
       p.error, p.latency_ms, p.created_at,
       mv.name AS model_name, mv.version AS model_version, mv.bundle_sha256,
       j.model_ref, j.status AS job_status, j.submitted_at, j.metadata AS job_metadata
FROM predictions p
JOIN jobs j ON j.id = p.job_id
LEFT JOIN model_versions mv ON mv.id = p.model_version_id
"""


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blobs")),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("bundle_sha256", sa.String(length=64), nullable=False),
        sa.Column("bundle_size", sa.BigInteger(), nullable=False),
        sa.Column("labels", _json(), nullable=False),
        sa.Column("config", _json(), nullable=False),
        sa.Column("metrics", _json(), nullable=False),
        sa.Column("data_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("tags", _json(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_model_versions_version_positive")),
        sa.ForeignKeyConstraint(
            ["bundle_sha256"], ["blobs.sha256"], name=op.f("fk_model_versions_bundle_sha256_blobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint(
            "name", "bundle_sha256", name=op.f("uq_model_versions_name_bundle_sha256")
        ),
        sa.UniqueConstraint("name", "version", name=op.f("uq_model_versions_name_version")),
    )
    op.create_index(
        op.f("ix_model_versions_bundle_sha256"), "model_versions", ["bundle_sha256"], unique=False
    )
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("alias", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["name", "version"],
            ["model_versions.name", "model_versions.version"],
            name="fk_model_aliases_name_version_model_versions",
        ),
        sa.PrimaryKeyConstraint("name", "alias", name=op.f("pk_model_aliases")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_ref", sa.String(length=100), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expected_count", sa.Integer(), nullable=False),
        sa.Column("ok_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("submitted_at", _ts(), nullable=False),
        sa.Column("started_at", _ts(), nullable=True),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.Column("metadata", _json(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'partial')",
            name=op.f("ck_jobs_status"),
        ),
        sa.CheckConstraint(
            "expected_count >= 1 AND ok_count >= 0 AND error_count >= 0 "
            "AND ok_count + error_count <= expected_count",
            name=op.f("ck_jobs_counts"),
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_jobs_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_model_version_id"), "jobs", ["model_version_id"], unique=False)
    op.create_index("ix_jobs_status_submitted_at", "jobs", ["status", "submitted_at"], unique=False)
    op.create_index("ix_jobs_submitted_at", "jobs", ["submitted_at"], unique=False)
    op.create_table(
        "predictions",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("item_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("external_id", sa.String(length=256), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("probabilities", _json(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.CheckConstraint("status IN ('ok', 'error')", name=op.f("ck_predictions_status")),
        sa.CheckConstraint(
            "item_index >= 0", name=op.f("ck_predictions_item_index_nonnegative")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_predictions_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_predictions_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("job_id", "item_index", name=op.f("pk_predictions")),
    )
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"], unique=False)
    op.create_index(
        "ix_predictions_job_id_external_id", "predictions", ["job_id", "external_id"], unique=False
    )
    op.create_index(
        "ix_predictions_model_version_id_label",
        "predictions",
        ["model_version_id", "label"],
        unique=False,
    )
    op.execute(PREDICTION_RESULTS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS prediction_results")
    op.drop_table("predictions")
    op.drop_table("jobs")
    op.drop_table("model_aliases")
    op.drop_index(op.f("ix_model_versions_bundle_sha256"), table_name="model_versions")
    op.drop_table("model_versions")
    op.drop_table("blobs")
