"""Server tags (microversion 2.26), with Nova's rules: a tag is 1-60 characters without '/'
or ','; a server has at most 50; they change only while the server is active, paused,
suspended or stopped; they go when the server is deleted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, not_, select, update
from sqlalchemy.orm import Session

from picocloud.compute import states
from picocloud.compute import validation as v
from picocloud.compute.models import Server, ServerTag
from picocloud.errors import BadRequest, Conflict, NotFound

MAX_PER_SERVER = 50
MAX_LENGTH = 60
MUTABLE_STATES = (states.ACTIVE, states.PAUSED, states.SUSPENDED, states.STOPPED)
LIST_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")


def problem(value: Any) -> str | None:
    """Why `value` is not a tag, in JSON Schema's words (Nova's parameter_types.tag)."""
    if not isinstance(value, str):
        return f"{value!r} is not of type 'string'"
    if not value:
        return "'' is too short"
    if len(value) > MAX_LENGTH:
        return f"'{value}' is too long"
    if "," in value or "/" in value:
        return f"'{value}' does not match '^[^,/]*$'"
    return None


def check(field: str, value: Any) -> str:
    """One tag of a request body, or 400 naming the field."""
    reason = problem(value)
    if reason is not None:
        raise v.invalid(field, value, reason)
    return str(value)


def check_list(value: Any) -> list[str]:
    """The body of a replace: {"tags": [tag, ...]} with at most 50 tags."""
    if not isinstance(value, dict):
        raise BadRequest(f"{value!r} is not of type 'object'")
    v.only(value, ("tags",))
    v.required(value, "tags")
    tags = value["tags"]
    if not isinstance(tags, list):
        raise v.invalid("tags", tags, f"{tags!r} is not of type 'array'")
    if len(tags) > MAX_PER_SERVER:
        raise v.invalid("tags", tags, f"{tags!r} is too long")
    return [check(f"tags/{i}", tag) for i, tag in enumerate(tags)]


def check_mutable(server: Server, action: str) -> None:
    """409 unless the server is in a vm_state whose tags may change."""
    if server.vm_state not in MUTABLE_STATES:
        raise Conflict(f"Cannot '{action}' instance {server.id} while it is in vm_state "
                       f"{server.vm_state}")


def names(db: Session, server_id: str) -> list[str]:
    rows = db.scalars(select(ServerTag.tag).where(ServerTag.server_id == server_id))
    return sorted(rows.all())


def by_server(db: Session, server_ids: Iterable[str]) -> dict[str, list[str]]:
    """The tags of many servers in one query (a detailed listing's)."""
    found: dict[str, list[str]] = {}
    ids = list(server_ids)
    if not ids:
        return found
    rows = db.execute(select(ServerTag.server_id, ServerTag.tag)
                      .where(ServerTag.server_id.in_(ids)))
    for server_id, tag in rows:
        found.setdefault(server_id, []).append(tag)
    return {server_id: sorted(tags) for server_id, tags in found.items()}


def has(db: Session, server_id: str, tag: str) -> bool:
    return db.get(ServerTag, (server_id, tag)) is not None


def _lock(db: Session, server: Server) -> None:
    """Make this transaction the server's only tag writer until it ends: a row lock on
    PostgreSQL, the database's write lock on SQLite. Concurrent adds then neither pass the
    limit together nor insert the same tag twice."""
    db.execute(update(Server).where(Server.id == server.id)
               .values(updated_at=Server.updated_at)
               .execution_options(synchronize_session=False))


def add(db: Session, server: Server, tag: str) -> bool:
    """Add one tag; False when the server already has it."""
    _lock(db, server)
    current = names(db, server.id)
    if tag in current:
        return False
    if len(current) >= MAX_PER_SERVER:
        raise BadRequest(f"The number of tags exceeded the per-server limit {MAX_PER_SERVER}")
    db.add(ServerTag(server_id=server.id, tag=tag))
    db.flush()
    return True


def replace(db: Session, server: Server, tags: list[str]) -> list[str]:
    """Make `tags` (duplicates once) the server's whole set; the set, sorted."""
    _lock(db, server)
    wanted = sorted(set(tags))
    db.execute(delete(ServerTag).where(ServerTag.server_id == server.id))
    db.add_all(ServerTag(server_id=server.id, tag=tag) for tag in wanted)
    db.flush()
    return wanted


def remove(db: Session, server: Server, tag: str) -> None:
    row = db.get(ServerTag, (server.id, tag))
    if row is None:
        raise NotFound(f"Instance {server.id} has no tag '{tag}'")
    db.delete(row)


def remove_all(db: Session, server_id: str) -> None:
    db.execute(delete(ServerTag).where(ServerTag.server_id == server_id))


def list_filter(name: str, raw: str) -> ColumnElement[bool]:
    """A server-list condition for one of LIST_FILTERS given as comma-separated tags:
    tags (all of them), tags-any (one of them), not-tags (not all), not-tags-any (none)."""
    wanted = raw.split(",")

    def tagged(condition: ColumnElement[bool]) -> ColumnElement[bool]:
        return exists().where(ServerTag.server_id == Server.id, condition)

    if name in ("tags", "not-tags"):
        condition = and_(*(tagged(ServerTag.tag == tag) for tag in wanted))
    else:
        condition = tagged(ServerTag.tag.in_(wanted))
    return not_(condition) if name.startswith("not-") else condition
