"""Compute: the arguments of a server's task in progress (the image a snapshot or backup
fills, a backup's type and rotation), so the host agent can act on them.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    with op.batch_alter_table("compute_server") as batch:
        batch.add_column(sa.Column("task_args", sa.JSON(), nullable=True))
