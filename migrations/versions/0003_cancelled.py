"""Cancel: `cancelled` item and job status, jobs.cancelled_count, a wider predictions.status.

`textlstm-admin jobs cancel` (textlstm.store.jobs.cancel_job) stores every item of the job that
has no row yet as `cancelled` (counted in error_count too, like `expired`, so the job's counts
still add up to its total) and ends the job `cancelled`. predictions.status was VARCHAR(8);
'cancelled' has 9 letters, so it becomes VARCHAR(16) like jobs.status. The prediction_results
view is dropped and recreated around the table changes (SQLite's batch mode rebuilds the tables
it reads, PostgreSQL refuses to retype a column a view uses).

Revision ID: 0003_cancelled
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_cancelled"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Same text as 0001 and 0002: the view itself does not change.
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

JOB_STATUS_OLD = "status IN ('queued', 'running', 'done', 'failed', 'partial', 'expired')"
JOB_STATUS_NEW = (
    "status IN ('queued', 'running', 'done', 'failed', 'partial', 'expired', 'cancelled')"
)
ITEM_STATUS_OLD = "status IN ('ok', 'error', 'expired')"
ITEM_STATUS_NEW = "status IN ('ok', 'error', 'expired', 'cancelled')"
CANCELLED_COUNT = "cancelled_count >= 0 AND expired_count + cancelled_count <= error_count"


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS prediction_results")
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("cancelled_count", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_jobs_status"), JOB_STATUS_NEW)
        batch.create_check_constraint(op.f("ck_jobs_cancelled"), CANCELLED_COUNT)
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column(
            "status", existing_type=sa.String(8), type_=sa.String(16), existing_nullable=False
        )
        batch.drop_constraint(op.f("ck_predictions_status"), type_="check")
        batch.create_check_constraint(op.f("ck_predictions_status"), ITEM_STATUS_NEW)
    op.execute(PREDICTION_RESULTS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS prediction_results")
    # Cancelled rows become plain errors (their `error` text says they were cancelled);
    # cancelled jobs are failed or partial by the old rules.
    op.execute("UPDATE predictions SET status = 'error' WHERE status = 'cancelled'")
    op.execute(
        "UPDATE jobs SET status = CASE WHEN ok_count = 0 THEN 'failed' ELSE 'partial' END "
        "WHERE status = 'cancelled'"
    )
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint(op.f("ck_predictions_status"), type_="check")
        batch.create_check_constraint(op.f("ck_predictions_status"), ITEM_STATUS_OLD)
        batch.alter_column(
            "status", existing_type=sa.String(16), type_=sa.String(8), existing_nullable=False
        )
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("ck_jobs_cancelled"), type_="check")
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_jobs_status"), JOB_STATUS_OLD)
        batch.drop_column("cancelled_count")
    op.execute(PREDICTION_RESULTS_VIEW)
