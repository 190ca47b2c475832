"""Version discovery and `/v3/auth/*`: issuing, validating and revoking tokens."""

from __future__ import annotations

from typing import Any

from picocloud.errors import BadRequest, Forbidden
from picocloud.http import Ctx, Reply, Route
from picocloud.identity.api.common import collection, domain_json, identity, project_json
from picocloud.identity.assignments import Assignments

VERSION_ID = "v3.14"
MEDIA_TYPES = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]


def _version(ctx: Ctx) -> dict[str, Any]:
    return {
        "id": VERSION_ID,
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{ctx.cloud.settings.base_url}/identity/v3/"}],
        "media-types": MEDIA_TYPES,
    }


def versions(ctx: Ctx) -> Reply:
    return Reply({"versions": {"values": [_version(ctx)]}}, status=300)


def version(ctx: Ctx) -> dict[str, Any]:
    return {"version": _version(ctx)}


def issue_token(ctx: Ctx) -> Reply:
    if not isinstance(ctx.body, dict) or "auth" not in ctx.body:
        raise BadRequest("Invalid input for field 'auth': 'auth' is a required property")
    token, auth = ctx.cloud.tokens.issue(ctx.db, ctx.body["auth"])
    ctx.request.scope["state"]["user_id"] = auth.user_id
    catalog = None if "nocatalog" in ctx.query else ctx.cloud.tokens.catalog(ctx.db)
    return Reply({"token": auth.body(catalog)}, status=201, headers={"X-Subject-Token": token})


def _subject(ctx: Ctx) -> tuple[str, Any]:
    token = ctx.request.headers.get("x-subject-token")
    if not token:
        raise BadRequest("Invalid input for field 'X-Subject-Token': the header is required")
    subject = ctx.cloud.tokens.validate(ctx.db, token, subject=True)
    ctx.authorize({"target": {"token": {"user_id": subject.user_id}}})
    return token, subject


def validate_token(ctx: Ctx) -> Reply:
    token, subject = _subject(ctx)
    catalog = None if "nocatalog" in ctx.query else ctx.cloud.tokens.catalog(ctx.db)
    return Reply({"token": subject.body(catalog)}, headers={"X-Subject-Token": token})


def check_token(ctx: Ctx) -> Reply:
    _subject(ctx)
    return Reply(None, status=200)


def revoke_token(ctx: Ctx) -> Reply:
    _token, subject = _subject(ctx)
    ctx.cloud.tokens.revoke(ctx.db, subject)
    return Reply(None, status=204)


def auth_catalog(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    if ctx.token.scope == "unscoped":
        raise Forbidden("A scoped token is required to get a catalog.")
    return {
        "catalog": ctx.cloud.tokens.catalog(ctx.db),
        "links": {"self": f"{ctx.cloud.settings.base_url}/identity/v3/auth/catalog"},
    }


def auth_projects(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    projects = Assignments(identity(ctx)).projects_of_user(ctx.token.user_id)
    return collection(ctx, "projects", [project_json(ctx, p) for p in projects if p.enabled])


def auth_domains(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    domains = Assignments(identity(ctx)).domains_of_user(ctx.token.user_id)
    return collection(ctx, "domains", [domain_json(ctx, d) for d in domains if d.enabled])


def auth_system(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    roles = Assignments(identity(ctx)).effective_role_ids(ctx.token.user_id, system=True)
    return {
        "system": [{"all": True}] if roles else [],
        "links": {"self": f"{ctx.cloud.settings.base_url}/identity/v3/auth/system"},
    }


ROUTES = [
    Route("GET", "", versions, auth=False),
    Route("GET", "/", versions, auth=False),
    Route("GET", "/v3", version, auth=False),
    Route("GET", "/v3/", version, auth=False),
    Route("POST", "/v3/auth/tokens", issue_token, auth=False),
    Route("GET", "/v3/auth/tokens", validate_token, "identity:validate_token"),
    Route("HEAD", "/v3/auth/tokens", check_token, "identity:check_token"),
    Route("DELETE", "/v3/auth/tokens", revoke_token, "identity:revoke_token"),
    Route("GET", "/v3/auth/catalog", auth_catalog, "identity:get_auth_catalog"),
    Route("GET", "/v3/auth/projects", auth_projects, "identity:get_auth_projects"),
    Route("GET", "/v3/OS-FEDERATION/projects", auth_projects, "identity:get_auth_projects"),
    Route("GET", "/v3/auth/domains", auth_domains, "identity:get_auth_domains"),
    Route("GET", "/v3/OS-FEDERATION/domains", auth_domains, "identity:get_auth_domains"),
    Route("GET", "/v3/auth/system", auth_system, "identity:get_auth_system"),
]
