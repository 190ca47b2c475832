"""Quotas: os-quota-sets (show, detail, defaults, admin update/delete), os-quota-class-sets
(the operator's defaults) and /limits."""

from __future__ import annotations

from typing import Any

from picocloud.compute import quota
from picocloud.compute.api.common import at_least, own_target, project_target
from picocloud.compute.validation import boolean, integer, obj, only
from picocloud.errors import BadRequest
from picocloud.http import Ctx, Reply, Route

P = "os_compute_api:"


def _resources(ctx: Ctx) -> tuple[str, ...]:
    """The resources this microversion shows: the network ones went away in 2.36."""
    if at_least(ctx, 36):
        return tuple(quota.DEFAULTS)
    return quota.RESOURCES


def _visible(ctx: Ctx, values: dict[str, int]) -> dict[str, int]:
    return {r: values[r] for r in _resources(ctx)}


def _project(ctx: Ctx) -> str:
    """The project in the path, which must exist (Nova verifies it with Keystone)."""
    project_id = ctx.params["project_id"]
    if not quota.known_project(ctx.db, project_id):
        raise BadRequest(f"Project ID {project_id} is not a valid project.")
    return project_id


def _user(ctx: Ctx) -> str | None:
    return ctx.q("user_id") or None


def show(ctx: Ctx) -> dict[str, Any]:
    project_id = ctx.params["project_id"]
    ctx.authorize(project_target(project_id))
    _project(ctx)
    values = quota.limits(ctx.db, project_id, _user(ctx))
    return {"quota_set": {"id": project_id, **_visible(ctx, values)}}


def detail(ctx: Ctx) -> dict[str, Any]:
    project_id = ctx.params["project_id"]
    ctx.authorize(project_target(project_id))
    _project(ctx)
    user_id = _user(ctx)
    values = quota.limits(ctx.db, project_id, user_id)
    if user_id is not None:
        used = quota.user_usage(ctx.db, project_id, user_id)
    else:
        used = quota.usage(ctx.db, project_id, ctx.token.user_id)
    body: dict[str, Any] = {"id": project_id}
    for resource in _resources(ctx):
        body[resource] = {"limit": values[resource], "in_use": used[resource], "reserved": 0}
    return {"quota_set": body}


def defaults(ctx: Ctx) -> dict[str, Any]:
    project_id = ctx.params["project_id"]
    ctx.authorize(project_target(project_id))
    return {"quota_set": {"id": project_id, **_visible(ctx, quota.defaults(ctx.db))}}


def _requested(ctx: Ctx, key: str, resources: tuple[str, ...]) -> tuple[dict[str, int], bool]:
    body = obj(ctx.body, key)
    only(body, (*resources, "force"))
    force = boolean("force", body.pop("force")) if "force" in body else False
    values = {r: integer(r, v, minimum=quota.UNLIMITED) for r, v in body.items()}
    return values, force


def _check_range(resource: str, value: int, minimum: int, maximum: int) -> None:
    """Nova's _validate_quota_limit: -1 counts as infinity on every side."""

    def inf(v: int) -> float:
        return float("inf") if v == quota.UNLIMITED else v

    if inf(value) < inf(minimum):
        raise BadRequest(f"Quota limit {value} for {resource} must be greater than or equal to "
                         f"already used and reserved {minimum}.")
    if inf(value) > inf(maximum):
        raise BadRequest(f"Quota limit {value} for {resource} must be less than or equal to "
                         f"{maximum}.")


def update(ctx: Ctx) -> dict[str, Any]:
    project_id = ctx.params["project_id"]
    ctx.authorize(project_target(project_id))
    _project(ctx)
    user_id = _user(ctx)
    values, force = _requested(ctx, "quota_set", _resources(ctx))
    if not force:
        if user_id is None:
            used = quota.usage(ctx.db, project_id)
            ceiling: dict[str, int] = {}
        else:
            used = quota.user_usage(ctx.db, project_id, user_id)
            ceiling = quota.limits(ctx.db, project_id)
        for resource, value in values.items():
            if resource in quota.LEGACY_NETWORK:
                continue
            _check_range(resource, value, used[resource],
                         ceiling.get(resource, quota.UNLIMITED))
    quota.set_limits(ctx.db, project_id, values, user_id)
    return {"quota_set": _visible(ctx, quota.limits(ctx.db, project_id, user_id))}


def delete(ctx: Ctx) -> Reply:
    project_id = ctx.params["project_id"]
    ctx.authorize(project_target(project_id))
    quota.reset(ctx.db, project_id, _user(ctx))
    return Reply(status=202)


def class_show(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    name = ctx.params["class_name"]
    return {"quota_class_set": {"id": name, **quota.class_limits(ctx.db, name)}}


def class_update(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    name = ctx.params["class_name"]
    values, _ = _requested(ctx, "quota_class_set", quota.RESOURCES)
    quota.set_class_limits(ctx.db, name, values)
    return {"quota_class_set": quota.class_limits(ctx.db, name)}


def limits(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    own = ctx.token.project_id or ""
    project_id = ctx.q("tenant_id") or own
    if project_id != own:
        ctx.authorize(project_target(project_id), rule=f"{P}limits:other_project")
    lim = quota.limits(ctx.db, project_id)
    used = quota.usage(ctx.db, project_id, ctx.token.user_id if project_id == own else None)
    absolute = {
        "maxServerMeta": lim["metadata_items"],
        "maxImageMeta": lim["metadata_items"],
        "maxPersonality": lim["injected_files"],
        "maxPersonalitySize": lim["injected_file_content_bytes"],
        "maxTotalCores": lim["cores"],
        "maxTotalInstances": lim["instances"],
        "maxTotalRAMSize": lim["ram"],
        "maxTotalKeypairs": lim["key_pairs"],
        "maxServerGroups": lim["server_groups"],
        "maxServerGroupMembers": lim["server_group_members"],
        "totalCoresUsed": used["cores"],
        "totalInstancesUsed": used["instances"],
        "totalRAMUsed": used["ram"],
        "totalServerGroupsUsed": used["server_groups"],
    }
    if not at_least(ctx, 36):
        absolute.update({
            "maxSecurityGroups": lim["security_groups"],
            "maxSecurityGroupRules": lim["security_group_rules"],
            "maxTotalFloatingIps": lim["floating_ips"],
            "totalFloatingIpsUsed": 0,
            "totalSecurityGroupsUsed": 0,
        })
    return {"limits": {"absolute": absolute, "rate": []}}


Q = "/v2.1/os-quota-sets/{project_id}"
ROUTES = [
    Route("GET", "/v2.1/limits", limits, f"{P}limits"),
    Route("GET", f"{Q}/defaults", defaults, f"{P}os-quota-sets:defaults"),
    Route("GET", f"{Q}/detail", detail, f"{P}os-quota-sets:show"),
    Route("GET", Q, show, f"{P}os-quota-sets:show"),
    Route("PUT", Q, update, f"{P}os-quota-sets:update"),
    Route("DELETE", Q, delete, f"{P}os-quota-sets:delete"),
    # Nova's own os-quota-class-sets rules are admin-only; showing defaults is harmless
    # (os-quota-sets/defaults shows them to anyone), changing them is for admins.
    Route("GET", "/v2.1/os-quota-class-sets/{class_name}", class_show,
          f"{P}os-quota-sets:defaults"),
    Route("PUT", "/v2.1/os-quota-class-sets/{class_name}", class_update,
          f"{P}os-quota-sets:update"),
]
