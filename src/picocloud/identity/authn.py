"""Authentication: issue tokens from credentials, validate them, honour revocation events.

Validation is on every API request, so it is cached: a validated token's context is reused
while the identity generation (bumped by any identity write, here or on another controller)
is unchanged and the token has not expired.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from picocloud.errors import BadRequest, Forbidden, NotFound, Unauthorized
from picocloud.identity import catalog as catalog_mod
from picocloud.identity.assignments import Assignments
from picocloud.identity.models import AppCredential, Domain, Project, Trust, User
from picocloud.identity.passwords import check_password
from picocloud.identity.service import IdentityService, utcnow
from picocloud.identity.store import IdentityStore
from picocloud.identity.tokens import (
    AuthContext,
    KeyRepository,
    TokenPayload,
    new_audit_id,
)

if TYPE_CHECKING:
    from picocloud.cloud import Cloud

AUTH_FAILED = "The request you have made requires authentication."
CACHE_SIZE = 20000


@dataclass
class _Revocations:
    generation: int
    by_audit: set[str]
    events: list[tuple[float, dict[str, str]]]  # (issued_before, non-null fields)


class Authenticator:
    """Issues and validates tokens for one cloud."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.keys = KeyRepository(cloud.settings.data_dir / "fernet-keys")
        self.keys.setup()
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[int, AuthContext]] = OrderedDict()
        self._revocations: _Revocations | None = None
        self._catalog: tuple[int, list[dict[str, Any]]] | None = None

    # -- validation ------------------------------------------------------------------------
    def validate(self, db: Session, token: str, subject: bool = False) -> AuthContext:
        """The context of a valid token; 401 (or 404 for a subject token) otherwise."""
        generation = self.cloud.current_generation(db)
        hit = self._cache.get(token)
        if hit is not None and hit[0] == generation:
            if hit[1].payload.expires_at > time.time():
                return hit[1]
        payload = TokenPayload.decode(self.keys.fernet(), token)
        try:
            if payload is None:
                raise Unauthorized("The token is malformed or was not issued by this cloud.")
            if payload.expires_at <= time.time():
                raise Unauthorized("The token has expired.")
            if self.is_revoked(db, payload, generation):
                raise Unauthorized("The token has been revoked.")
            ctx = self.build_context(db, payload)
        except Unauthorized as exc:
            if subject:
                raise NotFound(f"Could not find token: {exc.message}") from None
            raise
        with self._lock:
            self._cache[token] = (generation, ctx)
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return ctx

    def is_revoked(self, db: Session, p: TokenPayload, generation: int) -> bool:
        rev = self._revocations
        if rev is None or rev.generation != generation:
            horizon = utcnow() - timedelta(seconds=self.cloud.settings.token_expiration + 60)
            by_audit: set[str] = set()
            events: list[tuple[float, dict[str, str]]] = []
            for ev in IdentityStore(db).revocation_events(horizon):
                fields = {
                    k: v
                    for k in ("user_id", "project_id", "domain_id", "audit_id",
                              "audit_chain_id", "trust_id")
                    if (v := getattr(ev, k)) is not None
                }
                before = ev.issued_before.replace(tzinfo=UTC).timestamp()
                if set(fields) == {"audit_id"}:
                    by_audit.add(fields["audit_id"])
                else:
                    events.append((before, fields))
            rev = self._revocations = _Revocations(generation, by_audit, events)
        if p.audit_ids[0] in rev.by_audit:
            return True
        facts = {
            "user_id": p.user_id,
            "project_id": p.project_id,
            "domain_id": p.domain_id,
            "audit_id": p.audit_ids[0],
            "audit_chain_id": p.audit_ids[-1],
            "trust_id": p.trust_id,
        }
        for before, fields in rev.events:
            if p.issued_at <= before and all(facts.get(k) == v for k, v in fields.items()):
                return True
        return False

    def build_context(self, db: Session, p: TokenPayload) -> AuthContext:
        svc = IdentityService(db, self.cloud.settings)
        store = svc.store
        user = store.get(User, p.user_id)
        if user is None or not user.enabled:
            raise Unauthorized(AUTH_FAILED)
        user_domain = store.get(Domain, user.domain_id)
        if user_domain is None or not user_domain.enabled:
            raise Unauthorized(AUTH_FAILED)
        assignments = Assignments(svc)
        ctx = AuthContext(payload=p, user=_user_ref(user, user_domain))
        role_ids: set[str] = set()
        if p.project_id:
            project = store.get(Project, p.project_id)
            domain = store.get(Domain, project.domain_id) if project else None
            if project is None or domain is None or not project.enabled or not domain.enabled:
                raise Unauthorized(AUTH_FAILED)
            ctx.project = {"id": project.id, "name": project.name,
                           "domain": {"id": domain.id, "name": domain.name}}
            ctx.is_admin_project = True
            role_ids = assignments.effective_role_ids(user.id, project=project)
        elif p.domain_id:
            domain = store.get(Domain, p.domain_id)
            if domain is None or not domain.enabled:
                raise Unauthorized(AUTH_FAILED)
            ctx.domain = {"id": domain.id, "name": domain.name}
            role_ids = assignments.effective_role_ids(user.id, domain_id=domain.id)
        elif p.system:
            role_ids = assignments.effective_role_ids(user.id, system=True)
        if p.app_cred_id:
            cred = store.get(AppCredential, p.app_cred_id)
            if cred is None or cred.user_id != user.id or _expired(cred.expires_at):
                raise Unauthorized(AUTH_FAILED)
            granted = set(assignments.implied_closure(set(cred.roles)))
            role_ids &= granted
            ctx.app_cred = {"id": cred.id, "name": cred.name, "restricted": not cred.unrestricted}
        if p.trust_id:
            trust = store.get(Trust, p.trust_id)
            if trust is None or _expired(trust.expires_at) or trust.extra.get("deleted"):
                raise Unauthorized(AUTH_FAILED)
            trustor_roles = role_ids
            if trust.impersonation or user.id == trust.trustee_user_id:
                trustor = store.get(User, trust.trustor_user_id)
                project = store.get(Project, trust.project_id) if trust.project_id else None
                if trustor is None or not trustor.enabled:
                    raise Unauthorized(AUTH_FAILED)
                trustor_roles = assignments.effective_role_ids(trustor.id, project=project)
            role_ids = set(assignments.implied_closure(set(trust.roles))) & trustor_roles
            ctx.trust = {
                "id": trust.id,
                "impersonation": trust.impersonation,
                "trustee_user": {"id": trust.trustee_user_id},
                "trustor_user": {"id": trust.trustor_user_id},
            }
        if ctx.scope != "unscoped" and not role_ids:
            raise Unauthorized(AUTH_FAILED)
        roles = store.roles_by_id(role_ids)
        ctx.roles = sorted(
            ({"id": r.id, "name": r.name} for r in roles.values()), key=lambda r: r["name"]
        )
        return ctx

    def catalog(self, db: Session) -> list[dict[str, Any]]:
        generation = self.cloud.current_generation(db)
        cached = self._catalog
        if cached is None or cached[0] != generation:
            cached = self._catalog = (generation, catalog_mod.build_catalog(db))
        return cached[1]

    # -- issue -----------------------------------------------------------------------------
    def issue(self, db: Session, auth: Any) -> tuple[str, AuthContext]:
        """Authenticate the `auth` document of `POST /v3/auth/tokens`; returns token + context."""
        if not isinstance(auth, dict):
            raise BadRequest("Invalid input for field 'auth': expected an object")
        identity = auth.get("identity")
        if not isinstance(identity, dict):
            raise BadRequest("Invalid input for field 'identity': 'identity' is required")
        methods = identity.get("methods")
        if not isinstance(methods, list) or not methods or not all(
            isinstance(m, str) for m in methods
        ):
            raise BadRequest("Invalid input for field 'identity/methods': expected a list of names")
        for method in methods:
            if method not in ("password", "token", "application_credential"):
                raise Unauthorized(f"Unsupported authentication method {method}.")
            if not isinstance(identity.get(method), dict):
                raise BadRequest(f"Invalid input for field 'identity/{method}': missing")
        scope = auth.get("scope")
        svc = IdentityService(db, self.cloud.settings)
        now = time.time()
        expires = now + self.cloud.settings.token_expiration
        audit_ids = [new_audit_id()]
        app_cred: AppCredential | None = None
        user: User
        if "token" in methods:
            old_token = identity["token"].get("id")
            if not isinstance(old_token, str):
                raise BadRequest("Invalid input for field 'identity/token/id'")
            old = self.validate(db, old_token)
            if old.payload.app_cred_id or old.payload.trust_id:
                raise Forbidden("Rescoping application credential or trust tokens is not allowed.")
            user = svc.user(old.user_id)
            expires = old.payload.expires_at
            audit_ids.append(old.payload.audit_ids[-1])
            methods = list(dict.fromkeys(["token", *old.payload.methods]))
        elif "application_credential" in methods:
            app_cred, user = self._app_credential(svc, identity["application_credential"])
            if scope:
                raise Unauthorized("Application credentials cannot request a scope.")
            if app_cred.expires_at is not None:
                expires = min(expires, app_cred.expires_at.replace(tzinfo=UTC).timestamp())
        else:
            user = self._password_user(svc, identity["password"])
        payload_kwargs: dict[str, Any] = {}
        if app_cred is not None:
            payload_kwargs["project_id"] = app_cred.project_id
            payload_kwargs["app_cred_id"] = app_cred.id
        elif scope == "unscoped":
            pass
        elif scope is not None:
            payload_kwargs = self._scope(svc, scope, user)
        elif user.default_project_id:
            project = svc.store.get(Project, user.default_project_id)
            if project is not None and project.enabled and Assignments(svc).effective_role_ids(
                user.id, project=project
            ):
                payload_kwargs["project_id"] = project.id
        if "trust_id" in payload_kwargs:
            trust = svc.store.get(Trust, payload_kwargs["trust_id"])
            assert trust is not None
            if trust.expires_at is not None:
                expires = min(expires, trust.expires_at.replace(tzinfo=UTC).timestamp())
        payload = TokenPayload(
            user_id=user.id,
            methods=tuple(methods),
            expires_at=expires,
            issued_at=now,
            audit_ids=tuple(audit_ids),
            **payload_kwargs,
        )
        try:
            ctx = self.build_context(db, payload)
        except Unauthorized:
            raise Unauthorized(_no_access(payload)) from None
        return payload.encode(self.keys.fernet()), ctx

    def _password_user(self, svc: IdentityService, doc: dict[str, Any]) -> User:
        ref = doc.get("user")
        if not isinstance(ref, dict) or not isinstance(ref.get("password"), str):
            raise BadRequest("Invalid input for field 'identity/password/user': "
                             "a user with a password is required")
        user = self._find_user(svc, ref)
        if user is None or not check_password(ref["password"], user.password_hash):
            raise Unauthorized(AUTH_FAILED)
        domain = svc.store.get(Domain, user.domain_id)
        if not user.enabled or domain is None or not domain.enabled:
            raise Unauthorized(AUTH_FAILED)
        return user

    def _find_user(self, svc: IdentityService, ref: dict[str, Any]) -> User | None:
        if isinstance(ref.get("id"), str):
            return svc.store.get(User, ref["id"])
        name = ref.get("name")
        domain_ref = ref.get("domain")
        if not isinstance(name, str) or not isinstance(domain_ref, dict):
            raise BadRequest("Invalid input for field 'user': give an id, or a name and a domain")
        domain = self._find_domain(svc, domain_ref)
        return None if domain is None else svc.store.find_by_name(User, name, domain.id)

    def _find_domain(self, svc: IdentityService, ref: dict[str, Any]) -> Domain | None:
        if isinstance(ref.get("id"), str):
            return svc.store.get(Domain, ref["id"])
        if isinstance(ref.get("name"), str):
            return svc.store.find_by_name(Domain, ref["name"], None)
        raise BadRequest("Invalid input for field 'domain': give an id or a name")

    def _app_credential(
        self, svc: IdentityService, doc: dict[str, Any]
    ) -> tuple[AppCredential, User]:
        secret = doc.get("secret")
        if not isinstance(secret, str):
            raise BadRequest("Invalid input for field 'application_credential/secret'")
        cred: AppCredential | None = None
        if isinstance(doc.get("id"), str):
            cred = svc.store.get(AppCredential, doc["id"])
        elif isinstance(doc.get("name"), str) and isinstance(doc.get("user"), dict):
            owner = self._find_user(svc, doc["user"])
            if owner is not None:
                creds = svc.store.list(AppCredential, user_id=owner.id, name=doc["name"])
                cred = creds[0] if creds else None
        else:
            raise BadRequest("Invalid input for field 'application_credential': give an id, "
                             "or a name and a user")
        if cred is None or not check_password(secret, cred.secret_hash) or _expired(
            cred.expires_at
        ):
            raise Unauthorized(AUTH_FAILED)
        user = svc.store.get(User, cred.user_id)
        if user is None or not user.enabled:
            raise Unauthorized(AUTH_FAILED)
        return cred, user

    def _scope(self, svc: IdentityService, scope: Any, user: User) -> dict[str, Any]:
        if not isinstance(scope, dict) or len(scope) != 1:
            raise BadRequest("Invalid input for field 'scope': give exactly one of project, "
                             "domain, system or OS-TRUST:trust")
        if "project" in scope:
            ref = scope["project"]
            if not isinstance(ref, dict):
                raise BadRequest("Invalid input for field 'scope/project'")
            project: Project | None
            if isinstance(ref.get("id"), str):
                project = svc.store.get(Project, ref["id"])
            elif isinstance(ref.get("name"), str) and isinstance(ref.get("domain"), dict):
                domain = self._find_domain(svc, ref["domain"])
                project = None if domain is None else svc.store.find_by_name(
                    Project, ref["name"], domain.id
                )
            else:
                raise BadRequest("Invalid input for field 'scope/project': give an id, "
                                 "or a name and a domain")
            if project is None:
                raise Unauthorized(f"Could not find project: {ref.get('id') or ref.get('name')}.")
            return {"project_id": project.id}
        if "domain" in scope:
            if not isinstance(scope["domain"], dict):
                raise BadRequest("Invalid input for field 'scope/domain'")
            domain = self._find_domain(svc, scope["domain"])
            if domain is None:
                raise Unauthorized("Could not find the requested domain.")
            return {"domain_id": domain.id}
        if "system" in scope:
            if scope["system"] != {"all": True}:
                raise BadRequest("Invalid input for field 'scope/system': expected {\"all\": true}")
            return {"system": True}
        if "OS-TRUST:trust" in scope:
            ref = scope["OS-TRUST:trust"]
            trust = svc.store.get(Trust, ref.get("id", "")) if isinstance(ref, dict) else None
            if trust is None or trust.extra.get("deleted") or _expired(trust.expires_at):
                raise NotFound("Could not find trust.")
            if trust.trustee_user_id != user.id:
                raise Forbidden("The user is not the trustee of this trust.")
            if trust.remaining_uses is not None:
                if trust.remaining_uses <= 0:
                    raise NotFound("Could not find trust: no uses remain.")
                trust.remaining_uses -= 1
            out: dict[str, Any] = {"trust_id": trust.id, "project_id": trust.project_id}
            return out
        raise BadRequest(f"Invalid input for field 'scope': unknown scope {next(iter(scope))}")

    # -- revocation ------------------------------------------------------------------------
    def revoke(self, db: Session, ctx: AuthContext) -> None:
        IdentityService(db, self.cloud.settings).revoke(audit_id=ctx.payload.audit_ids[0])


def _expired(when: datetime | None) -> bool:
    return when is not None and when.replace(tzinfo=UTC) <= datetime.now(UTC)


def _no_access(p: TokenPayload) -> str:
    if p.project_id:
        return f"User {p.user_id} has no access to project {p.project_id}"
    if p.domain_id:
        return f"User {p.user_id} has no access to domain {p.domain_id}"
    if p.system:
        return f"User {p.user_id} has no access to the system"
    return AUTH_FAILED


def _user_ref(user: User, domain: Domain) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "domain": {"id": domain.id, "name": domain.name},
        "password_expires_at": None,
    }

