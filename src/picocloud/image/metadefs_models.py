"""Metadata definition tables (Glance "metadefs"): namespaces and what they define.

Rows point at their namespace by an internal integer id, so a namespace can be renamed
without touching its contents; the API only ever shows names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from picocloud.db import Base


def _namespace_fk() -> Mapped[int]:
    """The owning namespace; its (namespace_id, name) unique constraint doubles as the index."""
    return mapped_column(Integer, ForeignKey("image_metadef_namespace.id", ondelete="CASCADE"))


class MetadefNamespace(Base):
    __tablename__ = "image_metadef_namespace"
    __table_args__ = (UniqueConstraint("namespace", name="uq_metadef_namespace_namespace"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(80))
    display_name: Mapped[str | None] = mapped_column(String(80))
    description: Mapped[str | None] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(String(32))
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str | None] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class MetadefObject(Base):
    __tablename__ = "image_metadef_object"
    __table_args__ = (UniqueConstraint("namespace_id", "name", name="uq_metadef_object_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace_id: Mapped[int] = _namespace_fk()
    name: Mapped[str] = mapped_column(String(80))
    description: Mapped[str | None] = mapped_column(Text)
    required: Mapped[list[str] | None] = mapped_column(JSON)
    # {property name: property definition}, as in a namespace's `properties`
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class MetadefProperty(Base):
    __tablename__ = "image_metadef_property"
    __table_args__ = (UniqueConstraint("namespace_id", "name", name="uq_metadef_property_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace_id: Mapped[int] = _namespace_fk()
    name: Mapped[str] = mapped_column(String(80))
    # the property's JSON-schema-like definition (title, type, enum...), without its name
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class MetadefTag(Base):
    __tablename__ = "image_metadef_tag"
    __table_args__ = (UniqueConstraint("namespace_id", "name", name="uq_metadef_tag_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace_id: Mapped[int] = _namespace_fk()
    name: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class MetadefResourceType(Base):
    """A kind of resource metadata applies to (OS::Glance::Image...); seeded ones are
    protected."""

    __tablename__ = "image_metadef_resource_type"
    __table_args__ = (UniqueConstraint("name", name="uq_metadef_resource_type_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80))
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class MetadefResourceTypeAssociation(Base):
    """A namespace applies to a resource type, its properties named with `prefix`."""

    __tablename__ = "image_metadef_namespace_resource_type"
    namespace_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("image_metadef_namespace.id", ondelete="CASCADE"),
        primary_key=True,
    )
    resource_type_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("image_metadef_resource_type.id", ondelete="CASCADE"),
        primary_key=True, index=True,
    )
    prefix: Mapped[str | None] = mapped_column(String(80))
    properties_target: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
