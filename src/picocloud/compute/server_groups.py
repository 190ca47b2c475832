"""Server groups (Nova semantics): a policy the scheduler applies to the group's members
(affinity, anti-affinity, and from 2.15 their soft variants), within the server_groups quota."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from picocloud.compute import quota
from picocloud.compute.hosts import utcnow
from picocloud.compute.models import Server, ServerGroup
from picocloud.errors import Forbidden, NotFound

POLICIES = ("affinity", "anti-affinity")
SOFT_POLICIES = ("soft-affinity", "soft-anti-affinity")  # microversion 2.15


def get(db: Session, group_id: str) -> ServerGroup:
    group = db.get(ServerGroup, group_id)
    if group is None:
        raise NotFound(f"Instance group {group_id} could not be found.")
    return group


def listing(
    db: Session, project_id: str | None, limit: int | None = None, offset: int = 0
) -> list[ServerGroup]:
    """Groups of a project, or of every project when `project_id` is None."""
    query = select(ServerGroup).order_by(ServerGroup.created_at, ServerGroup.id)
    if project_id is not None:
        query = query.where(ServerGroup.project_id == project_id)
    query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(db.scalars(query))


def members(db: Session, group: ServerGroup) -> list[str]:
    """The group's servers that still exist, in the order they joined."""
    if not group.members:
        return []
    live = set(db.scalars(
        select(Server.id).where(Server.id.in_(list(group.members)), Server.deleted.is_(False))
    ))
    return [m for m in group.members if m in live]


def create(db: Session, project_id: str, user_id: str, name: str, policy: str) -> ServerGroup:
    """A new group; 403 when the project (or user) has used its server_groups quota."""
    try:
        quota.check(db, project_id, user_id, {"server_groups": 1})
    except Forbidden:
        raise Forbidden("Quota exceeded, too many server groups.") from None
    group = ServerGroup(id=str(uuid.uuid4()), name=name, project_id=project_id, user_id=user_id,
                        policy=policy, rules={}, members=[], created_at=utcnow())
    db.add(group)
    db.flush()
    return group


def remove(db: Session, group: ServerGroup) -> None:
    db.delete(group)
