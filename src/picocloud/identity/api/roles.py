"""Roles, implied roles, grants (projects, domains, system, OS-INHERIT) and role assignments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from picocloud.errors import BadRequest
from picocloud.http import Ctx, Reply, Route
from picocloud.identity import schemas
from picocloud.identity.api.common import (
    collection,
    group_json,
    identity,
    present,
    project_json,
    role_json,
    self_link,
    v3_url,
)
from picocloud.identity.assignments import SYSTEM, Assignments, Grant
from picocloud.identity.models import Domain, Group, Project, Role, User

NO_CONTENT = Reply(None, status=204)


# -- roles --------------------------------------------------------------------------------
def _role_target(role: Role) -> dict[str, Any]:
    return {
        "target": {
            "role": {"id": role.id, "domain_id": role.domain_id or None},
            "domain_id": role.domain_id or None,
        }
    }


def list_roles(ctx: Ctx) -> dict[str, Any]:
    domain_id = ctx.q("domain_id") or ""
    ctx.authorize({"target": {"domain_id": domain_id or None}})
    rows = identity(ctx).store.list(Role, order=Role.name, domain_id=domain_id)
    name = ctx.q("name")
    return collection(ctx, "roles", [role_json(ctx, r) for r in rows if not name or r.name == name])


def create_role(ctx: Ctx) -> Reply:
    req = ctx.parse(schemas.RoleCreate, "role")
    ctx.authorize({"target": {"role": {"domain_id": req.domain_id}, "domain_id": req.domain_id}})
    return Reply({"role": role_json(ctx, identity(ctx).create_role(req))}, status=201)


def get_role(ctx: Ctx) -> dict[str, Any]:
    role = identity(ctx).role(ctx.params["role_id"])
    ctx.authorize(_role_target(role))
    return {"role": role_json(ctx, role)}


def update_role(ctx: Ctx) -> dict[str, Any]:
    svc = identity(ctx)
    role = svc.role(ctx.params["role_id"])
    ctx.authorize(_role_target(role))
    return {"role": role_json(ctx, svc.update_role(role, ctx.parse(schemas.RoleUpdate, "role")))}


def delete_role(ctx: Ctx) -> Reply:
    svc = identity(ctx)
    role = svc.role(ctx.params["role_id"])
    ctx.authorize(_role_target(role))
    svc.delete_role(role)
    return NO_CONTENT


# -- implied roles ------------------------------------------------------------------------
def _role_ref(ctx: Ctx, role: Role) -> dict[str, Any]:
    return {"id": role.id, "name": role.name, "links": self_link(ctx, f"roles/{role.id}")}


def _pair(ctx: Ctx) -> tuple[Role, Role]:
    ctx.authorize()
    svc = identity(ctx)
    return svc.role(ctx.params["prior_id"]), svc.role(ctx.params["implied_id"])


def _inference(ctx: Ctx, prior: Role, implied: Role) -> dict[str, Any]:
    return {
        "role_inference": {"prior_role": _role_ref(ctx, prior), "implies": _role_ref(ctx, implied)},
        "links": self_link(ctx, f"roles/{prior.id}/implies/{implied.id}"),
    }


def create_implied(ctx: Ctx) -> Reply:
    prior, implied = _pair(ctx)
    identity(ctx).add_implied_role(prior, implied)
    return Reply(_inference(ctx, prior, implied), status=201)


def get_implied(ctx: Ctx) -> dict[str, Any]:
    prior, implied = _pair(ctx)
    identity(ctx).implied_role(prior, implied)
    return _inference(ctx, prior, implied)


def check_implied(ctx: Ctx) -> Reply:
    prior, implied = _pair(ctx)
    identity(ctx).implied_role(prior, implied)
    return NO_CONTENT


def delete_implied(ctx: Ctx) -> Reply:
    prior, implied = _pair(ctx)
    svc = identity(ctx)
    svc.store.remove(svc.implied_role(prior, implied))
    return NO_CONTENT


def _implications(ctx: Ctx) -> dict[str, list[str]]:
    graph: dict[str, list[str]] = {}
    for link in identity(ctx).store.implications():
        graph.setdefault(link.prior_role_id, []).append(link.implied_role_id)
    return graph


def list_implied(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    svc = identity(ctx)
    prior = svc.role(ctx.params["prior_id"])
    roles = svc.store.roles_by_id()
    implied = [_role_ref(ctx, roles[i]) for i in _implications(ctx).get(prior.id, [])]
    return {
        "role_inference": {"prior_role": _role_ref(ctx, prior), "implies": implied},
        "links": self_link(ctx, f"roles/{prior.id}/implies"),
    }


def list_inferences(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    roles = identity(ctx).store.roles_by_id()
    return {
        "role_inferences": [
            {
                "prior_role": _role_ref(ctx, roles[p]),
                "implies": [_role_ref(ctx, roles[i]) for i in implied],
            }
            for p, implied in sorted(_implications(ctx).items())
        ],
        "links": self_link(ctx, "role_inferences"),
    }


# -- grants -------------------------------------------------------------------------------
def _grant_target(ctx: Ctx, scope: str, actor: str) -> tuple[str, str, str]:
    svc = identity(ctx)
    actor_id = ctx.params[f"{actor}_id"]
    if scope == "project":
        target_id = ctx.params["project_id"]
        domain_id: str | None = svc.project(target_id).domain_id
    elif scope == "domain":
        target_id = ctx.params["domain_id"]
        domain_id = svc.domain(target_id).id
    else:
        target_id, domain_id = SYSTEM, None
    ctx.authorize(
        {"target": {"domain_id": domain_id, actor: {"id": actor_id}, scope: {"id": target_id}}}
    )
    return actor_id, target_id, domain_id or ""


def _grant_handlers(scope: str, actor: str, inherited: bool) -> dict[str, Callable[[Ctx], Any]]:
    def do(op: str) -> Callable[[Ctx], Any]:
        def handler(ctx: Ctx) -> Any:
            actor_id, target_id, _ = _grant_target(ctx, scope, actor)
            a = Assignments(identity(ctx))
            role_id = ctx.params.get("role_id", "")
            if op == "put":
                a.grant(actor, actor_id, scope, target_id, role_id, inherited)
            elif op == "check":
                a.find(actor, actor_id, scope, target_id, role_id, inherited)
            elif op == "delete":
                a.revoke(actor, actor_id, scope, target_id, role_id, inherited)
            else:
                roles = a.roles_on(actor, actor_id, scope, target_id, inherited)
                return collection(ctx, "roles", [role_json(ctx, r) for r in roles])
            return NO_CONTENT

        return handler

    return {op: do(op) for op in ("put", "check", "delete", "list")}


def _grant_routes() -> list[Route]:
    routes: list[Route] = []
    for scope, prefix in (
        ("project", "/v3/projects/{project_id}"),
        ("domain", "/v3/domains/{domain_id}"),
        ("system", "/v3/system"),
    ):
        for actor in ("user", "group"):
            kind = "system_grant" if scope == "system" else "grant"
            base = f"{prefix}/{actor}s/{{{actor}_id}}/roles"
            h = _grant_handlers(scope, actor, False)
            routes += [
                Route("GET", base, h["list"], f"identity:list_{kind}s"),
                Route("PUT", base + "/{role_id}", h["put"], f"identity:create_{kind}"),
                Route("HEAD", base + "/{role_id}", h["check"], f"identity:check_{kind}"),
                Route("GET", base + "/{role_id}", h["check"], f"identity:check_{kind}"),
                Route("DELETE", base + "/{role_id}", h["delete"], f"identity:revoke_{kind}"),
            ]
            if scope == "system":
                continue
            inherit = f"/v3/OS-INHERIT{prefix[3:]}/{actor}s/{{{actor}_id}}/roles"
            h = _grant_handlers(scope, actor, True)
            routes += [
                Route("GET", inherit + "/inherited_to_projects", h["list"], "identity:list_grants"),
                Route(
                    "PUT",
                    inherit + "/{role_id}/inherited_to_projects",
                    h["put"],
                    "identity:create_grant",
                ),
                Route(
                    "HEAD",
                    inherit + "/{role_id}/inherited_to_projects",
                    h["check"],
                    "identity:check_grant",
                ),
                Route(
                    "GET",
                    inherit + "/{role_id}/inherited_to_projects",
                    h["check"],
                    "identity:check_grant",
                ),
                Route(
                    "DELETE",
                    inherit + "/{role_id}/inherited_to_projects",
                    h["delete"],
                    "identity:revoke_grant",
                ),
            ]
    return routes


# -- role assignments ---------------------------------------------------------------------
def list_assignments(ctx: Ctx) -> dict[str, Any]:
    q = ctx.q
    f: dict[str, Any] = {
        "role_id": q("role.id"),
        "user_id": q("user.id"),
        "group_id": q("group.id"),
        "domain_id": q("scope.domain.id"),
        "system": q("scope.system"),
        "inherited": q("scope.OS-INHERIT:inherited_to") == "projects",
        "effective": present(ctx, "effective"),
    }
    if f["effective"] and f["group_id"]:
        raise BadRequest("Specifying group.id together with effective is not allowed.")
    svc = identity(ctx)
    project_id = q("scope.project.id")
    domain_for_policy: str | None = f["domain_id"]
    if project_id is not None:
        f["project_ids"] = {project_id}
        project = svc.store.get(Project, project_id)
        if project is not None:
            domain_for_policy = project.domain_id
            if present(ctx, "include_subtree"):
                f["project_ids"] |= {p.id for p in svc.store.subtree(project_id)}
    ctx.authorize({"target": {"domain_id": domain_for_policy, "user": {"id": f["user_id"]}}})
    grants = Assignments(svc).list(f)
    names = present(ctx, "include_names")
    return collection(ctx, "role_assignments", [_grant_json(ctx, g, names) for g in grants])


def _grant_json(ctx: Ctx, g: Grant, names: bool) -> dict[str, Any]:
    svc = identity(ctx)
    out: dict[str, Any] = {"role": {"id": g.role_id}}
    out[g.actor] = {"id": g.actor_id}
    if g.scope == "system":
        out["scope"] = {"system": {"all": True}}
    else:
        out["scope"] = {g.scope: {"id": g.target_id}}
    if g.inherited:
        out["scope"]["OS-INHERIT:inherited_to"] = "projects"
    src_scope = g.source_scope or g.scope
    src_target = g.source_target or g.target_id
    actor_kind, actor_id = ("group", g.via_group) if g.via_group else (g.actor, g.actor_id)
    if src_scope == "system":
        path = f"system/{actor_kind}s/{actor_id}/roles/{g.prior_role_id or g.role_id}"
    else:
        path = (
            f"{src_scope}s/{src_target}/{actor_kind}s/{actor_id}/roles/"
            f"{g.prior_role_id or g.role_id}"
        )
    if g.inherited or g.source_scope:
        path = f"OS-INHERIT/{path}/inherited_to_projects"
    links: dict[str, Any] = {"assignment": v3_url(ctx, path)}
    if g.via_group:
        links["membership"] = v3_url(ctx, f"groups/{g.via_group}/users/{g.actor_id}")
    if g.prior_role_id:
        links["prior_role"] = v3_url(ctx, f"roles/{g.prior_role_id}")
    out["links"] = links
    if names:
        _add_names(ctx, svc, out, g)
    return out


def _add_names(ctx: Ctx, svc: Any, out: dict[str, Any], g: Grant) -> None:
    store = svc.store
    role = store.get(Role, g.role_id)
    if role is not None:
        out["role"]["name"] = role.name
        if role.domain_id:
            out["role"]["domain"] = _domain_ref(store, role.domain_id)
    model: type[User] | type[Group] = User if g.actor == "user" else Group
    actor = store.get(model, g.actor_id)
    if actor is not None:
        out[g.actor]["name"] = actor.name
        out[g.actor]["domain"] = _domain_ref(store, actor.domain_id)
    if g.scope == "project":
        project = store.get(Project, g.target_id)
        if project is not None:
            out["scope"]["project"]["name"] = project.name
            out["scope"]["project"]["domain"] = _domain_ref(store, project.domain_id)
    elif g.scope == "domain":
        domain = store.get(Domain, g.target_id)
        if domain is not None:
            out["scope"]["domain"]["name"] = domain.name


def _domain_ref(store: Any, domain_id: str) -> dict[str, str]:
    domain = store.get(Domain, domain_id)
    return {"id": domain_id, "name": domain.name if domain else ""}


ROUTES = [
    Route("GET", "/v3/roles", list_roles, "identity:list_roles"),
    Route("POST", "/v3/roles", create_role, "identity:create_role"),
    Route("GET", "/v3/roles/{role_id}", get_role, "identity:get_role"),
    Route("PATCH", "/v3/roles/{role_id}", update_role, "identity:update_role"),
    Route("DELETE", "/v3/roles/{role_id}", delete_role, "identity:delete_role"),
    Route("GET", "/v3/roles/{prior_id}/implies", list_implied, "identity:list_implied_roles"),
    Route(
        "PUT",
        "/v3/roles/{prior_id}/implies/{implied_id}",
        create_implied,
        "identity:create_implied_role",
    ),
    Route(
        "GET", "/v3/roles/{prior_id}/implies/{implied_id}", get_implied, "identity:get_implied_role"
    ),
    Route(
        "HEAD",
        "/v3/roles/{prior_id}/implies/{implied_id}",
        check_implied,
        "identity:check_implied_role",
    ),
    Route(
        "DELETE",
        "/v3/roles/{prior_id}/implies/{implied_id}",
        delete_implied,
        "identity:delete_implied_role",
    ),
    Route("GET", "/v3/role_inferences", list_inferences, "identity:list_role_inference_rules"),
    Route("GET", "/v3/role_assignments", list_assignments, "identity:list_role_assignments"),
    *_grant_routes(),
]

__all__ = ["ROUTES", "group_json", "project_json"]
