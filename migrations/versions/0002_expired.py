"""Deadlines: `expired` item and job status, and jobs.expired_count.

Items not started before their job's deadline are stored with status `expired` (counted in
error_count too, so a job still finishes when every item is in); a job whose items all expired
ends `expired`. The prediction_results view is dropped and recreated around the table changes
because SQLite's batch mode rebuilds the tables it reads.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Same text as 0001: the view itself does not change.
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

JOB_STATUS_OLD = "status IN ('queued', 'running', 'done', 'failed', 'partial')"
JOB_STATUS_NEW = "status IN ('queued', 'running', 'done', 'failed', 'partial', 'expired')"
ITEM_STATUS_OLD = "status IN ('ok', 'error')"
ITEM_STATUS_NEW = "status IN ('ok', 'error', 'expired')"


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS prediction_results")
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("expired_count", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_jobs_status"), JOB_STATUS_NEW)
        batch.create_check_constraint(
            op.f("ck_jobs_expired"), "expired_count >= 0 AND expired_count <= error_count"
        )
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint(op.f("ck_predictions_status"), type_="check")
        batch.create_check_constraint(op.f("ck_predictions_status"), ITEM_STATUS_NEW)
    op.execute(PREDICTION_RESULTS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS prediction_results")
    # Expired rows become plain errors (their `error` text says why); expired jobs are failed
    # or partial by the old rules.
    op.execute("UPDATE predictions SET status = 'error' WHERE status = 'expired'")
    op.execute(
        "UPDATE jobs SET status = CASE WHEN ok_count = 0 THEN 'failed' ELSE 'partial' END "
        "WHERE status = 'expired'"
    )
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint(op.f("ck_predictions_status"), type_="check")
        batch.create_check_constraint(op.f("ck_predictions_status"), ITEM_STATUS_OLD)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("ck_jobs_expired"), type_="check")
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_jobs_status"), JOB_STATUS_OLD)
        batch.drop_column("expired_count")
    op.execute(PREDICTION_RESULTS_VIEW)
