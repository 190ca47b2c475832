"""Compute tables: flavors, keypairs, hosts, servers and what hangs off them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from picocloud.db import Base


class Flavor(Base):
    __tablename__ = "compute_flavor"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # Nova's flavorid
    name: Mapped[str] = mapped_column(String(255), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram: Mapped[int] = mapped_column(Integer)  # MiB
    disk: Mapped[int] = mapped_column(Integer)  # GiB
    ephemeral: Mapped[int] = mapped_column(Integer, default=0)  # GiB
    swap: Mapped[int] = mapped_column(Integer, default=0)  # MiB
    rxtx_factor: Mapped[float] = mapped_column(Float, default=1.0)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text)
    extra_specs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class FlavorAccess(Base):
    __tablename__ = "compute_flavor_access"
    flavor_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("compute_flavor.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class Keypair(Base):
    __tablename__ = "compute_keypair"
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(16), default="ssh")
    fingerprint: Mapped[str] = mapped_column(String(255))
    public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Host(Base):
    """A hypervisor host (Nova's compute service + compute node in one row)."""

    __tablename__ = "compute_host"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    accel: Mapped[str] = mapped_column(String(8))
    hypervisor_type: Mapped[str] = mapped_column(String(32))
    hypervisor_version: Mapped[int] = mapped_column(Integer)
    cpu_info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    host_ip: Mapped[str] = mapped_column(String(64), default="127.0.0.1")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Server(Base):
    """An instance: desired state (vm_state/task_state) written by the API, acted on by the
    host agent, which reports power_state."""

    __tablename__ = "compute_server"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    image_id: Mapped[str] = mapped_column(String(36))
    flavor_id: Mapped[str] = mapped_column(String(255))
    flavor: Mapped[dict[str, Any]] = mapped_column(JSON)  # snapshot: vcpus, ram, disk, ...
    old_flavor: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # during resize
    key_name: Mapped[str | None] = mapped_column(String(255))
    key_data: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    user_data: Mapped[str | None] = mapped_column(Text)
    config_drive: Mapped[bool] = mapped_column(Boolean, default=False)
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255), index=True)
    vm_state: Mapped[str] = mapped_column(String(32), index=True)
    task_state: Mapped[str | None] = mapped_column(String(32))
    # what task_state needs beyond the row (a snapshot's image, a backup's rotation); the
    # agent clears it when the task ends
    task_args: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    power_state: Mapped[int] = mapped_column(Integer, default=0)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    locked_by: Mapped[str | None] = mapped_column(String(16))
    reservation_id: Mapped[str] = mapped_column(String(32))
    launch_index: Mapped[int] = mapped_column(Integer, default=0)
    access_ipv4: Mapped[str] = mapped_column(String(64), default="")
    access_ipv6: Mapped[str] = mapped_column(String(64), default="")
    networks: Mapped[Any] = mapped_column(JSON)  # as requested: "none", "auto" or a list
    security_groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    server_group_id: Mapped[str | None] = mapped_column(String(36))
    fault: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text)  # microversion 2.19
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    launched_at: Mapped[datetime | None] = mapped_column(DateTime)
    terminated_at: Mapped[datetime | None] = mapped_column(DateTime)


class ServerTag(Base):
    """A server's tag (microversion 2.26); deleting the server deletes its tags."""

    __tablename__ = "compute_server_tag"
    server_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("compute_server.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(60), primary_key=True)


class InstanceAction(Base):
    __tablename__ = "compute_instance_action"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    server_id: Mapped[str] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    events: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    start_time: Mapped[datetime] = mapped_column(DateTime)
    finish_time: Mapped[datetime | None] = mapped_column(DateTime)


class QuotaLimit(Base):
    """A project's limit for one resource, overriding the default."""

    __tablename__ = "compute_quota"
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class Aggregate(Base):
    __tablename__ = "compute_aggregate"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    hosts: Mapped[list[str]] = mapped_column(JSON, default=list)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime)


class ServerGroup(Base):
    __tablename__ = "compute_server_group"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    policy: Mapped[str] = mapped_column(String(32))
    rules: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    members: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime)
