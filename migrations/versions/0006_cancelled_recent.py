"""An index on jobs (status, finished_at): the recently cancelled jobs, read without a scan.

On amqp:// there is no Redis set of cancelled jobs, so every worker re-reads the ids of the jobs
cancelled in the last `cancel_keep_s` from SQL every `worker_cancel_refresh_ms`
(textlstm.store.jobs.recently_cancelled_job_ids). Without this index that read would walk every
cancelled job ever kept (ix_jobs_status_submitted_at) or every job finished recently
(ix_jobs_finished_at) twice a second per worker; with it, it reads only the rows it returns.
The table itself does not change.

Revision ID: 0006_cancelled_recent
Revises: 0005_webhooks
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_cancelled_recent"
down_revision: str | Sequence[str] | None = "0005_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_status_finished_at", "jobs", ["status", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_finished_at", table_name="jobs")
