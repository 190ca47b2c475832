"""Helpers shared by the identity API modules: service access, links, rendering."""

from __future__ import annotations

from typing import Any

from picocloud.errors import BadRequest
from picocloud.http import Ctx
from picocloud.identity.models import Domain, Group, Project, Role, User
from picocloud.identity.service import DEFAULT_DOMAIN, IdentityService


def identity(ctx: Ctx) -> IdentityService:
    return IdentityService(ctx.db, ctx.cloud.settings)


def v3_url(ctx: Ctx, path: str = "") -> str:
    return f"{ctx.cloud.settings.base_url}/identity/v3{'/' + path if path else ''}"


def self_link(ctx: Ctx, path: str) -> dict[str, Any]:
    return {"self": v3_url(ctx, path)}


def collection(ctx: Ctx, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    base = ctx.cloud.settings.base_url
    path = ctx.request.url.path + (f"?{ctx.request.url.query}" if ctx.request.url.query else "")
    url = base + path
    return {key: items, "links": {"self": url, "previous": None, "next": None}}


def flag(ctx: Ctx, name: str) -> bool | None:
    """A boolean query filter as Keystone reads it: 0/false/no/off are false."""
    raw = ctx.q(name)
    if raw is None:
        return None
    return raw.lower() not in ("0", "false", "no", "off", "")


def present(ctx: Ctx, name: str) -> bool:
    """A query flag given without a value (`?effective`) or with a true value."""
    if name not in ctx.query:
        return False
    raw = ctx.query.get(name) or ""
    return raw.lower() not in ("0", "false", "no", "off")


def default_domain(ctx: Ctx) -> str:
    """The domain a create lands in when the body names none: the caller's scope's domain."""
    token = ctx.auth
    if token is None:
        return DEFAULT_DOMAIN
    if token.payload.domain_id:
        return token.payload.domain_id
    if token.project:
        return str(token.project["domain"]["id"])
    return DEFAULT_DOMAIN


def body_of(ctx: Ctx, key: str) -> dict[str, Any]:
    body = ctx.body
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise BadRequest(f"Invalid input for field '{key}': '{key}' is a required property")
    return body[key]  # type: ignore[no-any-return]


def domain_json(ctx: Ctx, d: Domain) -> dict[str, Any]:
    extra = dict(d.extra)
    return {
        **extra,
        "id": d.id,
        "name": d.name,
        "description": d.description,
        "enabled": d.enabled,
        "tags": extra.get("tags", []),
        "options": extra.get("options", {}),
        "links": self_link(ctx, f"domains/{d.id}"),
    }


def project_json(ctx: Ctx, p: Project) -> dict[str, Any]:
    extra = dict(p.extra)
    return {
        **extra,
        "id": p.id,
        "name": p.name,
        "domain_id": p.domain_id,
        "parent_id": p.parent_id or p.domain_id,
        "description": p.description,
        "enabled": p.enabled,
        "is_domain": False,
        "tags": list(p.tags),
        "options": extra.get("options", {}),
        "links": self_link(ctx, f"projects/{p.id}"),
    }


def user_json(ctx: Ctx, u: User) -> dict[str, Any]:
    out: dict[str, Any] = {
        **u.extra,
        "id": u.id,
        "name": u.name,
        "domain_id": u.domain_id,
        "enabled": u.enabled,
        "password_expires_at": None,
        "options": dict(u.options),
        "links": self_link(ctx, f"users/{u.id}"),
    }
    if u.default_project_id:
        out["default_project_id"] = u.default_project_id
    if u.description is not None:
        out["description"] = u.description
    return out


def group_json(ctx: Ctx, g: Group) -> dict[str, Any]:
    return {
        **g.extra,
        "id": g.id,
        "name": g.name,
        "domain_id": g.domain_id,
        "description": g.description,
        "links": self_link(ctx, f"groups/{g.id}"),
    }


def role_json(ctx: Ctx, r: Role) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "domain_id": r.domain_id or None,
        "description": r.description,
        "options": dict(r.options),
        "links": self_link(ctx, f"roles/{r.id}"),
    }


def target_for(**resources: Any) -> dict[str, Any]:
    """A policy target: {'target': {'user': {...}, 'domain_id': ...}}."""
    target: dict[str, Any] = {}
    for key, value in resources.items():
        target[key] = value
    return {"target": target}
