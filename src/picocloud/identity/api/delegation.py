"""Delegation: application credentials, their access rules, and trusts (OS-TRUST).

Both hand part of a user's authority to something else, so both refuse to be managed with a
token that is itself delegated (a trust token, or a restricted application credential), and
both may only carry roles the delegating user really holds on the project.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, StringConstraints, model_validator

from picocloud.errors import BadRequest, Forbidden
from picocloud.http import Ctx, Reply, Route
from picocloud.identity.api.common import collection, identity, role_json, self_link, v3_url
from picocloud.identity.assignments import Assignments
from picocloud.identity.errors import duplicate, not_found
from picocloud.identity.models import AccessRule, AppCredential, Role, Trust
from picocloud.identity.passwords import hash_password
from picocloud.identity.schemas import Closed, Id, Name255, Open
from picocloud.identity.service import IdentityService, new_id, utcnow
from picocloud.identity.tokens import isotime

NO_CONTENT = Reply(None, status=204)
APP_CRED_TIME = "%Y-%m-%dT%H:%M:%S.%f"  # Keystone renders app credential expiry without a zone


class RoleRef(Closed):
    """A role named by exactly one of id or name."""

    id: Id | None = None
    name: Name255 | None = None

    @model_validator(mode="after")
    def _one_of(self) -> RoleRef:
        if (self.id is None) == (self.name is None):
            raise ValueError("give exactly one of 'id' or 'name'")
        return self


class AccessRuleRef(Closed):
    id: Id | None = None
    service: Id | None = None
    path: Annotated[str, StringConstraints(max_length=225, pattern=r"^/")] | None = None
    method: Literal["DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"] | None = None


class AppCredCreate(Closed):
    name: Name255
    description: StrictStr | None = None
    secret: StrictStr | None = None
    expires_at: StrictStr | None = None
    roles: list[RoleRef] | None = None
    unrestricted: StrictBool | None = None
    access_rules: list[AccessRuleRef] | None = None
    # accepted as Keystone does, and ignored: the id is generated, the project is the token's
    id: StrictStr | None = None
    project_id: StrictStr | None = None
    system: StrictStr | None = None


class TrustCreate(Open):
    trustor_user_id: StrictStr
    trustee_user_id: StrictStr
    impersonation: StrictBool
    project_id: StrictStr | None = None
    roles: list[RoleRef] = Field(default_factory=list)
    expires_at: StrictStr | None = None
    remaining_uses: StrictInt | None = Field(default=None, ge=1)
    allow_redelegation: StrictBool | None = None
    redelegation_count: StrictInt | None = Field(default=None, ge=0)


def parse_expiry(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 expiry in the future, as naive UTC; None for no expiry."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"Invalid input for field '{field}': {value!r} is not an ISO 8601 timestamp"
        ) from None
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    if when <= utcnow():
        raise BadRequest(f"Invalid input for field '{field}': the time must be in the future")
    return when


def resolve_roles(svc: IdentityService, refs: list[RoleRef]) -> list[Role]:
    """Roles by id, or global roles by name (Keystone's get_unique_role_by_name)."""
    out: dict[str, Role] = {}
    for ref in refs:
        if ref.id is not None:
            role = svc.role(ref.id)
        else:
            assert ref.name is not None
            found = svc.store.list(Role, name=ref.name, domain_id="")
            if len(found) != 1:
                raise not_found("role", ref.name)
            role = found[0]
        out[role.id] = role
    return list(out.values())


def _user_target(user_id: str) -> dict[str, Any]:
    return {"target": {"user": {"id": user_id}}}


def _refuse_trust_token(ctx: Ctx) -> None:
    if ctx.token.payload.trust_id:
        raise Forbidden("Cannot manage application credentials with a token issued via delegation.")


def _refuse_restricted_app_cred(ctx: Ctx) -> None:
    app_cred = ctx.token.app_cred
    if app_cred is not None and app_cred["restricted"]:
        raise Forbidden("Using method 'application_credential' is not allowed for managing "
                        "additional application credentials.")


# -- application credentials ---------------------------------------------------------------
def access_rule_json(rule: AccessRule) -> dict[str, Any]:
    return {"id": rule.id, "service": rule.service, "path": rule.path, "method": rule.method}


def app_cred_json(ctx: Ctx, cred: AppCredential) -> dict[str, Any]:
    store = identity(ctx).store
    roles = store.roles_by_id(cred.roles)
    body: dict[str, Any] = {
        "id": cred.id,
        "name": cred.name,
        "description": cred.description,
        "expires_at": cred.expires_at.strftime(APP_CRED_TIME) if cred.expires_at else None,
        "project_id": cred.project_id,
        "unrestricted": cred.unrestricted,
        "roles": [
            {"id": r.id, "name": r.name, "domain_id": r.domain_id or None}
            for r in (roles.get(i) for i in cred.roles) if r is not None
        ],
        "links": self_link(ctx, f"users/{cred.user_id}/application_credentials/{cred.id}"),
    }
    rules = [store.get(AccessRule, i) for i in cred.access_rules]
    if any(rules):  # Keystone shows the key only when there are rules
        body["access_rules"] = [access_rule_json(r) for r in rules if r is not None]
    return body


def _app_cred_roles(ctx: Ctx, svc: IdentityService, refs: list[RoleRef] | None) -> list[str]:
    """The requested roles plus what they imply, all of which the token must carry;
    by default every role of the token."""
    token_roles = [r["id"] for r in ctx.token.roles]
    if not refs:
        return token_roles
    wanted = {r.id for r in resolve_roles(svc, refs)}
    wanted = set(Assignments(svc).implied_closure(wanted))
    if not wanted <= set(token_roles):
        raise BadRequest("Invalid application credential: Cannot create an application "
                         "credential with unassigned role")
    return [r for r in token_roles if r in wanted]


def _access_rules(svc: IdentityService, user_id: str, refs: list[AccessRuleRef]) -> list[str]:
    """Ids of the access rules named: an existing rule of the user by id or by identical
    content, else a new one."""
    out: list[str] = []
    for ref in refs:
        rule = svc.store.get(AccessRule, ref.id) if ref.id else None
        if rule is not None and rule.user_id != user_id:
            rule = None
        if rule is None:
            if ref.service is None or ref.path is None or ref.method is None:
                if ref.id:
                    raise not_found("access rule", ref.id)
                raise BadRequest("Invalid input for field 'access_rules': each rule needs "
                                 "'service', 'path' and 'method'")
            same = svc.store.list(AccessRule, user_id=user_id, service=ref.service,
                                  path=ref.path, method=ref.method)
            rule = same[0] if same else None
        if rule is None:
            taken = ref.id is not None and svc.store.get(AccessRule, ref.id) is not None
            rule = AccessRule(id=new_id() if taken or not ref.id else ref.id, user_id=user_id,
                              service=ref.service, path=ref.path, method=ref.method)
            svc.store.add(rule)
        if rule.id not in out:
            out.append(rule.id)
    return out


def create_app_cred(ctx: Ctx) -> Reply:
    user_id = ctx.params["user_id"]
    ctx.authorize(_user_target(user_id))
    _refuse_trust_token(ctx)
    _refuse_restricted_app_cred(ctx)
    token = ctx.token
    if token.user_id != user_id:
        raise Forbidden("Cannot create an application credential for another user.")
    if token.project_id is None:
        raise Forbidden("An application credential is created with a project-scoped token; "
                        "it is bound to that project.")
    req = ctx.parse(AppCredCreate, "application_credential")
    svc = identity(ctx)
    expires_at = parse_expiry(req.expires_at, "expires_at")
    roles = _app_cred_roles(ctx, svc, req.roles)
    if svc.store.list(AppCredential, user_id=user_id, name=req.name):
        raise duplicate("application_credential", f"name {req.name}")
    secret = req.secret or secrets.token_urlsafe(64)
    cred = AppCredential(
        id=new_id(),
        name=req.name,
        user_id=user_id,
        project_id=token.project_id,
        secret_hash=hash_password(secret, svc.settings.password_hash_rounds),
        description=req.description,
        expires_at=expires_at,
        unrestricted=bool(req.unrestricted),
        roles=roles,
        access_rules=_access_rules(svc, user_id, req.access_rules or []),
    )
    svc.store.add(cred)
    body = app_cred_json(ctx, cred)
    body["secret"] = secret  # shown this once; only its hash is kept
    return Reply({"application_credential": body}, status=201)


def list_app_creds(ctx: Ctx) -> dict[str, Any]:
    user_id = ctx.params["user_id"]
    ctx.authorize(_user_target(user_id))
    _refuse_trust_token(ctx)
    rows = identity(ctx).store.list(AppCredential, order=AppCredential.name, user_id=user_id,
                                    name=ctx.q("name"))
    return collection(ctx, "application_credentials", [app_cred_json(ctx, c) for c in rows])


def _app_cred(ctx: Ctx) -> AppCredential:
    user_id, ident = ctx.params["user_id"], ctx.params["app_cred_id"]
    ctx.authorize(_user_target(user_id))
    _refuse_trust_token(ctx)
    cred = identity(ctx).store.get(AppCredential, ident)
    if cred is None or cred.user_id != user_id:
        raise not_found("application credential", ident)
    return cred


def get_app_cred(ctx: Ctx) -> dict[str, Any]:
    return {"application_credential": app_cred_json(ctx, _app_cred(ctx))}


def delete_app_cred(ctx: Ctx) -> Reply:
    cred = _app_cred(ctx)
    _refuse_restricted_app_cred(ctx)
    identity(ctx).store.remove(cred)  # its tokens fail validation from now on
    return NO_CONTENT


# -- access rules ---------------------------------------------------------------------------
def _rule_json(ctx: Ctx, rule: AccessRule) -> dict[str, Any]:
    return {**access_rule_json(rule),
            "links": self_link(ctx, f"users/{rule.user_id}/access_rules/{rule.id}")}


def list_access_rules(ctx: Ctx) -> dict[str, Any]:
    user_id = ctx.params["user_id"]
    ctx.authorize(_user_target(user_id))
    _refuse_trust_token(ctx)
    rows = identity(ctx).store.list(AccessRule, user_id=user_id, service=ctx.q("service"),
                                    path=ctx.q("path"), method=ctx.q("method"))
    return collection(ctx, "access_rules", [_rule_json(ctx, r) for r in rows])


def _access_rule(ctx: Ctx) -> AccessRule:
    user_id, ident = ctx.params["user_id"], ctx.params["access_rule_id"]
    ctx.authorize(_user_target(user_id))
    _refuse_trust_token(ctx)
    rule = identity(ctx).store.get(AccessRule, ident)
    if rule is None or rule.user_id != user_id:
        raise not_found("access rule", ident)
    return rule


def get_access_rule(ctx: Ctx) -> dict[str, Any]:
    return {"access_rule": _rule_json(ctx, _access_rule(ctx))}


def delete_access_rule(ctx: Ctx) -> Reply:
    rule = _access_rule(ctx)
    store = identity(ctx).store
    if any(rule.id in c.access_rules for c in store.list(AppCredential, user_id=rule.user_id)):
        raise Forbidden("May not delete access rule in use")
    store.remove(rule)
    return NO_CONTENT


# -- trusts ---------------------------------------------------------------------------------
INTERNAL_TRUST_KEYS = {"deleted"}


def trust_json(ctx: Ctx, t: Trust, with_roles: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        **{k: v for k, v in t.extra.items() if k not in INTERNAL_TRUST_KEYS},
        "id": t.id,
        "trustor_user_id": t.trustor_user_id,
        "trustee_user_id": t.trustee_user_id,
        "project_id": t.project_id,
        "impersonation": t.impersonation,
        "expires_at": isotime(t.expires_at) if t.expires_at else None,
        "remaining_uses": t.remaining_uses,
        "redelegated_trust_id": None,
        "redelegation_count": 0,
        "deleted_at": None,
        "links": self_link(ctx, f"OS-TRUST/trusts/{t.id}"),
    }
    if with_roles:
        body["roles"] = [role_json(ctx, r) for r in _trust_roles(ctx, t)]
        body["roles_links"] = {"self": v3_url(ctx, f"OS-TRUST/trusts/{t.id}/roles"),
                               "previous": None, "next": None}
    return body


def _trust_roles(ctx: Ctx, t: Trust) -> list[Role]:
    roles = identity(ctx).store.roles_by_id(t.roles)
    return [roles[i] for i in t.roles if i in roles]


def _trust_target(t: Trust | TrustCreate) -> dict[str, Any]:
    return {"target": {"trust": {"trustor_user_id": t.trustor_user_id,
                                 "trustee_user_id": t.trustee_user_id}}}


def _refuse_app_cred_token(ctx: Ctx) -> None:
    if ctx.token.app_cred is not None:
        raise Forbidden("Using method 'application_credential' is not allowed for managing "
                        "trusts.")


def create_trust(ctx: Ctx) -> Reply:
    req = ctx.parse(TrustCreate, "trust")
    ctx.authorize(_trust_target(req))
    _refuse_app_cred_token(ctx)
    token = ctx.token
    if token.payload.trust_id or req.allow_redelegation:
        raise Forbidden("Trust redelegation is not supported by this cloud.")
    if token.user_id != req.trustor_user_id:
        raise Forbidden("The authenticated user should match the trustor.")
    if req.project_id and not req.roles:
        raise Forbidden("At least one role should be specified.")
    svc = identity(ctx)
    svc.user(req.trustee_user_id)
    roles = resolve_roles(svc, req.roles)
    held: set[str] = set()
    if req.project_id:
        project = svc.project(req.project_id)
        held = Assignments(svc).effective_role_ids(req.trustor_user_id, project=project)
    for role in roles:  # Keystone answers a role the trustor lacks with 404, as unknown
        if role.id not in held:
            raise not_found("role", role.id)
    trust = Trust(
        id=new_id(),
        trustor_user_id=req.trustor_user_id,
        trustee_user_id=req.trustee_user_id,
        project_id=req.project_id,
        impersonation=req.impersonation,
        expires_at=parse_expiry(req.expires_at, "expires_at"),
        remaining_uses=req.remaining_uses,
        roles=[r.id for r in roles],
        extra={k: v for k, v in (req.model_extra or {}).items() if k not in INTERNAL_TRUST_KEYS},
    )
    svc.store.add(trust)
    return Reply({"trust": trust_json(ctx, trust)}, status=201)


def list_trusts(ctx: Ctx) -> dict[str, Any]:
    trustor, trustee = ctx.q("trustor_user_id"), ctx.q("trustee_user_id")
    if trustor is not None:
        ctx.authorize({"target": {"trust": {"trustor_user_id": trustor}}},
                      rule="identity:list_trusts_for_trustor")
        trustee = None
    elif trustee is not None:
        ctx.authorize({"target": {"trust": {"trustee_user_id": trustee}}},
                      rule="identity:list_trusts_for_trustee")
    else:
        ctx.authorize()
    _refuse_app_cred_token(ctx)
    rows = identity(ctx).store.list(Trust, trustor_user_id=trustor, trustee_user_id=trustee)
    return collection(ctx, "trusts", [trust_json(ctx, t, with_roles=False) for t in rows])


def _trust(ctx: Ctx) -> Trust:
    """The trust in the path, authorized; expired, used-up or deleted trusts are not found."""
    ident = ctx.params["trust_id"]
    trust = identity(ctx).store.get(Trust, ident)
    if (trust is None or trust.extra.get("deleted")
            or (trust.expires_at is not None and trust.expires_at <= utcnow())
            or (trust.remaining_uses is not None and trust.remaining_uses <= 0)):
        raise not_found("trust", ident)
    ctx.authorize(_trust_target(trust))
    _refuse_app_cred_token(ctx)
    return trust


def get_trust(ctx: Ctx) -> dict[str, Any]:
    return {"trust": trust_json(ctx, _trust(ctx))}


def delete_trust(ctx: Ctx) -> Reply:
    trust = _trust(ctx)
    svc = identity(ctx)
    svc.store.remove(trust)  # authn finds no trust: its tokens fail validation from now on
    svc.revoke(trust_id=trust.id)
    return NO_CONTENT


def list_trust_roles(ctx: Ctx) -> dict[str, Any]:
    trust = _trust(ctx)
    return collection(ctx, "roles", [role_json(ctx, r) for r in _trust_roles(ctx, trust)])


def get_trust_role(ctx: Ctx) -> dict[str, Any]:
    trust = _trust(ctx)
    role_id = ctx.params["role_id"]
    if role_id not in trust.roles:
        raise not_found("role", role_id)
    return {"role": role_json(ctx, identity(ctx).role(role_id))}


_APP_CREDS = "/v3/users/{user_id}/application_credentials"
_ACCESS_RULES = "/v3/users/{user_id}/access_rules"
_TRUSTS = "/v3/OS-TRUST/trusts"

ROUTES = [
    Route("GET", _APP_CREDS, list_app_creds, "identity:list_application_credentials"),
    Route("POST", _APP_CREDS, create_app_cred, "identity:create_application_credential"),
    Route("GET", _APP_CREDS + "/{app_cred_id}", get_app_cred,
          "identity:get_application_credential"),
    Route("DELETE", _APP_CREDS + "/{app_cred_id}", delete_app_cred,
          "identity:delete_application_credential"),
    Route("GET", _ACCESS_RULES, list_access_rules, "identity:list_access_rules"),
    Route("GET", _ACCESS_RULES + "/{access_rule_id}", get_access_rule, "identity:get_access_rule"),
    Route("DELETE", _ACCESS_RULES + "/{access_rule_id}", delete_access_rule,
          "identity:delete_access_rule"),
    Route("GET", _TRUSTS, list_trusts, "identity:list_trusts"),
    Route("GET", _TRUSTS + "/", list_trusts, "identity:list_trusts"),  # Tempest's spelling
    Route("POST", _TRUSTS, create_trust, "identity:create_trust"),
    Route("GET", _TRUSTS + "/{trust_id}", get_trust, "identity:get_trust"),
    Route("DELETE", _TRUSTS + "/{trust_id}", delete_trust, "identity:delete_trust"),
    Route("GET", _TRUSTS + "/{trust_id}/roles", list_trust_roles, "identity:list_roles_for_trust"),
    Route("GET", _TRUSTS + "/{trust_id}/roles/{role_id}", get_trust_role,
          "identity:get_role_for_trust"),
]
