"""Image: images and image members.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "image",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("visibility", sa.String(length=20), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("os_hidden", sa.Boolean(), nullable=False),
        sa.Column("disk_format", sa.String(length=20), nullable=True),
        sa.Column("container_format", sa.String(length=20), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("virtual_size", sa.BigInteger(), nullable=True),
        sa.Column("checksum", sa.String(length=32), nullable=True),
        sa.Column("os_hash_algo", sa.String(length=64), nullable=True),
        sa.Column("os_hash_value", sa.String(length=128), nullable=True),
        sa.Column("min_disk", sa.Integer(), nullable=False),
        sa.Column("min_ram", sa.Integer(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_image_name"), "image", ["name"], unique=False)
    op.create_index(op.f("ix_image_owner"), "image", ["owner"], unique=False)
    op.create_index(op.f("ix_image_status"), "image", ["status"], unique=False)
    op.create_index(op.f("ix_image_visibility"), "image", ["visibility"], unique=False)
    op.create_table(
        "image_member",
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "member_id"),
    )
    op.create_index(op.f("ix_image_member_member_id"), "image_member", ["member_id"], unique=False)
