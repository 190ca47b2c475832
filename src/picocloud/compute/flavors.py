"""Flavor rules (Nova semantics): who sees which flavor, listing filters and order, create and
delete, tenant access for private flavors, extra specs."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from picocloud.compute import validation as v
from picocloud.compute.errors import flavor_not_found
from picocloud.compute.models import Flavor, FlavorAccess
from picocloud.errors import BadRequest, Conflict, NotFound

FLAVOR_ID = re.compile(r"^(?! )[a-zA-Z0-9. _-]+(?<! )$")
SPEC_KEY = re.compile(r"^[a-zA-Z0-9-_:. ]{1,255}$")
MAX_FLOAT = 3.40282e38
CREATE_FIELDS = ("name", "id", "ram", "vcpus", "disk", "OS-FLV-EXT-DATA:ephemeral", "swap",
                 "rxtx_factor", "os-flavor-access:is_public")
# Nova's sort keys (its column names) -> how to read them from our row.
SORT_KEYS: dict[str, str] = {
    "flavorid": "id", "name": "name", "memory_mb": "ram", "vcpus": "vcpus", "root_gb": "disk",
    "ephemeral_gb": "ephemeral", "swap": "swap", "rxtx_factor": "rxtx_factor",
    "is_public": "is_public", "disabled": "disabled", "description": "description",
    "created_at": "created_at", "updated_at": "created_at", "id": "created_at",
    "vcpu_weight": "id",
}
MAX_PAGE = 1000  # Nova's osapi_max_limit


@dataclass(frozen=True)
class Viewer:
    """Who looks: admins see every flavor, others public ones and those shared with them."""

    project_id: str | None
    is_admin: bool


@dataclass(frozen=True)
class Listing:
    """A flavor list request, already parsed. is_public: True/False, or None for all."""

    is_public: bool | None = True
    min_ram: int | None = None
    min_disk: int | None = None
    sort_key: str = "flavorid"
    sort_dir: str = "asc"
    limit: int | None = None
    marker: str | None = None


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _has_access(db: Session, flavor_id: str, project_id: str | None) -> bool:
    return project_id is not None and db.get(FlavorAccess, (flavor_id, project_id)) is not None


def get(db: Session, flavor_id: str, viewer: Viewer) -> Flavor:
    """The flavor, if the viewer may see it; 404 otherwise (private flavors stay hidden)."""
    flavor = db.get(Flavor, flavor_id)
    if flavor is None or not (
        viewer.is_admin or flavor.is_public or _has_access(db, flavor.id, viewer.project_id)
    ):
        raise flavor_not_found(flavor_id)
    return flavor


def parse_is_public(raw: str | None, is_admin: bool) -> bool | None:
    """Nova's is_public filter: only admins choose; absent means public, "none" means all."""
    if not is_admin:
        return True
    if raw is None:
        return True
    if raw.strip().lower() == "none":
        return None
    value = v.query_bool(raw)
    if value is None:
        raise BadRequest(f"Invalid is_public filter [{raw}]")
    return value


def listing(db: Session, viewer: Viewer, req: Listing) -> list[Flavor]:
    """One page of flavors, filtered and ordered as Nova orders them."""
    if req.sort_key not in SORT_KEYS:
        raise BadRequest(f"Invalid sort_key {req.sort_key!r}: Nova sorts flavors by one of "
                         f"{', '.join(sorted(SORT_KEYS))}")
    if req.sort_dir not in ("asc", "desc"):
        raise BadRequest(f"Invalid sort_dir {req.sort_dir!r}: 'asc' or 'desc'")
    shared = set()
    if viewer.project_id is not None:
        shared = set(db.scalars(
            select(FlavorAccess.flavor_id).where(FlavorAccess.project_id == viewer.project_id)
        ))
    rows = []
    for f in db.scalars(select(Flavor)).all():
        if req.is_public is not None and f.is_public != req.is_public and not (
            req.is_public and f.id in shared
        ):
            continue
        if not viewer.is_admin and f.disabled:
            continue
        if req.min_ram is not None and f.ram < req.min_ram:
            continue
        if req.min_disk is not None and f.disk < req.min_disk:
            continue
        rows.append(f)
    attr = SORT_KEYS[req.sort_key]

    def key(f: Flavor) -> tuple[bool, Any, str]:
        value = getattr(f, attr)
        return (value is not None, value if value is not None else 0, f.id)

    rows.sort(key=key, reverse=req.sort_dir == "desc")
    if req.marker is not None:
        ids = [f.id for f in rows]
        if req.marker not in ids:
            raise BadRequest(f"marker [{req.marker}] not found")
        rows = rows[ids.index(req.marker) + 1 :]
    return rows[: min(req.limit if req.limit is not None else MAX_PAGE, MAX_PAGE)]


@dataclass(frozen=True)
class FlavorSpec:
    name: str
    id: str | None
    ram: int
    vcpus: int
    disk: int
    ephemeral: int = 0
    swap: int = 0
    rxtx_factor: float = 1.0
    is_public: bool = True


