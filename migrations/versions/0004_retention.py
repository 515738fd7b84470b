"""Retention: an index on jobs.finished_at, so `jobs purge` finds old finished jobs without a scan.

Only finished jobs have a finished_at (a queued or running job's is NULL), so the index holds
exactly the rows a purge looks at, in the order it deletes them (oldest first).

Revision ID: 0004_retention
Revises: 0003_cancelled
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_retention"
down_revision: str | Sequence[str] | None = "0003_cancelled"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobs_finished_at", table_name="jobs")
