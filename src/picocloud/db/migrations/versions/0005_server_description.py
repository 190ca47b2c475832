"""Compute: a server's description (microversion 2.19).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("compute_server") as batch:
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))
