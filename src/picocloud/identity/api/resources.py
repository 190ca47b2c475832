"""Domains, projects (with tags), users and groups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from picocloud.errors import BadRequest, Unauthorized
from picocloud.http import Ctx, Reply, Route
from picocloud.identity import schemas
from picocloud.identity.api.common import (
    collection,
    default_domain,
    domain_json,
    flag,
    group_json,
    identity,
    project_json,
    user_json,
)
from picocloud.identity.assignments import Assignments
from picocloud.identity.errors import not_found
from picocloud.identity.models import Domain, Group, Project, User
from picocloud.identity.passwords import check_password

NO_CONTENT = Reply(None, status=204)


def _list_domain(ctx: Ctx) -> str | None:
    """The domain a list is confined to: the filter, or a domain-scoped caller's own domain."""
    wanted = ctx.q("domain_id")
    token = ctx.token
    if wanted is None and token.scope == "domain" and "admin" not in token.role_names:
        wanted = token.payload.domain_id
    ctx.authorize({"target": {"domain_id": wanted}})
    return wanted


def _filter(rows: Sequence[Any], ctx: Ctx, *names: str) -> list[Any]:
    out = list(rows)
    for name in names:
        value = ctx.q(name) if name != "enabled" else None
        if value is not None:
            out = [r for r in out if getattr(r, name) == value]
    enabled = flag(ctx, "enabled")
    if "enabled" in names and enabled is not None:
        out = [r for r in out if r.enabled == enabled]
    return out


