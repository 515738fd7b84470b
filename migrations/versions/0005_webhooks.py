"""Completion events and webhooks: jobs.webhook_url, jobs.finished_by, webhook_deliveries.

`jobs.finished_by` is the token of the write that made the job final, set once (COALESCE) by the
statement that makes it final: the one write that reads its own token back publishes the job's
one final event (textlstm/store/events.py). `webhook_deliveries` is the delivery record of a job's webhook: state,
attempts, next attempt, last status code or error, timestamps (never the signing secret).
The jobs status check constraints are not touched.

Revision ID: 0005_webhooks
Revises: 0004_retention
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_webhooks"
down_revision: str | Sequence[str] | None = "0004_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Same text as 0001 to 0003_cancelled: SQLite's batch mode rebuilds `jobs` on downgrade, which the view
# reads, so it is dropped and recreated around that.
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

UTC_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Nullable columns without a default: a plain ALTER TABLE on both databases.
    op.add_column("jobs", sa.Column("webhook_url", sa.String(2048), nullable=True))
    op.add_column("jobs", sa.Column("finished_by", sa.Uuid(), nullable=True))
    op.create_table(
        "webhook_deliveries",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC_TS, nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("updated_at", UTC_TS, nullable=False),
        sa.Column("delivered_at", UTC_TS, nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')", name=op.f("ck_webhook_deliveries_state")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_webhook_deliveries_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_state_next_attempt_at"),
        "webhook_deliveries",
        ["state", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_webhook_deliveries_state_next_attempt_at"), table_name="webhook_deliveries"
    )
    op.drop_table("webhook_deliveries")
    op.execute("DROP VIEW IF EXISTS prediction_results")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("finished_by")
        batch.drop_column("webhook_url")
    op.execute(PREDICTION_RESULTS_VIEW)
