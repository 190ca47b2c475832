"""Infrastructure views: os-availability-zone, os-hypervisors, os-services; this module also
mounts os-aggregates and os-server-groups (their own modules)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from picocloud.compute import hosts
from picocloud.compute import validation as v
from picocloud.compute.api import aggregates, server_groups
from picocloud.compute.api.common import at_least, own_target, url
from picocloud.compute.models import Host
from picocloud.errors import BadRequest, NotFound
from picocloud.http import Ctx, Reply, Route

P = "os_compute_api:"


def iso(ts: datetime | None) -> str | None:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f") if ts is not None else None


def _controller(ctx: Ctx) -> str:
    return hosts.controller_name(ctx.cloud.settings.compute_host)


# -- availability zones --------------------------------------------------------------------
def _zones(ctx: Ctx, detail: bool) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    zone_map = hosts.zones(ctx.db)
    members: dict[str, list[Host]] = {}
    available: set[str] = set()
    for h in hosts.all_hosts(ctx.db):
        zone = hosts.zone_of(zone_map, h.name)
        members.setdefault(zone, []).append(h)
        if not h.disabled:
            available.add(zone)
    info = []
    for zone in sorted(members):
        body: dict[str, Any] = {"zoneName": zone, "zoneState": {"available": zone in available},
                                "hosts": None}
        if detail and zone in available:
            now = hosts.utcnow()
            body["hosts"] = {
                h.name: {hosts.COMPUTE: {"available": hosts.is_up(h, now),
                                         "active": not h.disabled,
                                         "updated_at": iso(h.heartbeat_at)}}
                for h in members[zone]
            }
        info.append(body)
    if detail:
        now_text = iso(hosts.utcnow())
        info.append({
            "zoneName": hosts.INTERNAL_AZ,
            "zoneState": {"available": True},
            "hosts": {_controller(ctx): {
                b: {"available": True, "active": True, "updated_at": now_text}
                for b in hosts.CONTROLLER_BINARIES
            }},
        })
    return {"availabilityZoneInfo": info}


def zones_index(ctx: Ctx) -> dict[str, Any]:
    return _zones(ctx, detail=False)


def zones_detail(ctx: Ctx) -> dict[str, Any]:
    return _zones(ctx, detail=True)


# -- hypervisors ---------------------------------------------------------------------------
def _summary(h: Host, now: datetime) -> dict[str, Any]:
    return {"id": h.id, "hypervisor_hostname": h.name,
            "state": "up" if hosts.is_up(h, now) else "down",
            "status": "disabled" if h.disabled else "enabled"}


def _detail(ctx: Ctx, h: Host, used: hosts.HostUsage, now: datetime) -> dict[str, Any]:
    memory_used = used.memory_mb + ctx.cloud.settings.reserved_host_memory_mb
    body = _summary(h, now)
    body.update({
        "vcpus": h.vcpus,
        "vcpus_used": used.vcpus,
        "memory_mb": h.memory_mb,
        "memory_mb_used": memory_used,
        "free_ram_mb": h.memory_mb - memory_used,
        "local_gb": h.disk_gb,
        "local_gb_used": used.disk_gb,
        "free_disk_gb": h.disk_gb - used.disk_gb,
        "disk_available_least": h.disk_gb - used.disk_gb,
        "running_vms": used.running_vms,
        "current_workload": used.workload,
        "hypervisor_type": h.hypervisor_type,
        "hypervisor_version": h.hypervisor_version,
        # a JSON string until 2.28, an object from then on
        "cpu_info": dict(h.cpu_info) if at_least(ctx, 28) else json.dumps(h.cpu_info),
        "host_ip": h.host_ip,
        "service": {"host": h.name, "id": hosts.service_id(h),
                    "disabled_reason": h.disabled_reason},
    })
    return body


def _page(ctx: Ctx, path: str) -> tuple[list[Host], dict[str, Any]]:
    """All hosts, or from 2.33 one limit/marker page with its next link."""
    found = hosts.all_hosts(ctx.db)
    extra: dict[str, Any] = {}
    if not at_least(ctx, 33):
        return found, extra
    marker = ctx.query.get("marker")
    if marker is not None:
        ids = [str(h.id) for h in found]
        if marker not in ids:
            raise BadRequest(f"marker [{marker}] not found")
        found = found[ids.index(marker) + 1 :]
    limit = v.query_int("limit", ctx.query.get("limit"))
    if limit is not None:
        found = found[:limit]
        if found and len(found) == limit:
            params = {k: val for k, val in ctx.query.items() if k != "marker"}
            params["marker"] = str(found[-1].id)
            extra["hypervisors_links"] = [
                {"rel": "next", "href": f"{url(ctx, path)}?{urlencode(params)}"}
            ]
    return found, extra


def hypervisors_index(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    found, extra = _page(ctx, "os-hypervisors")
    now = hosts.utcnow()
    return {"hypervisors": [_summary(h, now) for h in found], **extra}


def hypervisors_detail(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    found, extra = _page(ctx, "os-hypervisors/detail")
    usage, now = hosts.usage_by_host(ctx.db), hosts.utcnow()
    return {"hypervisors": [_detail(ctx, h, usage.get(h.name, hosts.HostUsage()), now)
                            for h in found], **extra}


def hypervisor_show(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    h = hosts.get(ctx.db, ctx.params["hypervisor_id"])
    used = hosts.usage_by_host(ctx.db).get(h.name, hosts.HostUsage())
    return {"hypervisor": _detail(ctx, h, used, hosts.utcnow())}


def hypervisor_uptime(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    h = hosts.get(ctx.db, ctx.params["hypervisor_id"])
    body = _summary(h, hosts.utcnow())
    body["uptime"] = hosts.uptime(h, _controller(ctx))
    return {"hypervisor": body}


def hypervisor_search(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    now = hosts.utcnow()
    return {"hypervisors": [_summary(h, now) for h in hosts.search(ctx.db, ctx.params["name"])]}


def hypervisor_servers(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    now, usage = hosts.utcnow(), hosts.usage_by_host(ctx.db)
    found = []
    for h in hosts.search(ctx.db, ctx.params["name"]):
        body = _summary(h, now)
        servers = usage.get(h.name, hosts.HostUsage()).servers
        if servers:
            body["servers"] = [{"uuid": sid, "name": name} for sid, name in servers]
        found.append(body)
    return {"hypervisors": found}


def hypervisor_statistics(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    usage, now = hosts.usage_by_host(ctx.db), hosts.utcnow()
    keys = ("vcpus", "vcpus_used", "memory_mb", "memory_mb_used", "free_ram_mb", "local_gb",
            "local_gb_used", "free_disk_gb", "disk_available_least", "running_vms",
            "current_workload")
    totals = dict.fromkeys(keys, 0)
    found = hosts.all_hosts(ctx.db)
    for h in found:
        body = _detail(ctx, h, usage.get(h.name, hosts.HostUsage()), now)
        for key in keys:
            totals[key] += body[key]
    return {"hypervisor_statistics": {"count": len(found), **totals}}


# -- services ------------------------------------------------------------------------------
def services_index(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    host, binary = ctx.query.get("host"), ctx.query.get("binary")
    rows = []
    for s in hosts.services(ctx.db, _controller(ctx)):
        if (host is not None and s.host != host) or (binary is not None and s.binary != binary):
            continue
        body: dict[str, Any] = {
            "id": s.id, "binary": s.binary, "host": s.host, "zone": s.zone,
            "status": "disabled" if s.disabled else "enabled",
            "state": "up" if s.up else "down",
            "updated_at": iso(s.updated_at), "disabled_reason": s.disabled_reason,
        }
        if at_least(ctx, 11):
            body["forced_down"] = s.forced_down
        rows.append(body)
    return {"services": rows}


def services_update(ctx: Ctx) -> dict[str, Any]:
    """PUT /os-services/{enable,disable,disable-log-reason,force-down} (the pre-2.53 forms)."""
    ctx.authorize(own_target(ctx))
    action = ctx.params["action"]
    fields = {"enable": ("host", "binary"), "disable": ("host", "binary"),
              "disable-log-reason": ("host", "binary", "disabled_reason")}
    if at_least(ctx, 11):
        fields["force-down"] = ("host", "binary", "forced_down")
    if action not in fields:
        raise NotFound(f"Unknown action {action!r}.")
    body = ctx.body if isinstance(ctx.body, dict) else {}
    v.only(body, fields[action])
    v.required(body, *fields[action])
    for key in ("host", "binary", "disabled_reason"):
        if key in body:
            v.name(key, body[key])
    h = hosts.compute_host(ctx.db, body["host"], body["binary"])
    out: dict[str, Any] = {"host": h.name, "binary": hosts.COMPUTE}
    if action == "force-down":
        h.forced_down = v.boolean("forced_down", body["forced_down"])
        out["forced_down"] = h.forced_down
        return {"service": out}
    h.disabled = action != "enable"
    h.disabled_reason = body.get("disabled_reason") if h.disabled else None
    out["status"] = "disabled" if h.disabled else "enabled"
    if action == "disable-log-reason":
        out["disabled_reason"] = h.disabled_reason
    return {"service": out}


def services_delete(ctx: Ctx) -> Reply:
    ctx.authorize(own_target(ctx))
    hosts.delete_service(ctx.db, ctx.params["service_id"])
    return Reply(status=204)


H = "/v2.1/os-hypervisors"
ROUTES = [
    Route("GET", "/v2.1/os-availability-zone", zones_index, f"{P}os-availability-zone:list"),
    Route("GET", "/v2.1/os-availability-zone/detail", zones_detail,
          f"{P}os-availability-zone:detail"),
    Route("GET", H, hypervisors_index, f"{P}os-hypervisors:list"),
    Route("GET", f"{H}/detail", hypervisors_detail, f"{P}os-hypervisors:list-detail"),
    Route("GET", f"{H}/statistics", hypervisor_statistics, f"{P}os-hypervisors:statistics"),
    Route("GET", f"{H}/{{hypervisor_id}}", hypervisor_show, f"{P}os-hypervisors:show"),
    Route("GET", f"{H}/{{hypervisor_id}}/uptime", hypervisor_uptime,
          f"{P}os-hypervisors:uptime"),
    Route("GET", f"{H}/{{name}}/search", hypervisor_search, f"{P}os-hypervisors:search"),
    Route("GET", f"{H}/{{name}}/servers", hypervisor_servers, f"{P}os-hypervisors:servers"),
    Route("GET", "/v2.1/os-services", services_index, f"{P}os-services:list"),
    Route("PUT", "/v2.1/os-services/{action}", services_update, f"{P}os-services:update"),
    Route("DELETE", "/v2.1/os-services/{service_id}", services_delete,
          f"{P}os-services:delete"),
    *aggregates.ROUTES,
    *server_groups.ROUTES,
]
