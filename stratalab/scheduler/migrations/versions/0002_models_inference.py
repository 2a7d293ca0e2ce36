"""Models, projects, inference records and batch shards; jobs.model_id.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_BIGID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    """Add the model registry, projects, request records and batch shards."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("model_id", sa.String(32), nullable=True))
        batch.create_index("ix_jobs_model_id", ["model_id"])
    op.create_table(
        "models",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("input_schema", sa.JSON, nullable=True),
        sa.Column("output_schema", sa.JSON, nullable=True),
        sa.Column("labels", sa.JSON, nullable=True),
        sa.Column("preprocessing", sa.String(32), nullable=True),
        sa.Column("postprocessing", sa.String(32), nullable=True),
        sa.Column("source_job_id", sa.String(32), nullable=True),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("deleted_at", _TS, nullable=True),
    )
    op.create_index("ix_models_user_created", "models", ["user_id", "created_at"])
    op.create_index("ix_models_sha256", "models", ["sha256"])
    op.create_table(
        "projects",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model_id", sa.String(32), nullable=True),
        sa.Column("total_tasks", sa.Integer, nullable=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
    )
    op.create_index("ix_projects_user_created", "projects", ["user_id", "created_at"])
    op.create_table(
        "inference_records",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(32), nullable=True),
        sa.Column("model_id", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("error_code", sa.String(32), nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("compute_ms", sa.Float, nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(256), nullable=True),
        sa.Column("device", sa.String(16), nullable=True),
        sa.Column("pool", sa.String(32), nullable=True),
    )
    op.create_index("ix_inference_records_project_ts", "inference_records", ["project_id", "ts"])
    op.create_index("ix_inference_records_user_ts", "inference_records", ["user_id", "ts"])
    op.create_table(
        "batch_shards",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("start", sa.Integer, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(256), nullable=True),
        sa.Column("succeeded", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("compute_ms", sa.Float, nullable=False),
        sa.Column("errors", sa.JSON, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )


def downgrade() -> None:
    """Drop what the upgrade added."""
    for table in ("batch_shards", "inference_records", "projects", "models"):
        op.drop_table(table)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_model_id")
        batch.drop_column("model_id")
