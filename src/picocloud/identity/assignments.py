"""Role assignments: grants on projects, domains and the system, inheritance, implied roles."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from picocloud.errors import BadRequest
from picocloud.identity.errors import not_found
from picocloud.identity.models import Assignment, Domain, Project, Role
from picocloud.identity.service import IdentityService

SYSTEM = "system"


@dataclass(frozen=True)
class Grant:
    """One row of `GET /v3/role_assignments`."""

    role_id: str
    actor: str  # "user" | "group"
    actor_id: str
    scope: str  # "project" | "domain" | "system"
    target_id: str
    inherited: bool = False
    via_group: str | None = None  # effective listing: the group that gave it
    prior_role_id: str | None = None  # effective listing: the role that implied it
    source_scope: str | None = None  # effective listing of an inherited grant: where it sits
    source_target: str | None = None


def kind_of(actor: str, scope: str) -> str:
    return ("User" if actor == "user" else "Group") + scope.capitalize()


class Assignments:
    def __init__(self, svc: IdentityService) -> None:
        self.svc = svc
        self.store = svc.store

    # -- grants ----------------------------------------------------------------------------
    def _check_parties(self, actor: str, actor_id: str, scope: str, target_id: str) -> None:
        """404 unless the actor and the target exist."""
        (self.svc.user if actor == "user" else self.svc.group)(actor_id)
        if scope == "project":
            self.svc.project(target_id)
        elif scope == "domain":
            self.svc.domain(target_id)

    def _lookup(
        self,
        actor: str,
        actor_id: str,
        scope: str,
        target_id: str,
        role_id: str,
        inherited: bool,
    ) -> tuple[tuple[str, str, str, str, bool], Assignment | None]:
        self._check_parties(actor, actor_id, scope, target_id)
        role = self.svc.role(role_id)
        if role.domain_id and scope == "project":
            if self.svc.project(target_id).domain_id != role.domain_id:
                raise BadRequest("A domain-specific role can only be granted in its own domain.")
        key = (kind_of(actor, scope), actor_id, target_id, role_id, inherited)
        return key, self.svc.db.get(Assignment, key)

    def grant(
        self,
        actor: str,
        actor_id: str,
        scope: str,
        target_id: str,
        role_id: str,
        inherited: bool = False,
    ) -> None:
        key, found = self._lookup(actor, actor_id, scope, target_id, role_id, inherited)
        if found is None:
            kind, _, _, _, _ = key
            self.store.add(
                Assignment(
                    kind=kind,
                    actor_id=actor_id,
                    target_id=target_id,
                    role_id=role_id,
                    inherited=inherited,
                )
            )

    def find(
        self,
        actor: str,
        actor_id: str,
        scope: str,
        target_id: str,
        role_id: str,
        inherited: bool = False,
    ) -> Assignment:
        _, found = self._lookup(actor, actor_id, scope, target_id, role_id, inherited)
        if found is None:
            raise not_found("role assignment", f"role {role_id} for {actor} {actor_id}")
        return found

    def revoke(
        self,
        actor: str,
        actor_id: str,
        scope: str,
        target_id: str,
        role_id: str,
        inherited: bool = False,
    ) -> None:
        found = self.find(actor, actor_id, scope, target_id, role_id, inherited)
        self.svc._revoke_for_assignment(found)
        self.store.remove(found)

    def roles_on(
        self, actor: str, actor_id: str, scope: str, target_id: str, inherited: bool = False
    ) -> builtins.list[Role]:
        self._check_parties(actor, actor_id, scope, target_id)
        rows = self.store.assignments(
            actor_ids=[actor_id],
            target_ids=[target_id],
            inherited=inherited,
            kinds=[kind_of(actor, scope)],
        )
        roles = self.store.roles_by_id({a.role_id for a in rows})
        return sorted(roles.values(), key=lambda r: r.name)

    # -- effective roles -------------------------------------------------------------------
    def implied_closure(self, role_ids: set[str]) -> dict[str, str | None]:
        """Every role reachable from `role_ids`, mapped to the role that implied it (or None)."""
        graph: dict[str, list[str]] = {}
        for link in self.store.implications():
            graph.setdefault(link.prior_role_id, []).append(link.implied_role_id)
        out: dict[str, str | None] = {r: None for r in role_ids}
        frontier = list(role_ids)
        while frontier:
            prior = frontier.pop()
            for implied in graph.get(prior, ()):
                if implied not in out:
                    out[implied] = prior
                    frontier.append(implied)
        return out

    def effective_role_ids(
        self,
        user_id: str,
        project: Project | None = None,
        domain_id: str | None = None,
        system: bool = False,
    ) -> set[str]:
        """Roles a user holds on a scope: direct, via groups, inherited, and implied."""
        actors = [user_id, *self.store.group_ids_of(user_id)]
        direct: set[str] = set()
        if project is not None:
            ancestors = self.store.ancestors(project)
            inherited_from = [p.id for p in ancestors] + [project.domain_id]
            for a in self.store.assignments(actor_ids=actors, target_ids=[project.id]):
                if a.kind.endswith("Project") and not a.inherited:
                    direct.add(a.role_id)
            for a in self.store.assignments(actor_ids=actors, target_ids=inherited_from):
                if a.inherited:
                    direct.add(a.role_id)
        elif domain_id is not None:
            for a in self.store.assignments(actor_ids=actors, target_ids=[domain_id]):
                if a.kind.endswith("Domain") and not a.inherited:
                    direct.add(a.role_id)
        elif system:
            for a in self.store.assignments(actor_ids=actors, target_ids=[SYSTEM]):
                direct.add(a.role_id)
        return self.without_domain_roles(set(self.implied_closure(direct)))

    def without_domain_roles(self, role_ids: set[str]) -> set[str]:
        """Domain-specific roles never reach a token; only the global roles they imply do."""
        roles = self.store.roles_by_id(role_ids)
        return {r for r in role_ids if r in roles and not roles[r].domain_id}

    def projects_of_user(self, user_id: str) -> builtins.list[Project]:
        """Projects on which the user holds any effective role."""
        actors = [user_id, *self.store.group_ids_of(user_id)]
        rows = self.store.assignments(actor_ids=actors)
        ids: set[str] = set()
        for a in rows:
            if a.kind.endswith("Project"):
                if not a.inherited:
                    ids.add(a.target_id)
                for sub in self.store.subtree(a.target_id) if a.inherited else []:
                    ids.add(sub.id)
            elif a.kind.endswith("Domain") and a.inherited:
                ids.update(p.id for p in self.store.list(Project, domain_id=a.target_id))
        return [p for p in (self.store.get(Project, i) for i in sorted(ids)) if p is not None]

    def domains_of_user(self, user_id: str) -> builtins.list[Domain]:
        actors = [user_id, *self.store.group_ids_of(user_id)]
        ids = {
            a.target_id
            for a in self.store.assignments(actor_ids=actors)
            if a.kind.endswith("Domain") and not a.inherited
        }
        return [d for d in (self.store.get(Domain, i) for i in sorted(ids)) if d is not None]

    # -- listing ---------------------------------------------------------------------------
    def list(self, f: dict[str, Any]) -> builtins.list[Grant]:
        """`GET /v3/role_assignments` with Keystone's filters; `effective` expands groups,
        inheritance and implied roles into what each user really holds."""
        effective = f.get("effective", False)
        rows = self.store.assignments(role_id=None if effective else f.get("role_id"))
        grants = [self._grant(a) for a in rows]
        if effective:
            grants = self._expand(grants)
        return [g for g in grants if self._match(g, f)]

    def _grant(self, a: Assignment) -> Grant:
        actor = "user" if a.kind.startswith("User") else "group"
        scope = a.kind[4:].lower() if actor == "user" else a.kind[5:].lower()
        return Grant(a.role_id, actor, a.actor_id, scope, a.target_id, a.inherited)

    def _expand(self, grants: builtins.list[Grant]) -> builtins.list[Grant]:
        out: builtins.list[Grant] = []
        for g in grants:
            users = (
                [(g.actor_id, None)]
                if g.actor == "user"
                else [(u.id, g.actor_id) for u in self.store.users_in_group(g.actor_id)]
            )
            targets: builtins.list[tuple[str, str]] = [(g.scope, g.target_id)]
            if g.inherited:
                if g.scope == "domain":
                    targets = [
                        ("project", p.id) for p in self.store.list(Project, domain_id=g.target_id)
                    ]
                else:
                    targets = [("project", p.id) for p in self.store.subtree(g.target_id)]
            closure = self.implied_closure({g.role_id})
            effective = self.without_domain_roles(set(closure))
            for user_id, via in users:
                for scope, target in targets:
                    for role_id in closure:
                        if role_id not in effective:
                            continue
                        out.append(
                            Grant(
                                role_id,
                                "user",
                                user_id,
                                scope,
                                target,
                                False,
                                via,
                                g.role_id if role_id != g.role_id else None,
                                g.scope if g.inherited else None,
                                g.target_id if g.inherited else None,
                            )
                        )
        return out

    def _match(self, g: Grant, f: dict[str, Any]) -> bool:
        if f.get("role_id") and g.role_id != f["role_id"]:
            return False
        if f.get("user_id"):
            if g.actor != "user" or g.actor_id != f["user_id"]:
                return False
        if f.get("group_id") and (g.actor != "group" or g.actor_id != f["group_id"]):
            return False
        if f.get("project_ids") is not None and (
            g.scope != "project" or g.target_id not in f["project_ids"]
        ):
            return False
        if f.get("domain_id") and (g.scope != "domain" or g.target_id != f["domain_id"]):
            return False
        if f.get("system") and g.scope != "system":
            return False
        return not (f.get("inherited") and not g.inherited)
