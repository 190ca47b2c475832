"""Metadata definition rules (Glance metadefs): namespace visibility and protection, request
validation, and the contents a namespace defines (objects, properties, tags, resource types).

A namespace is visible to admins, to its owner's project and, when public, to everyone; an
invisible namespace is reported as not found. Nothing inside a protected namespace can be
deleted, nor the namespace itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from picocloud.errors import BadRequest, Conflict, Forbidden, NotFound
from picocloud.image.metadefs_models import (
    MetadefNamespace,
    MetadefObject,
    MetadefProperty,
    MetadefResourceType,
    MetadefResourceTypeAssociation,
    MetadefTag,
)
from picocloud.image.metadefs_schemas import MAX_NAME, PROPERTY_FIELDS, PROPERTY_TYPES
from picocloud.image.service import Caller, utcnow

VISIBILITIES = ("public", "private")
NAMESPACE_SORT_KEYS = ("namespace", "display_name", "visibility", "protected", "owner",
                       "created_at", "updated_at")
READ_ONLY = ("self", "schema", "created_at", "updated_at")
NAMESPACE_FIELDS = ("namespace", "display_name", "description", "visibility", "protected",
                    "owner", "resource_type_associations", "properties", "objects", "tags")
OBJECT_FIELDS = ("name", "description", "required", "properties")
ASSOCIATION_FIELDS = ("name", "prefix", "properties_target")

Row = TypeVar("Row", MetadefObject, MetadefTag)


def namespace_not_found(name: str) -> NotFound:
    return NotFound(f"Metadata definition namespace={name} was not found.")


# -- request validation -------------------------------------------------------------------
def _fields(body: Any, allowed: Sequence[str], read_only: Sequence[str] = READ_ONLY,
            what: str = "body") -> dict[str, Any]:
    """The body as a dict: 403 for a read-only attribute, 400 for one the schema lacks."""
    if not isinstance(body, dict):
        raise BadRequest(f"Invalid {what}: expected a JSON object.")
    for key in body:
        if key in read_only:
            raise Forbidden(f"Attribute '{key}' is read-only.")
        if key not in allowed:
            raise BadRequest(f"Invalid {what}: additional property '{key}' is not allowed.")
    return body


def _text(body: dict[str, Any], key: str, max_len: int | None = None) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"Invalid input for field '{key}': expected a string.")
    if max_len is not None and len(value) > max_len:
        raise BadRequest(f"Invalid input for field '{key}': at most {max_len} characters.")
    return value


def name_of(value: Any, what: str) -> str:
    """A metadef name (namespace, object, property, tag, resource type): 1 to 80 characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise BadRequest(f"Invalid {what} name: a string of 1 to {MAX_NAME} characters is "
                         "required.")
    return value


