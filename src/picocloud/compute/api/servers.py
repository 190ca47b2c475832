"""Servers: create, list/detail with filters, show, update, delete, metadata, actions log."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from sqlalchemy import select

from picocloud.compute import states, tags
from picocloud.compute.api.common import at_least, bookmark, links, project_target
from picocloud.compute.hosts import is_up
from picocloud.compute.models import Host, InstanceAction, Server
from picocloud.compute.service import (
    Actor,
    ServerService,
    access_ip,
    description,
    hostname_of,
    utcnow,
    validate_metadata,
)
from picocloud.errors import BadRequest, NotFound
from picocloud.http import Ctx, Reply, Route

P = "os_compute_api:"
PROGRESS_STATUSES = ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING")


def actor(ctx: Ctx) -> Actor:
    t = ctx.token
    return Actor(
        t.project_id or "",
        t.user_id,
        ctx.allowed(f"{P}servers:detail:get_all_tenants"),
        ctx.request_id,
    )


def svc(ctx: Ctx) -> ServerService:
    return ServerService(ctx.db, ctx.cloud.settings)


def target(server: Server) -> dict[str, Any]:
    return project_target(server.project_id, server.user_id)


def find(ctx: Ctx, rule: str | None = None) -> Server:
    """The server in the path, visible to the caller, with `rule` (or the route's) checked."""
    server = svc(ctx).get(ctx.params["server_id"], actor(ctx))
    ctx.authorize(target(server), rule=rule)
    return server


def iso(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


def usage_time(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") if when else None


def server_json(
    ctx: Ctx, s: Server, detail: bool = True, tag_names: list[str] | None = None
) -> dict[str, Any]:
    """Nova's server view for the request's microversion; `tag_names` when the caller has
    fetched them already (a listing fetches every server's in one query)."""
    body: dict[str, Any] = {"id": s.id, "name": s.name, "links": links(ctx, f"servers/{s.id}")}
    if not detail:
        return body
    status = states.status(s.vm_state, s.task_state)
    admin = ctx.allowed(f"{P}os-extended-server-attributes", target(s))
    host_id = hashlib.sha224((s.project_id + (s.host or "")).encode()).hexdigest() if s.host else ""
    body.update(
        {
            "status": status,
            "tenant_id": s.project_id,
            "user_id": s.user_id,
            "metadata": dict(s.metadata_),
            "hostId": host_id,
            "image": {
                "id": s.image_id,
                "links": [{"rel": "bookmark", "href": bookmark(ctx, f"images/{s.image_id}")}],
            },
            "flavor": {
                "id": s.flavor_id,
                "links": [{"rel": "bookmark", "href": bookmark(ctx, f"flavors/{s.flavor_id}")}],
            },
            "created": iso(s.created_at),
            "updated": iso(s.updated_at),
            "addresses": {},
            "accessIPv4": s.access_ipv4,
            "accessIPv6": s.access_ipv6,
            "OS-DCF:diskConfig": "MANUAL",
            "OS-EXT-AZ:availability_zone": s.availability_zone or "",
            "config_drive": "True" if s.config_drive else "",
            "key_name": s.key_name,
            "OS-SRV-USG:launched_at": usage_time(s.launched_at),
            "OS-SRV-USG:terminated_at": usage_time(s.terminated_at),
            "OS-EXT-STS:task_state": s.task_state,
            "OS-EXT-STS:vm_state": s.vm_state,
            "OS-EXT-STS:power_state": s.power_state,
            "os-extended-volumes:volumes_attached": [],
            "security_groups": [{"name": g} for g in s.security_groups],
        }
    )
    if status in PROGRESS_STATUSES:
        body["progress"] = 100 if status == "ACTIVE" else 0
    if s.fault and status in ("ERROR", "DELETED"):
        fault = {k: v for k, v in s.fault.items() if k in ("code", "message", "created")}
        if admin and s.fault.get("details"):
            fault["details"] = s.fault["details"]
        body["fault"] = fault
    if admin:
        body["OS-EXT-SRV-ATTR:host"] = s.host
        body["OS-EXT-SRV-ATTR:instance_name"] = f"instance-{s.id[:8]}"
        body["OS-EXT-SRV-ATTR:hypervisor_hostname"] = s.host
        if at_least(ctx, 3):
            body.update(
                {
                    "OS-EXT-SRV-ATTR:reservation_id": s.reservation_id,
                    "OS-EXT-SRV-ATTR:launch_index": s.launch_index,
                    "OS-EXT-SRV-ATTR:hostname": hostname_of(s.name),
                    "OS-EXT-SRV-ATTR:kernel_id": "",
                    "OS-EXT-SRV-ATTR:ramdisk_id": "",
                    "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
                    "OS-EXT-SRV-ATTR:user_data": s.user_data,
                }
            )
    if at_least(ctx, 9):
        body["locked"] = s.locked
    if at_least(ctx, 16) and ctx.allowed(f"{P}servers:show:host_status", target(s)):
        body["host_status"] = _host_status(ctx, s)
    if at_least(ctx, 19):
        body["description"] = s.description
    if at_least(ctx, 26):
        body["tags"] = tag_names if tag_names is not None else tags.names(ctx.db, s.id)
    return body


# Nova's basic server view (update and rebuild answer it): no extension attributes.
BASIC_KEYS = {
    "id", "name", "status", "image", "flavor", "user_id", "tenant_id", "created", "updated",
    "progress", "metadata", "links", "addresses", "hostId", "OS-DCF:diskConfig", "accessIPv4",
    "accessIPv6", "fault", "locked", "description", "tags",
}


def basic_view(ctx: Ctx, s: Server) -> dict[str, Any]:
    return {k: v for k, v in server_json(ctx, s).items() if k in BASIC_KEYS}


def _host_status(ctx: Ctx, s: Server) -> str:
    if not s.host:
        return ""
    host = ctx.db.scalars(select(Host).where(Host.name == s.host)).first()
    if host is None:
        return "UNKNOWN"
    if host.disabled:
        return "MAINTENANCE"
    return "UP" if is_up(host) else "DOWN"


# -- create, list, show, update, delete ---------------------------------------------------
def create(ctx: Ctx) -> Reply:
    body = ctx.body if isinstance(ctx.body, dict) else None
    if body is None or not isinstance(body.get("server"), dict):
        raise BadRequest("Invalid input: the body needs a 'server' object.")
    req = dict(body["server"])
    if req.get("networks") in ("none", "auto") and not at_least(ctx, 37):
        raise BadRequest(
            "Invalid input for field/attribute networks: 'none' and 'auto' need "
            "microversion 2.37 or later."
        )
    if "networks" not in req and at_least(ctx, 37):
        raise BadRequest(
            "Invalid input for field/attribute server: 'networks' is a required property"
        )
    if "description" in req:
        if not at_least(ctx, 19):
            raise BadRequest("Invalid input for field/attribute server: description needs "
                             "microversion 2.19 or later.")
        req["description"] = description(req["description"])
    ctx.authorize(project_target(ctx.token.project_id, ctx.token.user_id))
    servers = svc(ctx).create(req, actor(ctx))
    ctx.cloud.wake_agents()
    if req.get("return_reservation_id"):
        return Reply({"reservation_id": servers[0].reservation_id}, status=202)
    first = servers[0]
    out = {
        "id": first.id,
        "links": links(ctx, f"servers/{first.id}"),
        "OS-DCF:diskConfig": "MANUAL",
        "security_groups": [{"name": g} for g in first.security_groups],
    }
    return Reply(
        {"server": out},
        status=202,
        headers={"Location": links(ctx, f"servers/{first.id}")[0]["href"]},
    )


def _listing(ctx: Ctx, detail: bool) -> dict[str, Any]:
    me = actor(ctx)
    rule = f"{P}servers:{'detail' if detail else 'index'}"
    ctx.authorize(project_target(me.project_id, me.user_id), rule=rule)
    stmt = select(Server)
    all_tenants = ctx.q("all_tenants") is not None and ctx.query.get("all_tenants", "") not in (
        "0",
        "false",
        "False",
    )
    if all_tenants:
        ctx.authorize(project_target(me.project_id), rule=f"{rule}:get_all_tenants")
        project = ctx.q("project_id") or ctx.q("tenant_id")
        if project:
            stmt = stmt.where(Server.project_id == project)
    else:
        stmt = stmt.where(Server.project_id == me.project_id)
    since = ctx.q("changes-since")
    if since:
        try:
            moment = datetime.fromisoformat(since.replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            raise BadRequest(f"Invalid changes-since value: {since}") from None
        stmt = stmt.where(Server.updated_at >= moment)
    elif ctx.q("deleted") not in ("true", "True", "1") or not me.is_admin:
        stmt = stmt.where(Server.deleted.is_(False))
    for key, column in (
        ("image", Server.image_id),
        ("flavor", Server.flavor_id),
        ("reservation_id", Server.reservation_id),
    ):
        value = ctx.q(key)
        if value:
            stmt = stmt.where(column == value.rstrip("/").rsplit("/", 1)[-1])
    if me.is_admin and ctx.q("host"):
        stmt = stmt.where(Server.host == ctx.q("host"))
    if at_least(ctx, 26):
        for key in tags.LIST_FILTERS:
            value = ctx.q(key)
            if value is not None:
                stmt = stmt.where(tags.list_filter(key, value))
    rows = list(ctx.db.scalars(stmt.order_by(Server.created_at.desc(), Server.id)).all())
    statuses = ctx.query.getlist("status")
    if statuses:
        wanted: set[str] = set()
        for st in statuses:
            vm = states.vm_states_for(st)
            if not vm and at_least(ctx, 38):
                raise BadRequest(f"Invalid status value: {st}")
            wanted.update(vm)
        rows = [s for s in rows if s.vm_state in wanted]
    name = ctx.q("name")
    if name:
        try:
            pattern = re.compile(name)
        except re.error:
            raise BadRequest(f"Invalid name filter: {name}") from None
        rows = [s for s in rows if pattern.search(s.name)]
    marker = ctx.q("marker")
    if marker:
        ids = [s.id for s in rows]
        if marker not in ids:
            raise BadRequest(f"marker [{marker}] not found")
        rows = rows[ids.index(marker) + 1 :]
    limit = ctx.q("limit")
    body: dict[str, Any] = {}
    if limit is not None:
        if not limit.isdigit():
            raise BadRequest("limit param must be an integer")
        more = len(rows) > int(limit)
        rows = rows[: int(limit)]
        if more and rows:
            path = "servers/detail" if detail else "servers"
            body["servers_links"] = [
                {
                    "rel": "next",
                    "href": links(ctx, path)[0]["href"] + f"?limit={limit}&marker={rows[-1].id}",
                }
            ]
    with_tags = detail and at_least(ctx, 26)
    by_server = tags.by_server(ctx.db, [s.id for s in rows]) if with_tags else {}
    body["servers"] = [server_json(ctx, s, detail, by_server.get(s.id, [])) for s in rows]
    return body


def index(ctx: Ctx) -> dict[str, Any]:
    return _listing(ctx, detail=False)


def detail(ctx: Ctx) -> dict[str, Any]:
    return _listing(ctx, detail=True)


def show(ctx: Ctx) -> dict[str, Any]:
    return {"server": server_json(ctx, find(ctx))}


def update(ctx: Ctx) -> dict[str, Any]:
    server = find(ctx)
    body = ctx.body.get("server") if isinstance(ctx.body, dict) else None
    if not isinstance(body, dict):
        raise BadRequest("Invalid input: the body needs a 'server' object.")
    allowed = {"name", "accessIPv4", "accessIPv6"} | ({"description"} if at_least(ctx, 19)
                                                      else set())
    unknown = set(body) - allowed
    if unknown:
        raise BadRequest(
            f"Additional properties are not allowed ({', '.join(sorted(unknown))} were unexpected)"
        )
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise BadRequest("Invalid input for field/attribute name.")
        server.name = name
    if "description" in body:
        server.description = description(body["description"])
    for key, attr in (("accessIPv4", "access_ipv4"), ("accessIPv6", "access_ipv6")):
        if key in body:
            setattr(server, attr, access_ip(key, body[key]) if body[key] else "")
    server.updated_at = utcnow()
    return {"server": basic_view(ctx, server)}


def delete(ctx: Ctx) -> Reply:
    server = find(ctx)
    svc(ctx).delete(server, actor(ctx))
    ctx.db.commit()
    ctx.cloud.wake_agents()
    return Reply(None, status=204)


# -- metadata -----------------------------------------------------------------------------
def metadata_index(ctx: Ctx) -> dict[str, Any]:
    return {"metadata": dict(find(ctx).metadata_)}


def _meta_body(ctx: Ctx, key: str) -> dict[str, str]:
    body = ctx.body.get(key) if isinstance(ctx.body, dict) else None
    if not isinstance(body, dict):
        raise BadRequest(f"Malformed request body: '{key}' is required.")
    return validate_metadata(body)


def metadata_merge(ctx: Ctx) -> dict[str, Any]:
    server = find(ctx)
    merged = validate_metadata({**server.metadata_, **_meta_body(ctx, "metadata")})
    server.metadata_ = merged
    return {"metadata": merged}


def metadata_replace(ctx: Ctx) -> dict[str, Any]:
    server = find(ctx)
    server.metadata_ = _meta_body(ctx, "metadata")
    return {"metadata": dict(server.metadata_)}


def metadata_show(ctx: Ctx) -> dict[str, Any]:
    server = find(ctx)
    key = ctx.params["key"]
    if key not in server.metadata_:
        raise NotFound("Metadata item was not found")
    return {"meta": {key: server.metadata_[key]}}


def metadata_set(ctx: Ctx) -> dict[str, Any]:
    server = find(ctx)
    meta = _meta_body(ctx, "meta")
    key = ctx.params["key"]
    if list(meta) != [key]:
        raise BadRequest(
            "Request body and URI mismatch"
            if key not in meta
            else "Request body contains too many items"
        )
    server.metadata_ = validate_metadata({**server.metadata_, **meta})
    return {"meta": meta}


def metadata_delete(ctx: Ctx) -> Reply:
    server = find(ctx)
    key = ctx.params["key"]
    if key not in server.metadata_:
        raise NotFound("Metadata item was not found")
    server.metadata_ = {k: v for k, v in server.metadata_.items() if k != key}
    return Reply(None, status=204)


# -- instance actions ---------------------------------------------------------------------
def _action_json(a: InstanceAction, events: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": a.action,
        "instance_uuid": a.server_id,
        "message": a.message,
        "project_id": a.project_id,
        "request_id": a.request_id,
        "start_time": iso(a.start_time),
        "user_id": a.user_id,
    }
    if events:
        body["events"] = list(a.events)
    return body


def actions_index(ctx: Ctx) -> dict[str, Any]:
    server = svc(ctx).get(ctx.params["server_id"], actor(ctx), deleted_ok=True)
    ctx.authorize(target(server))
    rows = ctx.db.scalars(
        select(InstanceAction)
        .where(InstanceAction.server_id == server.id)
        .order_by(InstanceAction.start_time.desc(), InstanceAction.id.desc())
    )
    return {"instanceActions": [_action_json(a, False) for a in rows.all()]}


def actions_show(ctx: Ctx) -> dict[str, Any]:
    server = svc(ctx).get(ctx.params["server_id"], actor(ctx), deleted_ok=True)
    ctx.authorize(target(server))
    row = ctx.db.scalars(
        select(InstanceAction).where(
            InstanceAction.server_id == server.id,
            InstanceAction.request_id == ctx.params["request_id"],
        )
    ).first()
    if row is None:
        raise NotFound(
            f"Action for request_id {ctx.params['request_id']} on instance {server.id} not found"
        )
    events = ctx.allowed(f"{P}os-instance-actions:events", target(server))
    return {"instanceAction": _action_json(row, events)}


ROUTES = [
    Route("POST", "/v2.1/servers", create, f"{P}servers:create"),
    Route("GET", "/v2.1/servers", index, f"{P}servers:index"),
    Route("GET", "/v2.1/servers/detail", detail, f"{P}servers:detail"),
    Route("GET", "/v2.1/servers/{server_id}", show, f"{P}servers:show"),
    Route("PUT", "/v2.1/servers/{server_id}", update, f"{P}servers:update"),
    Route("DELETE", "/v2.1/servers/{server_id}", delete, f"{P}servers:delete"),
    Route("GET", "/v2.1/servers/{server_id}/metadata", metadata_index, f"{P}server-metadata:index"),
    Route(
        "POST", "/v2.1/servers/{server_id}/metadata", metadata_merge, f"{P}server-metadata:update"
    ),
    Route(
        "PUT",
        "/v2.1/servers/{server_id}/metadata",
        metadata_replace,
        f"{P}server-metadata:update_all",
    ),
    Route(
        "GET", "/v2.1/servers/{server_id}/metadata/{key}", metadata_show, f"{P}server-metadata:show"
    ),
    Route(
        "PUT",
        "/v2.1/servers/{server_id}/metadata/{key}",
        metadata_set,
        f"{P}server-metadata:create",
    ),
    Route(
        "DELETE",
        "/v2.1/servers/{server_id}/metadata/{key}",
        metadata_delete,
        f"{P}server-metadata:delete",
    ),
    Route(
        "GET",
        "/v2.1/servers/{server_id}/os-instance-actions",
        actions_index,
        f"{P}os-instance-actions:list",
    ),
    Route(
        "GET",
        "/v2.1/servers/{server_id}/os-instance-actions/{request_id}",
        actions_show,
        f"{P}os-instance-actions:show",
    ),
]