def parse_create(body: Any) -> FlavorSpec:
    """Validate a POST /flavors body as Nova's schema does (strings of digits are numbers)."""
    f = v.obj(body, "flavor")
    v.only(f, CREATE_FIELDS)
    v.required(f, "name", "ram", "vcpus", "disk")
    flavor_id = f.get("id")
    if flavor_id is not None:
        if isinstance(flavor_id, bool) or not isinstance(flavor_id, str | int | float):
            raise v.invalid("id", flavor_id, f"{flavor_id!r} is not of type 'string', "
                            "'number', 'null'")
        flavor_id = str(flavor_id)
        if not 1 <= len(flavor_id) <= 255 or not FLAVOR_ID.match(flavor_id):
            raise v.invalid("id", flavor_id, "Flavor ids are 1-255 letters, digits, spaces, "
                            "'.', '_' or '-', and do not start or end with a space")
    rxtx = f.get("rxtx_factor", 1.0)
    try:
        if isinstance(rxtx, bool) or not isinstance(rxtx, int | float | str):
            raise ValueError
        rxtx = float(rxtx)
    except ValueError:
        raise v.invalid("rxtx_factor", rxtx, "must be a positive number") from None
    if not 0 < rxtx <= MAX_FLOAT:
        raise v.invalid("rxtx_factor", rxtx, "must be a positive number")
    return FlavorSpec(
        name=v.name("name", f["name"]),
        id=flavor_id,
        ram=v.integer("ram", f["ram"], minimum=1),
        vcpus=v.integer("vcpus", f["vcpus"], minimum=1),
        disk=v.integer("disk", f["disk"]),
        ephemeral=v.integer("OS-FLV-EXT-DATA:ephemeral", f.get("OS-FLV-EXT-DATA:ephemeral", 0)),
        swap=v.integer("swap", f.get("swap", 0)),
        rxtx_factor=rxtx,
        is_public=v.boolean("os-flavor-access:is_public",
                            f.get("os-flavor-access:is_public", True)),
    )


def create(db: Session, spec: FlavorSpec) -> Flavor:
    """Store a new flavor; 409 when its name or id is taken. No id means a fresh uuid."""
    flavor_id = spec.id if spec.id is not None else str(uuid.uuid4())
    if db.get(Flavor, flavor_id) is not None:
        raise Conflict(f"Flavor with ID {flavor_id} already exists.")
    if db.scalar(select(Flavor.id).where(Flavor.name == spec.name)) is not None:
        raise Conflict(f"Flavor with name {spec.name} already exists.")
    flavor = Flavor(
        id=flavor_id, name=spec.name, vcpus=spec.vcpus, ram=spec.ram, disk=spec.disk,
        ephemeral=spec.ephemeral, swap=spec.swap, rxtx_factor=spec.rxtx_factor,
        is_public=spec.is_public, disabled=False, description=None, extra_specs={},
        created_at=utcnow(),
    )
    db.add(flavor)
    try:
        db.flush()
    except IntegrityError:  # a concurrent create took the name or id first
        raise Conflict(f"Flavor with name {spec.name} or ID {flavor_id} already exists.") from None
    return flavor


def remove(db: Session, flavor: Flavor) -> None:
    """Delete a flavor; servers keep their own copy of it, so it may still be in use."""
    db.execute(delete(FlavorAccess).where(FlavorAccess.flavor_id == flavor.id))
    db.delete(flavor)


def access(db: Session, flavor: Flavor) -> list[str]:
    """Projects a private flavor is shared with; 404 for public flavors, as Nova."""
    if flavor.is_public:
        raise NotFound("Access list not available for public flavors.")
    return list(db.scalars(
        select(FlavorAccess.project_id).where(FlavorAccess.flavor_id == flavor.id)
        .order_by(FlavorAccess.project_id)
    ))


def add_access(db: Session, flavor: Flavor, project_id: str) -> None:
    if flavor.is_public:
        raise Conflict("Can not add access to a public flavor.")
    if db.get(FlavorAccess, (flavor.id, project_id)) is not None:
        raise Conflict(f"Flavor access already exists for flavor {flavor.id} and project "
                       f"{project_id} combination.")
    db.add(FlavorAccess(flavor_id=flavor.id, project_id=project_id))
    db.flush()


def remove_access(db: Session, flavor: Flavor, project_id: str) -> None:
    row = db.get(FlavorAccess, (flavor.id, project_id))
    if row is None:
        raise NotFound(f"Flavor access not found for {flavor.id} / {project_id} combination.")
    db.delete(row)
    db.flush()


def parse_specs(body: Any) -> dict[str, str]:
    """Extra specs as Nova takes them: keys of [a-zA-Z0-9-_:. ], values up to 255 characters
    (numbers and booleans are stored as their text)."""
    if not isinstance(body, dict):
        raise v.invalid("extra_specs", body, f"{body!r} is not of type 'object'")
    specs: dict[str, str] = {}
    for key, value in body.items():
        if not SPEC_KEY.match(key):
            raise v.invalid("extra_specs", key, f"'{key}' does not match any of the regexes: "
                            "'^[a-zA-Z0-9-_:. ]{1,255}$'")
        if isinstance(value, str | int | float):  # bool is an int: stored as "True"/"False"
            text = str(value)
        else:
            raise v.invalid(key, value, f"{value!r} is not of type 'string', 'number', "
                            "'boolean'")
        if len(text) > 255:
            raise v.invalid(key, value, f"'{text}' is too long")
        specs[key] = text
    return specs


def set_specs(flavor: Flavor, specs: dict[str, str]) -> dict[str, str]:
    flavor.extra_specs = {**flavor.extra_specs, **specs}
    return dict(flavor.extra_specs)


def spec(flavor: Flavor, key: str) -> str:
    if key not in flavor.extra_specs:
        raise NotFound(f"Flavor {flavor.id} has no extra specs with key {key}.")
    return flavor.extra_specs[key]


def unset_spec(flavor: Flavor, key: str) -> None:
    spec(flavor, key)
    flavor.extra_specs = {k: val for k, val in flavor.extra_specs.items() if k != key}