def _strings(value: Any, key: str, min_items: int = 0) -> list[str]:
    if (not isinstance(value, list) or not all(isinstance(v, str) for v in value)
            or len(set(value)) != len(value) or len(value) < min_items):
        raise BadRequest(f"Invalid input for field '{key}': expected a list of distinct "
                         "strings.")
    return list(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def property_definition(body: Any, strict: bool, where: str = "property") -> dict[str, Any]:
    """A property definition, cleaned: title and type required, each constraint well typed.

    `strict` (the property API) refuses unknown attributes as Glance's schema does; inside a
    namespace or object they are dropped. The name is not part of the stored definition."""
    if not isinstance(body, dict):
        raise BadRequest(f"Invalid {where}: expected a JSON object.")
    if strict:
        _fields(body, list(PROPERTY_FIELDS), ("created_at", "updated_at"), where)
    out = {k: v for k, v in body.items() if k in PROPERTY_FIELDS and k != "name"}
    if not isinstance(out.get("title"), str):
        raise BadRequest(f"Invalid {where}: 'title' is a required string.")
    if out.get("type") not in PROPERTY_TYPES or out.get("type") is None:
        raise BadRequest(f"Invalid {where}: 'type' must be one of "
                         f"{', '.join(t for t in PROPERTY_TYPES if t)}.")
    checks: dict[str, Callable[[Any], bool]] = {
        "description": lambda v: isinstance(v, str),
        "operators": lambda v: isinstance(v, list) and all(isinstance(o, str) for o in v),
        "minimum": _is_number, "maximum": _is_number,
        "maxLength": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "pattern": lambda v: isinstance(v, str),
        "enum": lambda v: isinstance(v, list),
        "readonly": lambda v: isinstance(v, bool),
        "items": lambda v: (isinstance(v, dict) and v.get("type") in PROPERTY_TYPES
                            and isinstance(v.get("enum", []), list)),
        "uniqueItems": lambda v: isinstance(v, bool),
        "additionalItems": lambda v: isinstance(v, bool),
    }
    checks["minLength"] = checks["maxItems"] = checks["minItems"] = checks["maxLength"]
    for key, ok in checks.items():
        if key in out and not ok(out[key]):
            raise BadRequest(f"Invalid {where}: bad value for '{key}'.")
    if "required" in out:
        out["required"] = _strings(out["required"], "required", min_items=1 if strict else 0)
    if "pattern" in out:
        try:
            re.compile(out["pattern"])
        except re.error:
            raise BadRequest(f"Invalid {where}: 'pattern' is not a regular expression.") from None
    return out


def property_definitions(value: Any, where: str) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"Invalid input for field '{where}': expected an object.")
    out = {}
    for name, definition in value.items():
        if len(name) > MAX_NAME:
            raise BadRequest(f"Invalid property name {name!r}: at most {MAX_NAME} characters.")
        out[name] = property_definition(definition, strict=False, where=f"property {name!r}")
    return out


def object_fields(body: Any, strict: bool = True) -> dict[str, Any]:
    """name, description, required and properties of an object definition."""
    body = _fields(body, OBJECT_FIELDS, what="object") if strict else body
    if not isinstance(body, dict):
        raise BadRequest("Invalid object: expected a JSON object.")
    required = body.get("required")
    return {
        "name": name_of(body.get("name"), "object"),
        "description": _text(body, "description"),
        "required": _strings(required, "required") if required is not None else None,
        "properties": property_definitions(body.get("properties"), "properties"),
    }


