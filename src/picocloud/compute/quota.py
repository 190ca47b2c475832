"""Compute quotas as Nova's legacy driver has them: limits per project (optionally per user),
usage counted from live rows, and the check that keeps a create within them.

Limits resolve as: built-in default < operator default (os-quota-class-sets "default") <
project override < user override. -1 means unlimited.

Concurrency contract of `check`: it takes the quota lock of the project (`lock`), held until
the caller's transaction ends, and only then counts usage. The caller must add the rows it
checked for (servers, keypairs, groups) in that same transaction and commit it; any other
create in the project waits at its own `check` and then counts the committed rows, so two
creates can never both pass against the same stale usage.
- PostgreSQL: a transaction-scoped advisory lock keyed by the project (no row needs to exist,
  so a project without overrides is covered too; the lock ends at commit or rollback).
- SQLite: a no-op UPDATE, which makes the transaction the database's single writer from here
  to its end (pysqlite opens the transaction at the first write, so nothing read before is
  stale: reads before it ran outside any snapshot).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from picocloud.compute.errors import quota_exceeded
from picocloud.compute.models import Keypair, QuotaLimit, Server, ServerGroup
from picocloud.errors import BadRequest, Forbidden

UNLIMITED = -1
DEFAULTS: dict[str, int] = {
    "instances": 10,
    "cores": 20,
    "ram": 51200,
    "metadata_items": 128,
    "injected_files": 5,
    "injected_file_content_bytes": 10240,
    "injected_file_path_bytes": 255,
    "key_pairs": 100,
    "server_groups": 10,
    "server_group_members": 10,
}
# Shown (never enforced: networking owns them) below microversion 2.36, as Nova shows them.
LEGACY_NETWORK: dict[str, int] = {
    "floating_ips": 10,
    "fixed_ips": UNLIMITED,
    "security_groups": 10,
    "security_group_rules": 20,
}
RESOURCES: tuple[str, ...] = (*DEFAULTS, *LEGACY_NETWORK)
DEFAULT_CLASS = "default"
_CLASS_PREFIX = "class:"  # QuotaLimit.project_id of a quota class (operator defaults)
CLASS_NAME_MAX = 64 - len(_CLASS_PREFIX)
_LOCK_NAMESPACE = 0x70633071  # first key of PostgreSQL's two-int advisory lock space


def _user_key(user_id: str, resource: str) -> str:
    """A per-user override's QuotaLimit.resource (bounded: the column is 64 characters)."""
    return f"u:{hashlib.sha256(user_id.encode()).hexdigest()[:32]}:{resource}"


def lock(db: Session, key: str) -> None:
    """Take the quota lock named `key` (a project id) until this transaction ends."""
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        db.execute(
            text("SELECT pg_advisory_xact_lock(:ns, hashtext(:key))"),
            {"ns": _LOCK_NAMESPACE, "key": key},
        )
    else:
        db.execute(text("UPDATE compute_quota SET hard_limit = hard_limit WHERE 1 = 0"))


def _overrides(db: Session, project_id: str) -> dict[str, int]:
    rows = db.execute(
        select(QuotaLimit.resource, QuotaLimit.hard_limit).where(
            QuotaLimit.project_id == project_id
        )
    )
    return {resource: limit for resource, limit in rows}


def defaults(db: Session) -> dict[str, int]:
    """Every resource's default limit: built in, or as the operator set the default class."""
    return class_limits(db, DEFAULT_CLASS)


def limits(db: Session, project_id: str, user_id: str | None = None) -> dict[str, int]:
    """The limits in force for a project, or for one user of it when `user_id` is given."""
    values = defaults(db)
    rows = _overrides(db, project_id)
    values.update({k: v for k, v in rows.items() if k in values})
    if user_id is not None:
        for resource in values:
            mine = rows.get(_user_key(user_id, resource))
            if mine is not None:
                values[resource] = mine
    return values


def user_overrides(db: Session, project_id: str, user_id: str) -> dict[str, int]:
    """The resources for which `user_id` has a limit of its own in the project."""
    rows = _overrides(db, project_id)
    return {r: rows[_user_key(user_id, r)] for r in RESOURCES if _user_key(user_id, r) in rows}


def usage(db: Session, project_id: str, user_id: str | None = None) -> dict[str, int]:
    """What a project uses now; key_pairs are counted for `user_id` (they belong to users).

    Servers count from their flavor snapshot (a resize counts its new flavor)."""
    used = dict.fromkeys(RESOURCES, 0)
    servers = db.scalars(
        select(Server).where(Server.project_id == project_id, Server.deleted.is_(False))
    ).all()
    used.update(_server_usage(s.flavor for s in servers))
    used["server_groups"] = db.scalar(
        select(func.count()).select_from(ServerGroup).where(ServerGroup.project_id == project_id)
    ) or 0
    if user_id is not None:
        used["key_pairs"] = keypair_count(db, user_id)
    return used


def user_usage(db: Session, project_id: str, user_id: str) -> dict[str, int]:
    """What one user of a project uses (for per-user limits)."""
    used = dict.fromkeys(RESOURCES, 0)
    servers = db.scalars(
        select(Server).where(
            Server.project_id == project_id, Server.user_id == user_id, Server.deleted.is_(False)
        )
    ).all()
    used.update(_server_usage(s.flavor for s in servers))
    used["server_groups"] = db.scalar(
        select(func.count()).select_from(ServerGroup).where(
            ServerGroup.project_id == project_id, ServerGroup.user_id == user_id
        )
    ) or 0
    used["key_pairs"] = keypair_count(db, user_id)
    return used


