"""Placement of servers on hosts: filters, then a weigher; claims are atomic.

The same code serves one host or many. Callers hold `claims_lock` (this process) and, on
PostgreSQL, an advisory transaction lock, so usage read here cannot change before the claim
(the server row's `host`) is committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from picocloud.compute.hosts import is_up
from picocloud.compute.models import Aggregate, Host, Server, ServerGroup
from picocloud.settings import Settings

DEFAULT_AZ = "nova"


class NoValidHost(Exception):
    """No host passes the filters; the message says which filter eliminated the last ones."""


@dataclass
class HostState:
    host: Host
    vcpus_used: int = 0
    ram_used: int = 0
    disk_used: int = 0
    instances: int = 0
    servers: set[str] = field(default_factory=set)
    az: str = DEFAULT_AZ
    aggregate_metadata: dict[str, set[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """What one server needs."""

    vcpus: int
    ram: int
    disk: int  # root + ephemeral + swap, GiB
    availability_zone: str | None = None
    extra_specs: dict[str, str] = field(default_factory=dict)
    image_properties: dict[str, Any] = field(default_factory=dict)
    group: ServerGroup | None = None


def lock_claims(db: Session) -> None:
    """Serialize claims across controllers sharing PostgreSQL (SQLite writers already are)."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(7427001)"))


def host_states(db: Session) -> list[HostState]:
    states = {h.name: HostState(h) for h in db.scalars(select(Host).order_by(Host.id)).all()}
    for agg in db.scalars(select(Aggregate)).all():
        for name in agg.hosts:
            st = states.get(name)
            if st is None:
                continue
            for key, value in agg.metadata_.items():
                st.aggregate_metadata.setdefault(key, set()).add(value)
            if "availability_zone" in agg.metadata_:
                st.az = agg.metadata_["availability_zone"]
    rows = db.scalars(select(Server).where(Server.deleted.is_(False), Server.host.is_not(None)))
    for server in rows.all():
        st = states.get(server.host or "")
        if st is None:
            continue
        f = server.flavor
        st.vcpus_used += int(f["vcpus"])
        st.ram_used += int(f["ram"])
        st.disk_used += (
            int(f["disk"]) + int(f.get("ephemeral", 0)) + -(-int(f.get("swap", 0)) // 1024)
        )
        st.instances += 1
        st.servers.add(server.id)
    return list(states.values())


Filter = Callable[[HostState, Request, Settings], bool]


def _enabled(st: HostState, req: Request, s: Settings) -> bool:
    return not st.host.disabled and is_up(st.host)


def _az(st: HostState, req: Request, s: Settings) -> bool:
    return req.availability_zone in (None, "", st.az)


def _ram(st: HostState, req: Request, s: Settings) -> bool:
    total = (st.host.memory_mb - s.reserved_host_memory_mb) * s.ram_allocation_ratio
    return st.ram_used + req.ram <= total


def _vcpus(st: HostState, req: Request, s: Settings) -> bool:
    return st.vcpus_used + req.vcpus <= st.host.vcpus * s.cpu_allocation_ratio


def _disk(st: HostState, req: Request, s: Settings) -> bool:
    return st.disk_used + req.disk <= st.host.disk_gb * s.disk_allocation_ratio


def _aggregate_specs(st: HostState, req: Request, s: Settings) -> bool:
    """Flavor extra specs scoped `aggregate_instance_extra_specs:` must match aggregate metadata."""
    for key, wanted in req.extra_specs.items():
        scope, _, name = key.partition(":")
        if scope == "aggregate_instance_extra_specs" and wanted not in st.aggregate_metadata.get(
            name, set()
        ):
            return False
    return True


def _image_props(st: HostState, req: Request, s: Settings) -> bool:
    arch = req.image_properties.get("architecture")
    if arch and arch not in ("x86_64", "amd64", "i686", "i386"):
        return False
    hv = req.image_properties.get("hypervisor_type")
    return not hv or hv.lower() in ("qemu", "kvm")


def _group(st: HostState, req: Request, s: Settings) -> bool:
    group = req.group
    if group is None or group.policy not in ("affinity", "anti-affinity"):
        return True
    together = bool(st.servers & set(group.members))
    others_elsewhere = any(m not in st.servers for m in group.members)
    if group.policy == "affinity":
        return together or not group.members or not others_elsewhere
    limit = int(group.rules.get("max_server_per_host", 1))
    return len(st.servers & set(group.members)) < limit


FILTERS: list[tuple[str, Filter]] = [
    ("ComputeFilter", _enabled),
    ("AvailabilityZoneFilter", _az),
    ("RamFilter", _ram),
    ("VCPUFilter", _vcpus),
    ("DiskFilter", _disk),
    ("AggregateInstanceExtraSpecsFilter", _aggregate_specs),
    ("ImagePropertiesFilter", _image_props),
    ("ServerGroupFilter", _group),
]


def select_host(states: list[HostState], req: Request, settings: Settings) -> HostState:
    """The best host for `req`; raises NoValidHost naming the filter that emptied the list."""
    candidates = states
    if not candidates:
        raise NoValidHost("No valid host was found. There are no compute hosts.")
    for name, check in FILTERS:
        candidates = [st for st in candidates if check(st, req, settings)]
        if not candidates:
            raise NoValidHost(
                f"No valid host was found. There are not enough hosts available. "
                f"({name} eliminated every host for {req.vcpus} vCPU, {req.ram} MiB RAM, "
                f"{req.disk} GiB disk)"
            )

    def free_ram(st: HostState) -> float:
        return st.host.memory_mb * settings.ram_allocation_ratio - st.ram_used

    soft = req.group.policy if req.group is not None else ""

    def weight(st: HostState) -> tuple[float, float]:
        group_term = 0.0
        if soft in ("soft-affinity", "soft-anti-affinity") and req.group is not None:
            mine = len(st.servers & set(req.group.members))
            group_term = mine if soft == "soft-affinity" else -mine
        ram = free_ram(st) if settings.scheduler_weigher != "fill" else -free_ram(st)
        return (group_term, ram)

    return max(candidates, key=weight)


def claim(st: HostState, req: Request) -> None:
    """Count `req` against the host for the rest of this scheduling pass (multi-create)."""
    st.vcpus_used += req.vcpus
    st.ram_used += req.ram
    st.disk_used += req.disk
    st.instances += 1
