"""Hypervisor hosts: registration and heartbeat by the host agent, up/down, availability
zones, what runs where, and the Nova "services" they appear as.

A host is Nova's nova-compute service and its compute node in one row. The controller's
nova-scheduler and nova-conductor run inside picocloud itself; they are listed (in the
"internal" zone, always up while the API answers) because that is what operators expect of
`openstack compute service list`, and they take the service ids 1 and 2.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from picocloud.compute.models import Aggregate, Host, Server
from picocloud.compute.validation import row_id
from picocloud.compute.virt.base import HostInfo
from picocloud.errors import BadRequest, Conflict, NotFound

HEARTBEAT_TIMEOUT = timedelta(seconds=60)  # a host is down once its heartbeat is this old
DEFAULT_AZ = "nova"
INTERNAL_AZ = "internal"
COMPUTE = "nova-compute"
CONTROLLER_BINARIES = ("nova-scheduler", "nova-conductor")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def register_host(db: Session, info: HostInfo, name: str, host_ip: str | None = None) -> Host:
    """Create or refresh the host `name` with what its driver reports; counts as a heartbeat.

    The operator's choices (disabled, forced down) survive re-registration."""
    now = utcnow()
    host = db.scalar(select(Host).where(Host.name == name))
    if host is None:
        host = Host(name=name, uuid=str(uuid.uuid4()), disabled=False, disabled_reason=None,
                    forced_down=False, host_ip=host_ip or "127.0.0.1", created_at=now)
        db.add(host)
    elif host_ip:
        host.host_ip = host_ip
    host.vcpus = info.vcpus
    host.memory_mb = info.memory_mb
    host.disk_gb = info.disk_gb
    host.accel = info.accel
    host.hypervisor_type = info.hypervisor_type
    host.hypervisor_version = info.hypervisor_version
    host.cpu_info = dict(info.cpu_info)
    host.heartbeat_at = now
    db.flush()
    return host


def heartbeat(db: Session, name: str) -> bool:
    """Record that host `name` is alive; False when it is not registered (register it)."""
    result = db.execute(update(Host).where(Host.name == name).values(heartbeat_at=utcnow()))
    return bool(getattr(result, "rowcount", 0))


def is_up(host: Host, now: datetime | None = None) -> bool:
    return not host.forced_down and (now or utcnow()) - host.heartbeat_at < HEARTBEAT_TIMEOUT


def controller_name(configured: str = "") -> str:
    """The name the controller's own services are listed under (and the local host's)."""
    return configured or socket.gethostname()


def zones(db: Session) -> dict[str, str]:
    """Each aggregated host's availability zone (from aggregate metadata); others are "nova"."""
    found: dict[str, set[str]] = {}
    for agg in db.scalars(select(Aggregate).order_by(Aggregate.id)):
        az = agg.metadata_.get("availability_zone")
        if az:
            for name in agg.hosts:
                found.setdefault(name, set()).add(az)
    return {name: ",".join(sorted(azs)) for name, azs in found.items()}


def zone_of(zone_map: dict[str, str], host_name: str) -> str:
    return zone_map.get(host_name, DEFAULT_AZ)


@dataclass
class HostUsage:
    """What the servers placed on one host take from it."""

    vcpus: int = 0
    memory_mb: int = 0
    disk_gb: int = 0
    running_vms: int = 0
    workload: int = 0  # servers with a task in progress (Nova's current_workload)
    servers: list[tuple[str, str]] = field(default_factory=list)  # (uuid, name)


