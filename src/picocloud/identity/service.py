"""Identity rules for domains, projects, users, groups and roles (Keystone semantics)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from picocloud.errors import BadRequest, Forbidden
from picocloud.identity import schemas
from picocloud.identity.errors import duplicate, not_found
from picocloud.identity.models import (
    Assignment,
    Document,
    Domain,
    Group,
    ImpliedRole,
    Membership,
    Project,
    RevocationEvent,
    Role,
    User,
)
from picocloud.identity.passwords import hash_password
from picocloud.identity.store import IdentityStore
from picocloud.settings import Settings

DEFAULT_DOMAIN = "default"


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _extra(model: Any, known: set[str]) -> dict[str, Any]:
    return {k: v for k, v in (model.model_extra or {}).items() if k not in known}


class IdentityService:
    """Domain rules of the identity service over one database session."""

    def __init__(self, db: Session, settings: Settings) -> None:
        self.db = db
        self.store = IdentityStore(db)
        self.settings = settings

    # -- lookups ---------------------------------------------------------------------------
    def domain(self, ident: str) -> Domain:
        found = self.store.get(Domain, ident)
        if found is None:
            raise not_found("domain", ident)
        return found

    def domain_by_name(self, name: str) -> Domain:
        found = self.store.find_by_name(Domain, name, None)
        if found is None:
            raise not_found("domain", name)
        return found

    def project(self, ident: str) -> Project:
        found = self.store.get(Project, ident)
        if found is None:
            raise not_found("project", ident)
        return found

    def user(self, ident: str) -> User:
        found = self.store.get(User, ident)
        if found is None:
            raise not_found("user", ident)
        return found

    def group(self, ident: str) -> Group:
        found = self.store.get(Group, ident)
        if found is None:
            raise not_found("group", ident)
        return found

    def role(self, ident: str) -> Role:
        found = self.store.get(Role, ident)
        if found is None:
            raise not_found("role", ident)
        return found

    # -- revocation ------------------------------------------------------------------------
    def revoke(self, **fields: str | None) -> None:
        """Record that tokens matching `fields`, issued until now, are no longer valid."""
        now = utcnow()
        self.store.add(RevocationEvent(issued_before=now, revoked_at=now, **fields))

    # -- domains ---------------------------------------------------------------------------
    def create_domain(self, req: schemas.DomainCreate) -> Domain:
        if self.store.find_by_name(Domain, req.name, None) is not None:
            raise duplicate("domain", f"name {req.name}")
        ident = req.explicit_domain_id or new_id()
        if self.store.get(Domain, ident) is not None:
            raise duplicate("domain", f"ID {ident}")
        extra = _extra(req, set())
        extra["tags"] = req.tags
        extra["options"] = req.options
        domain = Domain(
            id=ident,
            name=req.name,
            description=req.description or "",
            enabled=req.enabled,
            extra=extra,
        )
        self.store.add(domain)
        return domain

    def update_domain(self, domain: Domain, req: schemas.DomainUpdate) -> Domain:
        if req.name is not None and req.name != domain.name:
            if self.store.find_by_name(Domain, req.name, None) is not None:
                raise duplicate("domain", f"name {req.name}")
            domain.name = req.name
        if "description" in req.model_fields_set:
            domain.description = req.description or ""
        if req.enabled is not None:
            if domain.id == DEFAULT_DOMAIN and not req.enabled:
                raise Forbidden("The default domain cannot be disabled.")
            if domain.enabled and not req.enabled:
                self.revoke(domain_id=domain.id)
            domain.enabled = req.enabled
        extra = dict(domain.extra)
        extra.update(_extra(req, set()))
        if req.tags is not None:
            extra["tags"] = req.tags
        if req.options is not None:
            extra["options"] = req.options
        domain.extra = extra
        self.db.flush()
        return domain

    def delete_domain(self, domain: Domain) -> None:
        if domain.enabled:
            raise Forbidden("Cannot delete a domain that is enabled, please disable it first.")
        if domain.id == DEFAULT_DOMAIN:
            raise Forbidden("The default domain cannot be deleted.")
        for user in self.store.list(User, domain_id=domain.id):
            self.delete_user(user)
        for group in self.store.list(Group, domain_id=domain.id):
            self.delete_group(group)
        projects = list(self.store.list(Project, domain_id=domain.id))
        for project in self._leaves_first(projects):
            self._delete_project_row(project)
        for role in self.store.list(Role, domain_id=domain.id):
            self.delete_role(role)
        for doc in self.store.documents("domain_config", domain.id):
            self.store.remove(doc)
        self.store.delete_assignments_of(domain.id)
        self.revoke(domain_id=domain.id)
        self.store.remove(domain)

    # -- projects --------------------------------------------------------------------------
    def create_project(self, req: schemas.ProjectCreate, default_domain: str) -> Project:
        parent: Project | None = None
        if req.parent_id is not None:
            parent = self.store.get(Project, req.parent_id)
            if parent is None:
                if self.store.get(Domain, req.parent_id) is None:
                    raise not_found("project", req.parent_id)
        domain_id = req.domain_id or (parent.domain_id if parent else None)
        if domain_id is None and req.parent_id and parent is None:
            domain_id = req.parent_id  # the parent is the domain itself
        domain_id = domain_id or default_domain
        domain = self.store.get(Domain, domain_id)
        if domain is None:
            raise not_found("domain", domain_id)
        if parent is not None and parent.domain_id != domain_id:
            raise BadRequest("Cannot create project, the parent is in a different domain.")
        if self.store.find_by_name(Project, req.name, domain_id) is not None:
            raise duplicate("project", f"name {req.name} at domain ID {domain_id}")
        project = Project(
            id=new_id(),
            name=req.name,
            domain_id=domain_id,
            parent_id=parent.id if parent else None,
            description=req.description or "",
            enabled=req.enabled,
            tags=list(req.tags),
            extra={**_extra(req, set()), "options": req.options},
        )
        self.store.add(project)
        return project

    def update_project(self, project: Project, req: schemas.ProjectUpdate) -> Project:
        if req.domain_id is not None and req.domain_id != project.domain_id:
            raise BadRequest("Update of `domain_id` is not allowed.")
        if req.is_domain is not None and req.is_domain:
            raise BadRequest("Update of `is_domain` is not allowed.")
        if "parent_id" in req.model_fields_set and req.parent_id != self.parent_id(project):
            raise Forbidden("Update of `parent_id` is not allowed.")
        if req.name is not None and req.name != project.name:
            other = self.store.find_by_name(Project, req.name, project.domain_id)
            if other is not None:
                raise duplicate("project", f"name {req.name} at domain ID {project.domain_id}")
            project.name = req.name
        if "description" in req.model_fields_set:
            project.description = req.description or ""
        if req.enabled is not None:
            if project.enabled and not req.enabled:
                self.revoke(project_id=project.id)
            project.enabled = req.enabled
        if req.tags is not None:
            project.tags = list(req.tags)
        extra = dict(project.extra)
        extra.update(_extra(req, set()))
        if req.options is not None:
            extra["options"] = req.options
        project.extra = extra
        self.db.flush()
        return project

    def parent_id(self, project: Project) -> str:
        """Keystone reports a top-level project's parent as its domain."""
        return project.parent_id or project.domain_id

    def delete_project(self, project: Project, cascade: bool = False) -> None:
        subtree = self.store.subtree(project.id)
        if subtree and not cascade:
            raise Forbidden(
                f"Cannot delete the project {project.id} since it is not a leaf in the "
                "hierarchy. Use the cascade option if you want to delete a whole subtree."
            )
        for child in self._leaves_first(subtree):
            self._delete_project_row(child)
        self._delete_project_row(project)

    def _leaves_first(self, projects: list[Project]) -> list[Project]:
        depth: dict[str, int] = {}
        by_id = {p.id: p for p in projects}

        def level(p: Project) -> int:
            if p.id not in depth:
                parent = by_id.get(p.parent_id or "")
                depth[p.id] = 0 if parent is None else level(parent) + 1
            return depth[p.id]

        return sorted(projects, key=level, reverse=True)

    def _delete_project_row(self, project: Project) -> None:
        self.store.delete_assignments_of(project.id)
        self.revoke(project_id=project.id)
        self.store.remove(project)

    # -- users -----------------------------------------------------------------------------
    def create_user(self, req: schemas.UserCreate, default_domain: str) -> User:
        domain_id = req.domain_id or default_domain
        self.domain(domain_id)
        if self.store.find_by_name(User, req.name, domain_id) is not None:
            raise duplicate("user", f"name {req.name} at domain ID {domain_id}")
        if req.default_project_id is not None:
            self.project(req.default_project_id)
        now = utcnow()
        user = User(
            id=new_id(),
            name=req.name,
            domain_id=domain_id,
            enabled=req.enabled,
            password_hash=(
                hash_password(req.password, self.settings.password_hash_rounds)
                if req.password is not None
                else None
            ),
            password_changed_at=now if req.password is not None else None,
            default_project_id=req.default_project_id,
            description=req.description,
            extra=_extra(req, set()),
            options=req.options,
            created_at=now,
        )
        self.store.add(user)
        return user

    def update_user(self, user: User, req: schemas.UserUpdate) -> User:
        if req.domain_id is not None and req.domain_id != user.domain_id:
            raise BadRequest("Update of `domain_id` is not allowed.")
        if req.name is not None and req.name != user.name:
            if self.store.find_by_name(User, req.name, user.domain_id) is not None:
                raise duplicate("user", f"name {req.name} at domain ID {user.domain_id}")
            user.name = req.name
        if req.enabled is not None:
            if user.enabled and not req.enabled:
                self.revoke(user_id=user.id)
            user.enabled = req.enabled
        if req.password is not None:
            self.set_password(user, req.password)
        if "default_project_id" in req.model_fields_set:
            if req.default_project_id is not None:
                self.project(req.default_project_id)
            user.default_project_id = req.default_project_id
        if "description" in req.model_fields_set:
            user.description = req.description
        if req.options is not None:
            user.options = {**user.options, **req.options}
        if req.model_extra:
            user.extra = {**user.extra, **req.model_extra}
        self.db.flush()
        return user

    def set_password(self, user: User, password: str) -> None:
        user.password_hash = hash_password(password, self.settings.password_hash_rounds)
        user.password_changed_at = utcnow()
        self.revoke(user_id=user.id)

    def delete_user(self, user: User) -> None:
        self.store.delete_assignments_of(user.id)
        for doc in self.store.documents("credential", user.id):
            self.store.remove(doc)
        for trust in self.store.trusts_of(user.id):
            self.store.remove(trust)
        self.revoke(user_id=user.id)
        self.store.remove(user)

    # -- groups ----------------------------------------------------------------------------
    def create_group(self, req: schemas.GroupCreate, default_domain: str) -> Group:
        domain_id = req.domain_id or default_domain
        self.domain(domain_id)
        if self.store.find_by_name(Group, req.name, domain_id) is not None:
            raise duplicate("group", f"name {req.name} at domain ID {domain_id}")
        group = Group(
            id=new_id(),
            name=req.name,
            domain_id=domain_id,
            description=req.description or "",
            extra=_extra(req, set()),
        )
        self.store.add(group)
        return group

    def update_group(self, group: Group, req: schemas.GroupUpdate) -> Group:
        if req.domain_id is not None and req.domain_id != group.domain_id:
            raise BadRequest("Update of `domain_id` is not allowed.")
        if req.name is not None and req.name != group.name:
            if self.store.find_by_name(Group, req.name, group.domain_id) is not None:
                raise duplicate("group", f"name {req.name} at domain ID {group.domain_id}")
            group.name = req.name
        if "description" in req.model_fields_set:
            group.description = req.description or ""
        if req.model_extra:
            group.extra = {**group.extra, **req.model_extra}
        self.db.flush()
        return group

    def delete_group(self, group: Group) -> None:
        for user in self.store.users_in_group(group.id):
            self.revoke(user_id=user.id)
        self.store.delete_assignments_of(group.id)
        self.store.remove(group)

    def add_member(self, group: Group, user: User) -> None:
        if self.store.membership(user.id, group.id) is None:
            self.store.add(Membership(user_id=user.id, group_id=group.id))

    def remove_member(self, group: Group, user: User) -> None:
        member = self.store.membership(user.id, group.id)
        if member is None:
            raise not_found("membership", f"user {user.id} in group {group.id}")
        self.store.remove(member)
        self.revoke(user_id=user.id)

    # -- roles -----------------------------------------------------------------------------
    def create_role(self, req: schemas.RoleCreate) -> Role:
        domain_id = req.domain_id or ""
        if domain_id:
            self.domain(domain_id)
        if self.store.find_by_name(Role, req.name, domain_id) is not None:
            raise duplicate("role", f"name {req.name}")
        role = Role(
            id=new_id(),
            name=req.name,
            domain_id=domain_id,
            description=req.description,
            options=req.options,
        )
        self.store.add(role)
        return role

    def update_role(self, role: Role, req: schemas.RoleUpdate) -> Role:
        if req.domain_id is not None and req.domain_id != (role.domain_id or None):
            raise BadRequest("Update of `domain_id` is not allowed.")
        if req.name is not None and req.name != role.name:
            if self.store.find_by_name(Role, req.name, role.domain_id) is not None:
                raise duplicate("role", f"name {req.name}")
            role.name = req.name
        if "description" in req.model_fields_set:
            role.description = req.description
        if req.options is not None:
            role.options = req.options
        self.db.flush()
        return role

    def delete_role(self, role: Role) -> None:
        for a in self.store.assignments(role_id=role.id):
            self._revoke_for_assignment(a)
        self.store.delete_assignments_of(role.id)
        for link in self.store.implications():
            if role.id in (link.prior_role_id, link.implied_role_id):
                self.store.remove(link)
        self.store.remove(role)

    def add_implied_role(self, prior: Role, implied: Role) -> ImpliedRole:
        if prior.id == implied.id:
            raise BadRequest("A role cannot imply itself.")
        if implied.domain_id and not prior.domain_id:
            raise Forbidden("A global role cannot imply a domain-specific role.")
        # Refuse a cycle: implied must not (transitively) imply prior.
        graph: dict[str, set[str]] = {}
        for link in self.store.implications():
            graph.setdefault(link.prior_role_id, set()).add(link.implied_role_id)
        frontier, seen = [implied.id], set()
        while frontier:
            node = frontier.pop()
            if node == prior.id:
                raise BadRequest("Implying this role would create a loop of implied roles.")
            if node not in seen:
                seen.add(node)
                frontier.extend(graph.get(node, ()))
        found = self.db.get(ImpliedRole, (prior.id, implied.id))
        if found is None:
            found = ImpliedRole(prior_role_id=prior.id, implied_role_id=implied.id)
            self.store.add(found)
        return found

    def implied_role(self, prior: Role, implied: Role) -> ImpliedRole:
        found = self.db.get(ImpliedRole, (prior.id, implied.id))
        if found is None:
            raise not_found("implied role", f"{prior.id} implies {implied.id}")
        return found

    def _revoke_for_assignment(self, a: Assignment) -> None:
        users = [a.actor_id]
        if a.kind.startswith("Group"):
            users = [u.id for u in self.store.users_in_group(a.actor_id)]
        for user_id in users:
            if a.kind.endswith("Project") and not a.inherited:
                self.revoke(user_id=user_id, project_id=a.target_id)
            else:
                self.revoke(user_id=user_id)

    # -- documents (credentials, policies, endpoint groups, ...) ----------------------------
    def create_document(
        self,
        kind: str,
        body: dict[str, Any],
        owner_id: str | None = None,
        ident: str | None = None,
    ) -> Document:
        ident = ident or new_id()
        if self.store.document(kind, ident) is not None:
            raise duplicate(kind, f"ID {ident}")
        doc = Document(kind=kind, id=ident, owner_id=owner_id, body=body, created_at=utcnow())
        self.store.add(doc)
        return doc

    def document(self, kind: str, ident: str) -> Document:
        doc = self.store.document(kind, ident)
        if doc is None:
            raise not_found(kind.replace("_", " "), ident)
        return doc
