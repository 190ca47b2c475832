"""Keypairs (os-keypairs): import or generate, list, show, delete; each user's own, and any
user's for admins (user_id, 2.10+); type (2.2+); limit/marker paging (2.35+)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from picocloud.compute import keypairs
from picocloud.compute import validation as v
from picocloud.compute.api.common import at_least, project_target, url
from picocloud.compute.models import Keypair
from picocloud.http import Ctx, Reply, Route

P = "os_compute_api:"


def iso(ts: Any) -> str | None:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f") if ts is not None else None


def _owner(ctx: Ctx, requested: str | None = None) -> str:
    """Whose keypairs: the caller's, or another user's for admins from 2.10 on; checks policy."""
    user_id = ctx.token.user_id
    if at_least(ctx, 10):
        user_id = requested or ctx.q("user_id") or user_id
    ctx.authorize(project_target(ctx.token.project_id, user_id))
    return user_id


def _summary(ctx: Ctx, k: Keypair) -> dict[str, Any]:
    body: dict[str, Any] = {"name": k.name, "public_key": k.public_key,
                            "fingerprint": k.fingerprint}
    if at_least(ctx, 2):
        body["type"] = k.type
    return body


def index(ctx: Ctx) -> dict[str, Any]:
    user_id = _owner(ctx)
    limit = marker = None
    if at_least(ctx, 35):
        limit = v.query_int("limit", ctx.query.get("limit"))
        marker = ctx.query.get("marker")
    page = keypairs.listing(ctx.db, user_id, limit, marker)
    body: dict[str, Any] = {"keypairs": [{"keypair": _summary(ctx, k)} for k in page]}
    if limit is not None and page and len(page) == limit:
        params = {k: val for k, val in ctx.query.items() if k != "marker"}
        params["marker"] = page[-1].name
        body["keypairs_links"] = [
            {"rel": "next", "href": f"{url(ctx, 'os-keypairs')}?{urlencode(params)}"}
        ]
    return body


def show(ctx: Ctx) -> dict[str, Any]:
    user_id = _owner(ctx)
    k = keypairs.get(ctx.db, user_id, ctx.params["name"])
    body = _summary(ctx, k)
    body.update({
        "user_id": k.user_id,
        "id": keypairs.numeric_id(k),
        "created_at": iso(k.created_at),
        "updated_at": None,
        "deleted_at": None,
        "deleted": False,
    })
    return {"keypair": body}


def create(ctx: Ctx) -> Reply:
    body = v.obj(ctx.body, "keypair")
    allowed = ["name", "public_key"]
    if at_least(ctx, 2):
        allowed.append("type")
    if at_least(ctx, 10):
        allowed.append("user_id")
    v.only(body, allowed)
    v.required(body, "name")
    requested = body.get("user_id")
    if requested is not None and not isinstance(requested, str):
        raise v.invalid("user_id", requested, f"{requested!r} is not of type 'string'")
    user_id = _owner(ctx, requested)
    public_key = body.get("public_key")
    if public_key is not None and not isinstance(public_key, str):
        raise v.invalid("public_key", public_key, f"{public_key!r} is not of type 'string'")
    keypair, private = keypairs.create(
        ctx.db, ctx.token.project_id or "", user_id, keypairs.check_name(body["name"]),
        body.get("type", "ssh"), public_key,
    )
    out = _summary(ctx, keypair)
    out["user_id"] = keypair.user_id
    if private is not None:
        out["private_key"] = private
    return Reply({"keypair": out}, status=201 if at_least(ctx, 2) else 200)


def delete(ctx: Ctx) -> Reply:
    user_id = _owner(ctx)
    keypairs.remove(ctx.db, user_id, ctx.params["name"])
    return Reply(status=204 if at_least(ctx, 2) else 202)


K = "/v2.1/os-keypairs"
ROUTES = [
    Route("GET", K, index, f"{P}os-keypairs:index"),
    Route("POST", K, create, f"{P}os-keypairs:create"),
    Route("GET", f"{K}/{{name}}", show, f"{P}os-keypairs:show"),
    Route("DELETE", f"{K}/{{name}}", delete, f"{P}os-keypairs:delete"),
]
