"""Compute: server tags (microversion 2.26), removed with their server.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "compute_server_tag",
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("tag", sa.String(length=60), nullable=False),
        sa.ForeignKeyConstraint(["server_id"], ["compute_server.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("server_id", "tag"),
    )
