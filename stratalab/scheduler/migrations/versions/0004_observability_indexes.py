"""Indexes for the dashboard's latest-N reads: jobs and checkpoints by creation time.

``GET /dashboard`` and ``GET /metrics`` read the newest jobs and checkpoints
across all users every second; without these indexes each read sorts the
whole table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two indexes."""
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_index("ix_checkpoints_created_at", "checkpoints", ["created_at"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_checkpoints_created_at", table_name="checkpoints")
    op.drop_index("ix_jobs_created_at", table_name="jobs")
