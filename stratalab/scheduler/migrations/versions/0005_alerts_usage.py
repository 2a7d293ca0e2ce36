"""Alerts and usage records.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_BIGID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    """Add the alerts and the usage records."""
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("metric", sa.String(64), nullable=True),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("subject", sa.String(256), nullable=True),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.Column("acknowledged_at", _TS, nullable=True),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
    )
    op.create_index("ix_alerts_status_started", "alerts", ["status", "started_at"])
    op.create_index("ix_alerts_started_at", "alerts", ["started_at"])
    op.create_table(
        "usage_records",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(32), nullable=True),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("cpu_ms", sa.Float, nullable=False),
        sa.Column("gpu_ms", sa.Float, nullable=False),
        sa.Column("tasks", sa.Integer, nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(256), nullable=True),
        sa.Column("pool", sa.String(32), nullable=True),
        sa.Column("energy_j", sa.Float, nullable=True),
    )
    op.create_index("ix_usage_records_user_ts", "usage_records", ["user_id", "ts"])
    op.create_index("ix_usage_records_project_ts", "usage_records", ["project_id", "ts"])
    op.create_index("ix_usage_records_ts", "usage_records", ["ts"])


def downgrade() -> None:
    """Drop what the upgrade added."""
    op.drop_table("usage_records")
    op.drop_table("alerts")
