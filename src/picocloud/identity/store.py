"""Identity queries: the only place that speaks SQL for the identity service."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from picocloud.db import Base
from picocloud.identity.models import (
    Assignment,
    Document,
    Generation,
    Group,
    ImpliedRole,
    Membership,
    Project,
    RevocationEvent,
    Role,
    Trust,
    User,
)

M = TypeVar("M", bound=Base)


class IdentityStore:
    def __init__(self, db: Session) -> None:
        self.db = db

    def get(self, model: type[M], ident: str) -> M | None:
        return self.db.get(model, ident)

    def add(self, obj: Base) -> None:
        self.db.add(obj)
        self.db.flush()

    def remove(self, obj: Base) -> None:
        self.db.delete(obj)
        self.db.flush()

    def list(self, model: type[M], order: Any = None, **equals: Any) -> Sequence[M]:
        stmt = select(model)
        for name, value in equals.items():
            if value is not None:
                stmt = stmt.where(getattr(model, name) == value)
        stmt = stmt.order_by(order if order is not None else model.id)  # type: ignore[attr-defined]
        return self.db.scalars(stmt).all()

    def find_by_name(self, model: type[M], name: str, domain_id: str | None) -> M | None:
        stmt = select(model).where(model.name == name)  # type: ignore[attr-defined]
        if domain_id is not None:
            stmt = stmt.where(model.domain_id == domain_id)  # type: ignore[attr-defined]
        return self.db.scalars(stmt).first()

    # -- projects ---------------------------------------------------------------------------
    def children(self, project_id: str) -> Sequence[Project]:
        return self.db.scalars(select(Project).where(Project.parent_id == project_id)).all()

    def subtree(self, project_id: str) -> builtins.list[Project]:
        out: builtins.list[Project] = []
        frontier = [project_id]
        while frontier:
            rows = self.db.scalars(select(Project).where(Project.parent_id.in_(frontier))).all()
            out.extend(rows)
            frontier = [p.id for p in rows]
        return out

    def ancestors(self, project: Project) -> builtins.list[Project]:
        out: builtins.list[Project] = []
        seen = {project.id}
        parent_id = project.parent_id
        while parent_id and parent_id not in seen:
            parent = self.db.get(Project, parent_id)
            if parent is None:
                break
            out.append(parent)
            seen.add(parent.id)
            parent_id = parent.parent_id
        return out

    # -- groups -----------------------------------------------------------------------------
    def group_ids_of(self, user_id: str) -> builtins.list[str]:
        stmt = select(Membership.group_id).where(Membership.user_id == user_id)
        return list(self.db.scalars(stmt).all())

    def users_in_group(self, group_id: str) -> Sequence[User]:
        stmt = (
            select(User)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.group_id == group_id)
            .order_by(User.name)
        )
        return self.db.scalars(stmt).all()

    def groups_of_user(self, user_id: str) -> Sequence[Group]:
        stmt = (
            select(Group)
            .join(Membership, Membership.group_id == Group.id)
            .where(Membership.user_id == user_id)
            .order_by(Group.name)
        )
        return self.db.scalars(stmt).all()

    def membership(self, user_id: str, group_id: str) -> Membership | None:
        return self.db.get(Membership, (user_id, group_id))

    # -- roles and assignments --------------------------------------------------------------
    def roles_by_id(self, ids: Iterable[str] | None = None) -> dict[str, Role]:
        stmt = select(Role)
        if ids is not None:
            stmt = stmt.where(Role.id.in_(list(ids)))
        return {r.id: r for r in self.db.scalars(stmt).all()}

    def implications(self) -> Sequence[ImpliedRole]:
        return self.db.scalars(select(ImpliedRole)).all()

    def assignments(
        self,
        actor_ids: Iterable[str] | None = None,
        target_ids: Iterable[str] | None = None,
        role_id: str | None = None,
        inherited: bool | None = None,
        kinds: Iterable[str] | None = None,
    ) -> Sequence[Assignment]:
        stmt = select(Assignment)
        if actor_ids is not None:
            stmt = stmt.where(Assignment.actor_id.in_(list(actor_ids)))
        if target_ids is not None:
            stmt = stmt.where(Assignment.target_id.in_(list(target_ids)))
        if role_id is not None:
            stmt = stmt.where(Assignment.role_id == role_id)
        if inherited is not None:
            stmt = stmt.where(Assignment.inherited == inherited)
        if kinds is not None:
            stmt = stmt.where(Assignment.kind.in_(list(kinds)))
        stmt = stmt.order_by(Assignment.kind, Assignment.actor_id, Assignment.target_id)
        return self.db.scalars(stmt).all()

    def delete_assignments_of(self, ident: str) -> None:
        """Every assignment naming `ident` as actor, target or role."""
        self.db.execute(
            delete(Assignment).where(
                or_(
                    Assignment.actor_id == ident,
                    Assignment.target_id == ident,
                    Assignment.role_id == ident,
                )
            )
        )

    # -- documents --------------------------------------------------------------------------
    def documents(self, kind: str, owner_id: str | None = None) -> Sequence[Document]:
        stmt = select(Document).where(Document.kind == kind)
        if owner_id is not None:
            stmt = stmt.where(Document.owner_id == owner_id)
        return self.db.scalars(stmt.order_by(Document.created_at, Document.id)).all()

    def document(self, kind: str, ident: str) -> Document | None:
        return self.db.get(Document, (kind, ident))

    def trusts_of(self, user_id: str) -> Sequence[Trust]:
        """Trusts the user gave or received."""
        stmt = select(Trust).where(
            or_(Trust.trustor_user_id == user_id, Trust.trustee_user_id == user_id)
        )
        return self.db.scalars(stmt).all()

    # -- revocation and cache generation ----------------------------------------------------
    def revocation_events(self, since: datetime) -> Sequence[RevocationEvent]:
        stmt = select(RevocationEvent).where(RevocationEvent.issued_before >= since)
        return self.db.scalars(stmt).all()

    def prune_revocations(self, before: datetime) -> None:
        self.db.execute(delete(RevocationEvent).where(RevocationEvent.issued_before < before))

    def generation(self) -> int:
        value = self.db.scalar(select(Generation.value).where(Generation.id == 1))
        return int(value or 0)

    def bump_generation(self) -> None:
        result = self.db.execute(
            update(Generation).where(Generation.id == 1).values(value=Generation.value + 1)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            self.db.add(Generation(id=1, value=1))