def usage_by_host(db: Session) -> dict[str, HostUsage]:
    found: dict[str, HostUsage] = {}
    rows = db.scalars(
        select(Server).where(Server.deleted.is_(False), Server.host.is_not(None))
        .order_by(Server.created_at)
    )
    for s in rows:
        u = found.setdefault(s.host or "", HostUsage())
        f = s.flavor
        u.vcpus += int(f.get("vcpus", 0))
        u.memory_mb += int(f.get("ram", 0))
        u.disk_gb += int(f.get("disk", 0)) + int(f.get("ephemeral", 0))
        u.disk_gb += -(-int(f.get("swap", 0)) // 1024)
        u.running_vms += 1
        u.workload += s.task_state is not None
        u.servers.append((s.id, s.name))
    return found


def all_hosts(db: Session) -> list[Host]:
    return list(db.scalars(select(Host).order_by(Host.id)))


def get(db: Session, host_id: str) -> Host:
    """A host by the hypervisor id of the API (an integer below 2.53)."""
    number = row_id(host_id)
    host = db.get(Host, number) if number is not None else None
    if host is None:
        raise NotFound(f"Hypervisor with ID '{host_id}' could not be found.")
    return host


def search(db: Session, pattern: str) -> list[Host]:
    """Hosts whose name contains `pattern` (Nova's hypervisor search); 404 when none."""
    found = [h for h in all_hosts(db) if pattern in h.name]
    if not found:
        raise NotFound(f"No hypervisor matching '{pattern}' could be found.")
    return found


def uptime(host: Host, local_name: str) -> str:
    """The host's `uptime` line; only the controller's own host can be asked (Nova answers
    501 when a driver cannot)."""
    from picocloud.errors import NotImplementedFault

    if host.name not in (local_name, socket.gethostname()):
        raise NotImplementedFault("Virt driver does not implement host uptime for remote hosts.")
    with open("/proc/uptime") as fh:
        seconds = int(float(fh.read().split()[0]))
    days, rest = divmod(seconds, 86400)
    hours, minutes = divmod(rest // 60, 60)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    now = datetime.now().strftime("%H:%M:%S")
    return f" {now} up {days} days, {hours}:{minutes:02d},  load average: {load}"


# -- services --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Service:
    """A row of os-services."""

    id: int
    binary: str
    host: str
    zone: str
    disabled: bool
    disabled_reason: str | None
    forced_down: bool
    up: bool
    updated_at: datetime | None


def service_id(host: Host) -> int:
    return host.id + len(CONTROLLER_BINARIES)


def services(db: Session, controller: str) -> list[Service]:
    now = utcnow()
    rows = [
        Service(i + 1, binary, controller, INTERNAL_AZ, False, None, False, True, now)
        for i, binary in enumerate(CONTROLLER_BINARIES)
    ]
    zone_map = zones(db)
    rows.extend(
        Service(service_id(h), COMPUTE, h.name, zone_of(zone_map, h.name), h.disabled,
                h.disabled_reason, h.forced_down, is_up(h, now), h.heartbeat_at)
        for h in all_hosts(db)
    )
    return rows


def compute_host(db: Session, host: str, binary: str) -> Host:
    """The nova-compute service on `host`, for enable/disable/force-down."""
    if binary in CONTROLLER_BINARIES:
        raise BadRequest(f"{binary} runs inside picocloud itself: only nova-compute services "
                         "can be enabled, disabled or forced down.")
    found = db.scalar(select(Host).where(Host.name == host)) if binary == COMPUTE else None
    if found is None:
        raise NotFound(f"Could not find binary {binary} on host {host}.")
    return found


def delete_service(db: Session, ident: str) -> None:
    """Forget a compute host (os-services DELETE); refused while servers live on it."""
    number = row_id(ident) or -1
    if 1 <= number <= len(CONTROLLER_BINARIES):
        raise BadRequest(f"{CONTROLLER_BINARIES[number - 1]} runs inside picocloud itself and "
                         "cannot be deleted.")
    host = db.get(Host, number - len(CONTROLLER_BINARIES))
    if host is None:
        raise NotFound(f"Service {ident} could not be found.")
    if host.name in usage_by_host(db):
        raise Conflict("Unable to delete compute service that is hosting instances. Migrate "
                       "or delete the instances first.")
    for agg in db.scalars(select(Aggregate)):
        if host.name in agg.hosts:
            agg.hosts = [h for h in agg.hosts if h != host.name]
    db.delete(host)