# -- domains ------------------------------------------------------------------------------
def list_domains(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    rows = _filter(identity(ctx).store.list(Domain, order=Domain.name), ctx, "name", "enabled")
    return collection(ctx, "domains", [domain_json(ctx, d) for d in rows])


def create_domain(ctx: Ctx) -> Reply:
    ctx.authorize()
    req = ctx.parse(schemas.DomainCreate, "domain")
    domain = identity(ctx).create_domain(req)
    return Reply({"domain": domain_json(ctx, domain)}, status=201)


def get_domain(ctx: Ctx) -> dict[str, Any]:
    domain = identity(ctx).domain(ctx.params["domain_id"])
    ctx.authorize({"target": {"domain": {"id": domain.id}, "domain_id": domain.id}})
    return {"domain": domain_json(ctx, domain)}


def update_domain(ctx: Ctx) -> dict[str, Any]:
    svc = identity(ctx)
    domain = svc.domain(ctx.params["domain_id"])
    ctx.authorize({"target": {"domain": {"id": domain.id}, "domain_id": domain.id}})
    req = ctx.parse(schemas.DomainUpdate, "domain")
    return {"domain": domain_json(ctx, svc.update_domain(domain, req))}


def delete_domain(ctx: Ctx) -> Reply:
    svc = identity(ctx)
    domain = svc.domain(ctx.params["domain_id"])
    ctx.authorize({"target": {"domain": {"id": domain.id}, "domain_id": domain.id}})
    svc.delete_domain(domain)
    return NO_CONTENT


# -- projects -----------------------------------------------------------------------------
def _project_target(project: Project) -> dict[str, Any]:
    return {
        "target": {
            "project": {"id": project.id, "domain_id": project.domain_id},
            "domain_id": project.domain_id,
        }
    }


def list_projects(ctx: Ctx) -> dict[str, Any]:
    domain_id = _list_domain(ctx)
    svc = identity(ctx)
    rows = list(svc.store.list(Project, order=Project.name, domain_id=domain_id))
    rows = _filter(rows, ctx, "name", "enabled")
    parent = ctx.q("parent_id")
    if parent is not None:
        rows = [p for p in rows if svc.parent_id(p) == parent]
    if flag(ctx, "is_domain"):
        domains = _filter(svc.store.list(Domain, order=Domain.name), ctx, "name", "enabled")
        return collection(ctx, "projects", [_domain_as_project(ctx, d) for d in domains])
    for key, need_all in (("tags", True), ("tags-any", False)):
        wanted = ctx.q(key)
        if wanted:
            tags = set(wanted.split(","))
            rows = [p for p in rows if (tags <= set(p.tags) if need_all else tags & set(p.tags))]
    for key, need_all in (("not-tags", True), ("not-tags-any", False)):
        wanted = ctx.q(key)
        if wanted:
            tags = set(wanted.split(","))
            rows = [
                p for p in rows if not (tags <= set(p.tags) if need_all else tags & set(p.tags))
            ]
    return collection(ctx, "projects", [project_json(ctx, p) for p in rows])


def create_project(ctx: Ctx) -> Reply:
    req = ctx.parse(schemas.ProjectCreate, "project")
    domain = req.domain_id or default_domain(ctx)
    ctx.authorize({"target": {"project": {"domain_id": domain}, "domain_id": domain}})
    svc = identity(ctx)
    if req.is_domain:
        created = svc.create_domain(
            schemas.DomainCreate(
                name=req.name, description=req.description, enabled=req.enabled, tags=req.tags
            )
        )
        return Reply({"project": _domain_as_project(ctx, created)}, status=201)
    project = svc.create_project(req, default_domain(ctx))
    return Reply({"project": project_json(ctx, project)}, status=201)


def _subtree_as(ctx: Ctx, project: Project, body: dict[str, Any]) -> None:
    svc = identity(ctx)
    if "subtree_as_ids" in ctx.query or "subtree_as_list" in ctx.query:
        sub = svc.store.subtree(project.id)
        if "subtree_as_list" in ctx.query:
            body["subtree"] = [{"project": project_json(ctx, p)} for p in sub]
        else:
            body["subtree"] = _nest(project.id, sub)
    if "parents_as_ids" in ctx.query or "parents_as_list" in ctx.query:
        ancestors = svc.store.ancestors(project)
        if "parents_as_list" in ctx.query:
            body["parents"] = [{"project": project_json(ctx, p)} for p in ancestors]
        else:
            nested: dict[str, Any] | None = None
            for p in reversed(ancestors):
                nested = {p.id: nested}
            body["parents"] = nested


def _nest(root: str, projects: list[Project]) -> dict[str, Any] | None:
    children: dict[str, list[str]] = {}
    for p in projects:
        children.setdefault(p.parent_id or "", []).append(p.id)

    def build(node: str) -> dict[str, Any] | None:
        kids = children.get(node)
        return {k: build(k) for k in kids} if kids else None

    return build(root)


def _domain_as_project(ctx: Ctx, d: Domain) -> dict[str, Any]:
    """A domain seen through the projects API (Keystone keeps domains as is_domain projects)."""
    body = domain_json(ctx, d)
    body.update(
        domain_id=None,
        parent_id=None,
        is_domain=True,
        links={"self": body["links"]["self"].replace("/domains/", "/projects/")},
    )
    return body


def _as_domain(ctx: Ctx) -> Domain | None:
    """The domain addressed through /v3/projects/{id}, when {id} is a domain, not a project."""
    svc = identity(ctx)
    ident = ctx.params["project_id"]
    if svc.store.get(Project, ident) is not None:
        return None
    domain = svc.store.get(Domain, ident)
    if domain is not None:
        ctx.authorize(
            {"target": {"domain": {"id": domain.id}, "domain_id": domain.id}},
            rule=ctx.route.rule.replace("project", "domain") if ctx.route.rule else None,
        )
    return domain


def get_project(ctx: Ctx) -> dict[str, Any]:
    as_domain = _as_domain(ctx)
    if as_domain is not None:
        return {"project": _domain_as_project(ctx, as_domain)}
    project = identity(ctx).project(ctx.params["project_id"])
    ctx.authorize(_project_target(project))
    body = project_json(ctx, project)
    _subtree_as(ctx, project, body)
    return {"project": body}


def update_project(ctx: Ctx) -> dict[str, Any]:
    svc = identity(ctx)
    as_domain = _as_domain(ctx)
    if as_domain is not None:
        req = ctx.parse(schemas.DomainUpdate, "project")
        return {"project": _domain_as_project(ctx, svc.update_domain(as_domain, req))}
    project = svc.project(ctx.params["project_id"])
    ctx.authorize(_project_target(project))
    req = ctx.parse(schemas.ProjectUpdate, "project")
    return {"project": project_json(ctx, svc.update_project(project, req))}


def delete_project(ctx: Ctx) -> Reply:
    svc = identity(ctx)
    as_domain = _as_domain(ctx)
    if as_domain is not None:
        svc.delete_domain(as_domain)
        return NO_CONTENT
    project = svc.project(ctx.params["project_id"])
    ctx.authorize(_project_target(project))
    svc.delete_project(project, cascade="cascade" in ctx.query)
    return NO_CONTENT


def list_tags(ctx: Ctx) -> dict[str, Any]:
    project = identity(ctx).project(ctx.params["project_id"])
    ctx.authorize(_project_target(project))
    return {"tags": list(project.tags)}


def replace_tags(ctx: Ctx) -> dict[str, Any]:
    project = identity(ctx).project(ctx.params["project_id"])
    ctx.authorize(_project_target(project))
    body = ctx.body if isinstance(ctx.body, dict) else {}
    tags = body.get("tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise BadRequest("Invalid input for field 'tags': expected a list of strings")
    _check_tags(tags)
    project.tags = list(dict.fromkeys(tags))
    return {"tags": project.tags}


def _check_tags(tags: list[str]) -> None:
    if len(tags) > 80:
        raise BadRequest("Invalid input for field 'tags': at most 80 tags")
    for t in tags:
        if len(t) > 255 or "," in t or "/" in t:
            raise BadRequest(f"Invalid input for field 'tags': invalid tag {t!r}")


def delete_tags(ctx: Ctx) -> Reply:
    project = identity(ctx).project(ctx.params["project_id"])
    ctx.authorize(_project_target(project))
    project.tags = []
    return NO_CONTENT


def check_tag(ctx: Ctx) -> Reply:
    project = identity(ctx).project(ctx.params["project_id"])
    ctx.authorize(_project_target(project))
    if ctx.params["tag"] not in project.tags:
        raise not_found("project tag", ctx.params["tag"])
    return NO_CONTENT


def add_tag(ctx: Ctx) -> Reply:
    project = identity(ctx).project(ctx.params["project_id"])
    ctx.authorize(_project_target(project))
    tag = ctx.params["tag"]
    _check_tags([*project.tags, tag] if tag not in project.tags else list(project.tags))
    if tag not in project.tags:
        project.tags = [*project.tags, tag]
    return Reply(None, status=201, headers={"Location": f"{ctx.request.url}"})


def delete_tag(ctx: Ctx) -> Reply:
    project = identity(ctx).project(ctx.params["project_id"])
    ctx.authorize(_project_target(project))
    tag = ctx.params["tag"]
    if tag not in project.tags:
        raise not_found("project tag", tag)
    project.tags = [t for t in project.tags if t != tag]
    return NO_CONTENT


# -- users --------------------------------------------------------------------------------
def _user_target(user: User) -> dict[str, Any]:
    return {
        "target": {
            "user": {"id": user.id, "domain_id": user.domain_id},
            "domain_id": user.domain_id,
        }
    }


def list_users(ctx: Ctx) -> dict[str, Any]:
    domain_id = _list_domain(ctx)
    rows = identity(ctx).store.list(User, order=User.name, domain_id=domain_id)
    return collection(
        ctx, "users", [user_json(ctx, u) for u in _filter(rows, ctx, "name", "enabled")]
    )


def create_user(ctx: Ctx) -> Reply:
    req = ctx.parse(schemas.UserCreate, "user")
    domain = req.domain_id or default_domain(ctx)
    ctx.authorize({"target": {"user": {"domain_id": domain}, "domain_id": domain}})
    user = identity(ctx).create_user(req, domain)
    return Reply({"user": user_json(ctx, user)}, status=201)


def get_user(ctx: Ctx) -> dict[str, Any]:
    user = identity(ctx).user(ctx.params["user_id"])
    ctx.authorize(_user_target(user))
    return {"user": user_json(ctx, user)}


def update_user(ctx: Ctx) -> dict[str, Any]:
    svc = identity(ctx)
    user = svc.user(ctx.params["user_id"])
    ctx.authorize(_user_target(user))
    req = ctx.parse(schemas.UserUpdate, "user")
    return {"user": user_json(ctx, svc.update_user(user, req))}


def delete_user(ctx: Ctx) -> Reply:
    svc = identity(ctx)
    user = svc.user(ctx.params["user_id"])
    ctx.authorize(_user_target(user))
    svc.delete_user(user)
    return NO_CONTENT


def change_password(ctx: Ctx) -> Reply:
    """`POST /v3/users/{id}/password`: proves the original password; needs no token."""
    svc = identity(ctx)
    req = ctx.parse(schemas.PasswordChange, "user")
    user = svc.store.get(User, ctx.params["user_id"])
    if user is None or not check_password(req.original_password, user.password_hash):
        raise Unauthorized("The request you have made requires authentication.")
    if not user.enabled:
        raise Unauthorized("The request you have made requires authentication.")
    svc.set_password(user, req.password)
    return NO_CONTENT


def user_projects(ctx: Ctx) -> dict[str, Any]:
    user = identity(ctx).user(ctx.params["user_id"])
    ctx.authorize(_user_target(user))
    projects = Assignments(identity(ctx)).projects_of_user(user.id)
    projects = _filter(projects, ctx, "name", "enabled", "domain_id")
    return collection(ctx, "projects", [project_json(ctx, p) for p in projects])


def user_groups(ctx: Ctx) -> dict[str, Any]:
    svc = identity(ctx)
    user = svc.user(ctx.params["user_id"])
    ctx.authorize(_user_target(user))
    groups = svc.store.groups_of_user(user.id)
    return collection(ctx, "groups", [group_json(ctx, g) for g in groups])


# -- groups -------------------------------------------------------------------------------
def _group_target(group: Group) -> dict[str, Any]:
    return {
        "target": {
            "group": {"id": group.id, "domain_id": group.domain_id},
            "domain_id": group.domain_id,
        }
    }


def list_groups(ctx: Ctx) -> dict[str, Any]:
    domain_id = _list_domain(ctx)
    rows = identity(ctx).store.list(Group, order=Group.name, domain_id=domain_id)
    return collection(ctx, "groups", [group_json(ctx, g) for g in _filter(rows, ctx, "name")])


def create_group(ctx: Ctx) -> Reply:
    req = ctx.parse(schemas.GroupCreate, "group")
    domain = req.domain_id or default_domain(ctx)
    ctx.authorize({"target": {"group": {"domain_id": domain}, "domain_id": domain}})
    group = identity(ctx).create_group(req, domain)
    return Reply({"group": group_json(ctx, group)}, status=201)


def get_group(ctx: Ctx) -> dict[str, Any]:
    group = identity(ctx).group(ctx.params["group_id"])
    ctx.authorize(_group_target(group))
    return {"group": group_json(ctx, group)}


def update_group(ctx: Ctx) -> dict[str, Any]:
    svc = identity(ctx)
    group = svc.group(ctx.params["group_id"])
    ctx.authorize(_group_target(group))
    req = ctx.parse(schemas.GroupUpdate, "group")
    return {"group": group_json(ctx, svc.update_group(group, req))}


def delete_group(ctx: Ctx) -> Reply:
    svc = identity(ctx)
    group = svc.group(ctx.params["group_id"])
    ctx.authorize(_group_target(group))
    svc.delete_group(group)
    return NO_CONTENT


def group_users(ctx: Ctx) -> dict[str, Any]:
    svc = identity(ctx)
    group = svc.group(ctx.params["group_id"])
    ctx.authorize(_group_target(group))
    users = _filter(svc.store.users_in_group(group.id), ctx, "name", "enabled")
    return collection(ctx, "users", [user_json(ctx, u) for u in users])


def _member(ctx: Ctx) -> tuple[Group, User]:
    svc = identity(ctx)
    group = svc.group(ctx.params["group_id"])
    user = svc.user(ctx.params["user_id"])
    ctx.authorize(_group_target(group))
    return group, user


def add_member(ctx: Ctx) -> Reply:
    group, user = _member(ctx)
    identity(ctx).add_member(group, user)
    return NO_CONTENT


def check_member(ctx: Ctx) -> Reply:
    group, user = _member(ctx)
    if identity(ctx).store.membership(user.id, group.id) is None:
        raise not_found("membership", f"user {user.id} in group {group.id}")
    return NO_CONTENT


def remove_member(ctx: Ctx) -> Reply:
    group, user = _member(ctx)
    identity(ctx).remove_member(group, user)
    return NO_CONTENT


ROUTES = [
    Route("GET", "/v3/domains", list_domains, "identity:list_domains"),
    Route("POST", "/v3/domains", create_domain, "identity:create_domain"),
    Route("GET", "/v3/domains/{domain_id}", get_domain, "identity:get_domain"),
    Route("PATCH", "/v3/domains/{domain_id}", update_domain, "identity:update_domain"),
    Route("DELETE", "/v3/domains/{domain_id}", delete_domain, "identity:delete_domain"),
    Route("GET", "/v3/projects", list_projects, "identity:list_projects"),
    Route("POST", "/v3/projects", create_project, "identity:create_project"),
    Route("GET", "/v3/projects/{project_id}", get_project, "identity:get_project"),
    Route("PATCH", "/v3/projects/{project_id}", update_project, "identity:update_project"),
    Route("DELETE", "/v3/projects/{project_id}", delete_project, "identity:delete_project"),
    Route("GET", "/v3/projects/{project_id}/tags", list_tags, "identity:list_project_tags"),
    Route("PUT", "/v3/projects/{project_id}/tags", replace_tags, "identity:update_project_tags"),
    Route("DELETE", "/v3/projects/{project_id}/tags", delete_tags, "identity:delete_project_tags"),
    Route("GET", "/v3/projects/{project_id}/tags/{tag}", check_tag, "identity:get_project_tag"),
    Route("PUT", "/v3/projects/{project_id}/tags/{tag}", add_tag, "identity:create_project_tag"),
    Route(
        "DELETE", "/v3/projects/{project_id}/tags/{tag}", delete_tag, "identity:delete_project_tag"
    ),
    Route("GET", "/v3/users", list_users, "identity:list_users"),
    Route("POST", "/v3/users", create_user, "identity:create_user"),
    Route("GET", "/v3/users/{user_id}", get_user, "identity:get_user"),
    Route("PATCH", "/v3/users/{user_id}", update_user, "identity:update_user"),
    Route("DELETE", "/v3/users/{user_id}", delete_user, "identity:delete_user"),
    Route("POST", "/v3/users/{user_id}/password", change_password, auth=False),
    Route("GET", "/v3/users/{user_id}/projects", user_projects, "identity:list_user_projects"),
    Route("GET", "/v3/users/{user_id}/groups", user_groups, "identity:list_groups_for_user"),
    Route("GET", "/v3/groups", list_groups, "identity:list_groups"),
    Route("POST", "/v3/groups", create_group, "identity:create_group"),
    Route("GET", "/v3/groups/{group_id}", get_group, "identity:get_group"),
    Route("PATCH", "/v3/groups/{group_id}", update_group, "identity:update_group"),
    Route("DELETE", "/v3/groups/{group_id}", delete_group, "identity:delete_group"),
    Route("GET", "/v3/groups/{group_id}/users", group_users, "identity:list_users_in_group"),
    Route("PUT", "/v3/groups/{group_id}/users/{user_id}", add_member, "identity:add_user_to_group"),
    Route(
        "HEAD",
        "/v3/groups/{group_id}/users/{user_id}",
        check_member,
        "identity:check_user_in_group",
    ),
    Route(
        "GET", "/v3/groups/{group_id}/users/{user_id}", check_member, "identity:check_user_in_group"
    ),
    Route(
        "DELETE",
        "/v3/groups/{group_id}/users/{user_id}",
        remove_member,
        "identity:remove_user_from_group",
    ),
]
