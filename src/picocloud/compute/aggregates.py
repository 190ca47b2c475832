"""Host aggregates (Nova semantics): named host sets with metadata; the metadata key
`availability_zone` makes the aggregate an availability zone, and a host sits in one zone."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from picocloud.compute import hosts
from picocloud.compute.models import Aggregate, Host
from picocloud.compute.validation import row_id
from picocloud.errors import BadRequest, Conflict, NotFound

AZ_KEY = "availability_zone"


def get(db: Session, aggregate_id: str) -> Aggregate:
    number = row_id(aggregate_id)
    agg = db.get(Aggregate, number) if number is not None else None
    if agg is None:
        raise NotFound(f"Aggregate {aggregate_id} could not be found.")
    return agg


def listing(db: Session) -> list[Aggregate]:
    return list(db.scalars(select(Aggregate).order_by(Aggregate.id)))


def check_zone_name(az: str | None) -> None:
    if az is None:
        return
    if ":" in az:
        raise BadRequest(f"Invalid availability zone name {az!r}: it may not contain ':'.")
    if az == hosts.INTERNAL_AZ:
        raise BadRequest(f"The availability zone name cannot be {hosts.INTERNAL_AZ!r}: "
                         "picocloud's own services live there.")


def _name_free(db: Session, name: str, own_id: int | None = None) -> None:
    other = db.scalar(select(Aggregate).where(Aggregate.name == name))
    if other is not None and other.id != own_id:
        raise Conflict(f"Aggregate {name} already exists.")


def create(db: Session, name: str, az: str | None) -> Aggregate:
    check_zone_name(az)
    _name_free(db, name)
    now = hosts.utcnow()
    agg = Aggregate(uuid=str(uuid.uuid4()), name=name, hosts=[],
                    metadata_={AZ_KEY: az} if az else {}, created_at=now, updated_at=None)
    db.add(agg)
    try:
        db.flush()
    except IntegrityError:
        raise Conflict(f"Aggregate {name} already exists.") from None
    return agg


def _zone_conflicts(
    db: Session, agg: Aggregate, host_names: list[str], az: str | None
) -> list[str]:
    """Zones other aggregates give these hosts that differ from `az` (a host has one zone)."""
    if not az:
        return []
    found = set()
    for other in listing(db):
        other_az = other.metadata_.get(AZ_KEY)
        if other.id != agg.id and other_az and other_az != az:
            if set(other.hosts) & set(host_names):
                found.add(other_az)
    return sorted(found)


def _change_zone(db: Session, agg: Aggregate, az: str | None, verb: str) -> None:
    """Refuse a zone change that would put a host in two zones or move running servers."""
    check_zone_name(az)
    if (agg.metadata_.get(AZ_KEY) or None) == (az or None):
        return
    clash = _zone_conflicts(db, agg, agg.hosts, az)
    if clash:
        raise BadRequest(f"Cannot {verb} aggregate {agg.id}. Reason: One or more hosts already "
                         f"in availability zone(s) {clash}.")
    busy = hosts.usage_by_host(db)
    if any(h in busy for h in agg.hosts):
        raise BadRequest(f"Cannot {verb} aggregate {agg.id}. Reason: One or more hosts contain "
                         "instances in this zone.")


def update(db: Session, agg: Aggregate, name: str | None, az: str | None, set_az: bool) -> None:
    if name is not None:
        _name_free(db, name, agg.id)
        agg.name = name
    if set_az:
        _change_zone(db, agg, az, "update")
        meta = {k: val for k, val in agg.metadata_.items() if k != AZ_KEY}
        if az:
            meta[AZ_KEY] = az
        agg.metadata_ = meta
    agg.updated_at = hosts.utcnow()
    db.flush()


def set_metadata(db: Session, agg: Aggregate, changes: Mapping[str, str | None]) -> None:
    """Merge `changes` into the metadata; a None value removes its key."""
    if AZ_KEY in changes:
        _change_zone(db, agg, changes[AZ_KEY], "update metadata of")
    meta = dict(agg.metadata_)
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    agg.metadata_ = meta
    agg.updated_at = hosts.utcnow()


def add_host(db: Session, agg: Aggregate, name: str) -> None:
    if db.scalar(select(Host).where(Host.name == name)) is None:
        raise NotFound(f"Compute host {name} could not be found.")
    if name in agg.hosts:
        raise Conflict(f"Aggregate {agg.id} already has host {name}.")
    clash = _zone_conflicts(db, agg, [name], agg.metadata_.get(AZ_KEY))
    if clash:
        raise Conflict(f"Cannot add host to aggregate {agg.id}. Reason: One or more hosts "
                       f"already in availability zone(s) {clash}.")
    agg.hosts = [*agg.hosts, name]
    agg.updated_at = hosts.utcnow()


def remove_host(db: Session, agg: Aggregate, name: str) -> None:
    if name not in agg.hosts:
        raise NotFound(f"Cannot remove host {name} in aggregate {agg.id}: it is not there.")
    agg.hosts = [h for h in agg.hosts if h != name]
    agg.updated_at = hosts.utcnow()


def remove(db: Session, agg: Aggregate) -> None:
    if agg.hosts:
        raise BadRequest(f"Cannot remove aggregate {agg.id}. Reason: Host aggregate is not "
                         "empty.")
    db.delete(agg)