def _list_of_dicts(value: Any, key: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BadRequest(f"Invalid input for field '{key}': expected a list of objects.")
    return value


class MetadefService:
    def __init__(self, db: Session, caller: Caller) -> None:
        self.db = db
        self.caller = caller

    def _flush(self, conflict: str) -> None:
        try:
            self.db.flush()
        except IntegrityError:
            raise Conflict(conflict) from None

    # -- namespaces ------------------------------------------------------------------------
    def visible(self, ns: MetadefNamespace) -> bool:
        c = self.caller
        return c.is_admin or ns.owner is None or ns.visibility == "public" or (
            c.project_id is not None and ns.owner == c.project_id)

    def namespace(self, name: str) -> MetadefNamespace:
        ns = self.db.scalar(select(MetadefNamespace).where(MetadefNamespace.namespace == name))
        if ns is None or not self.visible(ns):
            raise namespace_not_found(name)
        return ns

    def namespaces(self, visibility: str | None, resource_types: str | None,
                   sort_key: str, sort_dir: str) -> list[MetadefNamespace]:
        """Visible namespaces matching the filters, sorted (ties broken by creation)."""
        if visibility is not None and visibility not in VISIBILITIES:
            raise BadRequest(f"Invalid visibility value: {visibility}")
        if sort_key not in NAMESPACE_SORT_KEYS:
            raise BadRequest(f"Invalid sort key: {sort_key}. It should be one of: "
                             f"{', '.join(NAMESPACE_SORT_KEYS)}")
        if sort_dir not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort direction: {sort_dir}")
        stmt = select(MetadefNamespace)
        if visibility is not None:
            stmt = stmt.where(MetadefNamespace.visibility == visibility)
        if resource_types:
            associated = (
                select(MetadefResourceTypeAssociation.namespace_id)
                .join(MetadefResourceType)
                .where(MetadefResourceType.name.in_(resource_types.split(",")))
            )
            stmt = stmt.where(MetadefNamespace.id.in_(associated))
        rows = [ns for ns in self.db.scalars(stmt) if self.visible(ns)]
        rows.sort(key=lambda ns: (ns.created_at, ns.id), reverse=sort_dir == "desc")
        present = [ns for ns in rows if getattr(ns, sort_key) is not None]
        missing = [ns for ns in rows if getattr(ns, sort_key) is None]
        present.sort(key=lambda ns: getattr(ns, sort_key), reverse=sort_dir == "desc")
        return present + missing if sort_dir == "asc" else missing + present

    def _namespace_fields(self, ns: MetadefNamespace, body: dict[str, Any]) -> None:
        ns.namespace = name_of(body.get("namespace"), "namespace")
        ns.display_name = _text(body, "display_name", MAX_NAME)
        ns.description = _text(body, "description", 500)
        visibility = body.get("visibility") or "private"
        if visibility not in VISIBILITIES:
            raise BadRequest(f"Invalid input for field 'visibility': {visibility!r} is not one "
                             "of public, private")
        ns.visibility = visibility
        protected = body.get("protected") or False
        if not isinstance(protected, bool):
            raise BadRequest("Invalid input for field 'protected': expected a boolean.")
        ns.protected = protected
        owner = _text(body, "owner", 255)
        if owner is not None and owner != ns.owner and not self.caller.is_admin:
            raise Forbidden("Only an admin can give a namespace to another project.")
        ns.owner = owner or ns.owner

    def create_namespace(self, body: Any) -> MetadefNamespace:
        """A namespace and, in the same transaction, any contents the body defines."""
        body = _fields(body, NAMESPACE_FIELDS, what="namespace")
        now = utcnow()
        ns = MetadefNamespace(owner=self.caller.project_id, created_at=now, updated_at=now)
        self._namespace_fields(ns, body)
        associations = _list_of_dicts(body.get("resource_type_associations"),
                                      "resource_type_associations")
        objects = _list_of_dicts(body.get("objects"), "objects")
        tags = _list_of_dicts(body.get("tags"), "tags")
        properties = property_definitions(body.get("properties"), "properties")
        if self.db.scalar(select(MetadefNamespace.id).where(
                MetadefNamespace.namespace == ns.namespace)) is not None:
            raise Conflict(f"The metadata definition namespace={ns.namespace} already exists.")
        self.db.add(ns)
        self._flush(f"The metadata definition namespace={ns.namespace} already exists.")
        for association in associations:
            self.associate(ns, association, strict=False)
        for obj in objects:
            self.create_object(ns, obj, strict=False)
        self.create_tags(ns, [t.get("name") for t in tags], append=True)
        for name, definition in properties.items():
            self._add_property(ns, name, definition)
        return ns

    def update_namespace(self, ns: MetadefNamespace, body: Any) -> MetadefNamespace:
        """Replace the namespace's attributes (PUT): omitted display_name and description are
        cleared, visibility and protected fall back to private and false; the owner is kept
        unless given. Contents in the body are ignored, as Glance does."""
        body = _fields(body, NAMESPACE_FIELDS, what="namespace")
        old = ns.namespace
        self._namespace_fields(ns, body)
        conflict = ("Invalid update. It would result in a duplicate metadata definition "
                    f"namespace with the same name of {ns.namespace}")
        if ns.namespace != old and self.db.scalar(select(MetadefNamespace.id).where(
                MetadefNamespace.namespace == ns.namespace, MetadefNamespace.id != ns.id)):
            raise Conflict(conflict)
        ns.updated_at = utcnow()
        self._flush(conflict)
        return ns

    def delete_namespace(self, ns: MetadefNamespace) -> None:
        if ns.protected:
            raise Forbidden(f"Metadata definition namespace {ns.namespace} is protected and "
                            "cannot be deleted.")
        for model in (MetadefObject, MetadefProperty, MetadefTag,
                      MetadefResourceTypeAssociation):
            self.db.execute(delete(model).where(model.namespace_id == ns.id))
        self.db.delete(ns)
        self.db.flush()

    def _unprotected(self, ns: MetadefNamespace, what: str) -> None:
        if ns.protected:
            raise Forbidden(f"Metadata definition {what} is protected and cannot be deleted.")

    def _all(self, model: type[Row], ns: MetadefNamespace) -> list[Row]:
        stmt = select(model).where(model.namespace_id == ns.id)
        return list(self.db.scalars(stmt))

    # -- objects ---------------------------------------------------------------------------
    def objects(self, ns: MetadefNamespace) -> list[MetadefObject]:
        rows = self._all(MetadefObject, ns)
        return sorted(rows, key=lambda o: (o.created_at, o.id), reverse=True)

    def object(self, ns: MetadefNamespace, name: str) -> MetadefObject:
        obj = self.db.scalar(select(MetadefObject).where(
            MetadefObject.namespace_id == ns.id, MetadefObject.name == name))
        if obj is None:
            raise NotFound(f"The metadata definition object with name={name} was not found "
                           f"in namespace={ns.namespace}.")
        return obj

    def _object_conflict(self, ns: MetadefNamespace, name: str, obj_id: int | None) -> str:
        msg = (f"A metadata definition object with name={name} already exists in "
               f"namespace={ns.namespace}.")
        stmt = select(MetadefObject.id).where(MetadefObject.namespace_id == ns.id,
                                              MetadefObject.name == name)
        found = self.db.scalar(stmt)
        if found is not None and found != obj_id:
            raise Conflict(msg)
        return msg

    def create_object(self, ns: MetadefNamespace, body: Any, strict: bool = True) -> MetadefObject:
        fields = object_fields(body, strict)
        msg = self._object_conflict(ns, fields["name"], None)
        now = utcnow()
        obj = MetadefObject(namespace_id=ns.id, created_at=now, updated_at=now, **fields)
        self.db.add(obj)
        self._flush(msg)
        return obj

    def update_object(self, ns: MetadefNamespace, obj: MetadefObject, body: Any) -> MetadefObject:
        fields = object_fields(body)
        msg = self._object_conflict(ns, fields["name"], obj.id)
        for key, value in fields.items():
            setattr(obj, key, value)
        obj.updated_at = utcnow()
        self._flush(msg)
        return obj

    def delete_object(self, ns: MetadefNamespace, obj: MetadefObject) -> None:
        self._unprotected(ns, f"object {obj.name}")
        self.db.delete(obj)

    def delete_objects(self, ns: MetadefNamespace) -> None:
        self._unprotected(ns, f"namespace {ns.namespace}")
        self.db.execute(delete(MetadefObject).where(MetadefObject.namespace_id == ns.id))

    # -- properties ------------------------------------------------------------------------
    def properties(self, ns: MetadefNamespace) -> list[MetadefProperty]:
        stmt = select(MetadefProperty).where(MetadefProperty.namespace_id == ns.id)
        return list(self.db.scalars(stmt.order_by(MetadefProperty.id)))

    def property(self, ns: MetadefNamespace, name: str) -> MetadefProperty:
        prop = self.db.scalar(select(MetadefProperty).where(
            MetadefProperty.namespace_id == ns.id, MetadefProperty.name == name))
        if prop is None:
            raise NotFound(f"The metadata definition property with name={name} was not found "
                           f"in namespace={ns.namespace}.")
        return prop

    def _property_conflict(self, ns: MetadefNamespace, name: str, prop_id: int | None) -> str:
        msg = (f"A metadata definition property with name={name} already exists in "
               f"namespace={ns.namespace}.")
        found = self.db.scalar(select(MetadefProperty.id).where(
            MetadefProperty.namespace_id == ns.id, MetadefProperty.name == name))
        if found is not None and found != prop_id:
            raise Conflict(msg)
        return msg

    def _add_property(self, ns: MetadefNamespace, name: str,
                      definition: dict[str, Any]) -> MetadefProperty:
        msg = self._property_conflict(ns, name, None)
        now = utcnow()
        prop = MetadefProperty(namespace_id=ns.id, name=name, definition=definition,
                               created_at=now, updated_at=now)
        self.db.add(prop)
        self._flush(msg)
        return prop

    def create_property(self, ns: MetadefNamespace, body: Any) -> MetadefProperty:
        definition = property_definition(body, strict=True)
        return self._add_property(ns, name_of(body.get("name"), "property"), definition)

    def update_property(self, ns: MetadefNamespace, prop: MetadefProperty,
                        body: Any) -> MetadefProperty:
        definition = property_definition(body, strict=True)
        name = name_of(body.get("name"), "property")
        msg = self._property_conflict(ns, name, prop.id)
        prop.name = name
        prop.definition = definition
        prop.updated_at = utcnow()
        self._flush(msg)
        return prop

    def delete_property(self, ns: MetadefNamespace, prop: MetadefProperty) -> None:
        self._unprotected(ns, f"property {prop.name}")
        self.db.delete(prop)

    def delete_properties(self, ns: MetadefNamespace) -> None:
        self._unprotected(ns, f"namespace {ns.namespace}")
        self.db.execute(delete(MetadefProperty).where(MetadefProperty.namespace_id == ns.id))

    # -- tags ------------------------------------------------------------------------------
    def tags(self, ns: MetadefNamespace, sort_key: str = "created_at",
             sort_dir: str = "desc") -> list[MetadefTag]:
        if sort_key not in ("name", "created_at", "updated_at"):
            raise BadRequest(f"Invalid sort key: {sort_key}")
        if sort_dir not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort direction: {sort_dir}")
        rows = self._all(MetadefTag, ns)
        return sorted(rows, key=lambda t: (getattr(t, sort_key), t.id),
                      reverse=sort_dir == "desc")

    def tag(self, ns: MetadefNamespace, name: str) -> MetadefTag:
        tag = self.db.scalar(select(MetadefTag).where(
            MetadefTag.namespace_id == ns.id, MetadefTag.name == name))
        if tag is None:
            raise NotFound(f"The metadata definition tag with name={name} was not found in "
                           f"namespace={ns.namespace}.")
        return tag

    def _tag_conflict(self, ns: MetadefNamespace, name: str, tag_id: int | None) -> str:
        msg = (f"A metadata tag with name={name} already exists in namespace={ns.namespace}. "
               "(Please note that metadata tag names are case insensitive).")
        found = self.db.scalar(select(MetadefTag.id).where(
            MetadefTag.namespace_id == ns.id, MetadefTag.name == name))
        if found is not None and found != tag_id:
            raise Conflict(msg)
        return msg

    def create_tag(self, ns: MetadefNamespace, name: Any) -> MetadefTag:
        name = name_of(name, "tag")
        msg = self._tag_conflict(ns, name, None)
        now = utcnow()
        tag = MetadefTag(namespace_id=ns.id, name=name, created_at=now, updated_at=now)
        self.db.add(tag)
        self._flush(msg)
        return tag

    def create_tags(self, ns: MetadefNamespace, names: list[Any],
                    append: bool) -> list[MetadefTag]:
        """Add tags; unless `append`, they replace the namespace's tags (Glance's
        X-OpenStack-Append)."""
        names = [name_of(n, "tag") for n in names]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise Conflict(f"A metadata tag with name={dup} already exists in "
                           f"namespace={ns.namespace}. (Please note that metadata tag names "
                           "are case insensitive).")
        if not append and names:
            self.db.execute(delete(MetadefTag).where(MetadefTag.namespace_id == ns.id))
        return [self.create_tag(ns, n) for n in names]

    def update_tag(self, ns: MetadefNamespace, tag: MetadefTag, body: Any) -> MetadefTag:
        fields = _fields(body, ("name",), what="tag")
        name = name_of(fields.get("name"), "tag")
        msg = self._tag_conflict(ns, name, tag.id)
        tag.name = name
        tag.updated_at = utcnow()
        self._flush(msg)
        return tag

    def delete_tag(self, ns: MetadefNamespace, tag: MetadefTag) -> None:
        self._unprotected(ns, f"tag {tag.name}")
        self.db.delete(tag)

    def delete_tags(self, ns: MetadefNamespace) -> None:
        self._unprotected(ns, f"namespace {ns.namespace}")
        self.db.execute(delete(MetadefTag).where(MetadefTag.namespace_id == ns.id))

    # -- resource types --------------------------------------------------------------------
    def resource_types(self) -> Sequence[MetadefResourceType]:
        return self.db.scalars(select(MetadefResourceType).order_by(MetadefResourceType.id)).all()

    def associations(
        self, ns: MetadefNamespace
    ) -> list[tuple[MetadefResourceTypeAssociation, str]]:
        stmt = (
            select(MetadefResourceTypeAssociation, MetadefResourceType.name)
            .join(MetadefResourceType)
            .where(MetadefResourceTypeAssociation.namespace_id == ns.id)
            .order_by(MetadefResourceTypeAssociation.created_at, MetadefResourceType.id)
        )
        return [(a, name) for a, name in self.db.execute(stmt).tuples()]

    def association(self, ns: MetadefNamespace,
                    resource_type: str) -> MetadefResourceTypeAssociation | None:
        for association, name in self.associations(ns):
            if name == resource_type:
                return association
        return None

    def associate(self, ns: MetadefNamespace, body: Any,
                  strict: bool = True) -> tuple[MetadefResourceTypeAssociation, str]:
        """Apply the namespace to a resource type, creating the type if it is new."""
        if strict:
            body = _fields(body, ASSOCIATION_FIELDS, ("created_at", "updated_at"),
                           "resource type association")
        name = name_of(body.get("name"), "resource type")
        prefix = _text(body, "prefix", MAX_NAME)
        target = _text(body, "properties_target", MAX_NAME)
        now = utcnow()
        rtype = self.db.scalar(select(MetadefResourceType).where(
            MetadefResourceType.name == name))
        if rtype is None:
            rtype = MetadefResourceType(name=name, protected=False, created_at=now,
                                        updated_at=now)
            self.db.add(rtype)
            self._flush(f"A metadata definition resource-type with name={name} already "
                        "exists.")
        msg = (f"The metadata definition resource-type association of resource-type={name} "
               f"to namespace={ns.namespace} already exists.")
        if self.db.get(MetadefResourceTypeAssociation, (ns.id, rtype.id)) is not None:
            raise Conflict(msg)
        association = MetadefResourceTypeAssociation(
            namespace_id=ns.id, resource_type_id=rtype.id, prefix=prefix,
            properties_target=target, created_at=now, updated_at=now)
        self.db.add(association)
        self._flush(msg)
        return association, name

    def dissociate(self, ns: MetadefNamespace, resource_type: str) -> None:
        association = self.association(ns, resource_type)
        if association is None:
            raise NotFound(f"Failed to find resource type {resource_type} to delete")
        self._unprotected(ns, f"resource-type-association {resource_type}")
        self.db.delete(association)
