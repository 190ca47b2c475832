"""Image metadata definitions (metadefs): namespaces, objects, properties, tags, resource types.

Seeds the resource types Glance ships with, protected like Glance's.

Revision ID: 0003
Revises: 0002
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

SEEDED_RESOURCE_TYPES = (
    "OS::Glance::Image",
    "OS::Cinder::Volume",
    "OS::Nova::Flavor",
    "OS::Nova::Aggregate",
    "OS::Nova::Server",
)


def _timestamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    ]


def _namespace_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["namespace_id"], ["image_metadef_namespace.id"], ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "image_metadef_namespace",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(length=80), nullable=False),
        sa.Column("display_name", sa.String(length=80), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("visibility", sa.String(length=32), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace", name="uq_metadef_namespace_namespace"),
    )
    op.create_index(
        op.f("ix_image_metadef_namespace_owner"), "image_metadef_namespace", ["owner"],
        unique=False,
    )
    resource_type = op.create_table(
        "image_metadef_resource_type",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", name="uq_metadef_resource_type_name"),
    )
    op.create_table(
        "image_metadef_namespace_resource_type",
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("resource_type_id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=80), nullable=True),
        sa.Column("properties_target", sa.String(length=80), nullable=True),
        *_timestamps(),
        _namespace_fk(),
        sa.ForeignKeyConstraint(
            ["resource_type_id"], ["image_metadef_resource_type.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("namespace_id", "resource_type_id"),
    )
    op.create_index(
        op.f("ix_image_metadef_namespace_resource_type_resource_type_id"),
        "image_metadef_namespace_resource_type", ["resource_type_id"], unique=False,
    )
    op.create_table(
        "image_metadef_object",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("required", sa.JSON(), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=True),
        *_timestamps(),
        _namespace_fk(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace_id", "name", name="uq_metadef_object_name"),
    )
    op.create_table(
        "image_metadef_property",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        *_timestamps(),
        _namespace_fk(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace_id", "name", name="uq_metadef_property_name"),
    )
    op.create_table(
        "image_metadef_tag",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        *_timestamps(),
        _namespace_fk(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace_id", "name", name="uq_metadef_tag_name"),
    )
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    op.bulk_insert(
        resource_type,
        [{"name": name, "protected": True, "created_at": now, "updated_at": now}
         for name in SEEDED_RESOURCE_TYPES],
    )