def keypair_count(db: Session, user_id: str) -> int:
    return db.scalar(
        select(func.count()).select_from(Keypair).where(Keypair.user_id == user_id)
    ) or 0


def group_member_count(db: Session, group_id: str) -> int:
    """Live servers in a server group (members whose server was deleted do not count)."""
    group = db.get(ServerGroup, group_id)
    if group is None or not group.members:
        return 0
    return db.scalar(
        select(func.count()).select_from(Server).where(
            Server.id.in_(list(group.members)), Server.deleted.is_(False)
        )
    ) or 0


def _server_usage(flavors: Iterable[Mapping[str, object]]) -> Counter[str]:
    used: Counter[str] = Counter()
    for flavor in flavors:
        used["instances"] += 1
        used["cores"] += int(str(flavor.get("vcpus", 0)))
        used["ram"] += int(str(flavor.get("ram", 0)))
    return used


def check(
    db: Session,
    project_id: str,
    user_id: str,
    deltas: dict[str, int],
    server_group_id: str | None = None,
) -> None:
    """Raise 403 "Quota exceeded for ..." unless `deltas` more of each resource fit.

    Takes the project's quota lock first (see the module docstring): call it in the
    transaction that then adds the rows, and commit that transaction. Counted resources
    (instances, cores, ram, key_pairs, server_groups, server_group_members with
    `server_group_id`) add the delta to current usage; the others (metadata_items,
    injected_*) compare the requested amount with the limit alone.
    """
    unknown = set(deltas) - set(RESOURCES)
    if unknown:
        raise ValueError(f"not quota resources: {sorted(unknown)}")
    if "server_group_members" in deltas and server_group_id is None:
        raise ValueError("server_group_members needs the server_group_id")
    lock(db, project_id)
    if "key_pairs" in deltas:
        lock(db, f"user:{user_id}")  # keypairs belong to a user, across projects
    project_used = usage(db, project_id, user_id)
    if server_group_id is not None:
        project_used["server_group_members"] = group_member_count(db, server_group_id)
    _compare(deltas, project_used, limits(db, project_id))
    mine = user_overrides(db, project_id, user_id)
    if mine and set(mine) & set(deltas):
        used = user_usage(db, project_id, user_id)
        used["server_group_members"] = project_used["server_group_members"]
        _compare({k: v for k, v in deltas.items() if k in mine}, used, mine)


_STATIC = {"metadata_items", "injected_files", "injected_file_content_bytes",
           "injected_file_path_bytes"}


def _compare(deltas: dict[str, int], used: dict[str, int], allowed: dict[str, int]) -> None:
    overs = []
    for resource in sorted(deltas):
        delta, limit = deltas[resource], allowed[resource]
        base = 0 if resource in _STATIC else used[resource]
        if limit != UNLIMITED and delta > 0 and base + delta > limit:
            overs.append((resource, delta, base, limit))
    if not overs:
        return
    if len(overs) == 1:
        raise quota_exceeded(*overs[0])
    names = ", ".join(o[0] for o in overs)
    raise Forbidden(
        f"Quota exceeded for {names}: Requested {', '.join(str(o[1]) for o in overs)}, but "
        f"already used {', '.join(str(o[2]) for o in overs)} of "
        f"{', '.join(str(o[3]) for o in overs)} {names}"
    )


def set_limits(
    db: Session, project_id: str, values: Mapping[str, int], user_id: str | None = None
) -> None:
    """Store overrides for a project (or one of its users); the caller validated them."""
    for resource, value in values.items():
        key = resource if user_id is None else _user_key(user_id, resource)
        row = db.get(QuotaLimit, (project_id, key))
        if row is None:
            db.add(QuotaLimit(project_id=project_id, resource=key, hard_limit=value))
        else:
            row.hard_limit = value
    db.flush()


def reset(db: Session, project_id: str, user_id: str | None = None) -> None:
    """Drop a project's overrides (its users' too), or only one user's."""
    query = delete(QuotaLimit).where(QuotaLimit.project_id == project_id)
    if user_id is not None:
        query = query.where(QuotaLimit.resource.in_([_user_key(user_id, r) for r in RESOURCES]))
    db.execute(query)


def class_limits(db: Session, name: str) -> dict[str, int]:
    """A quota class's limits; only the "default" class applies to projects (as in Nova)."""
    values = {**DEFAULTS, **LEGACY_NETWORK}
    values.update({k: v for k, v in _overrides(db, _CLASS_PREFIX + name).items() if k in values})
    return values


def set_class_limits(db: Session, name: str, values: Mapping[str, int]) -> None:
    if not 1 <= len(name) <= CLASS_NAME_MAX:
        raise BadRequest(f"Quota class names are 1-{CLASS_NAME_MAX} characters.")
    set_limits(db, _CLASS_PREFIX + name, values)


def known_project(db: Session, project_id: str) -> bool:
    """Whether the identity service has this project (Nova asks Keystone the same)."""
    from picocloud.identity.models import Project

    return db.get(Project, project_id) is not None
