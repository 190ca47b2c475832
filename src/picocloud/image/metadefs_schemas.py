"""The JSON schemas Glance publishes at /v2/schemas/metadefs/{namespace,object,property,...}.

Built the way Glance builds them (an item schema, then a collection around it), so clients
that read them (glanceclient, Horizon) see the same shapes.
"""

from __future__ import annotations

import copy
from typing import Any

MAX_NAME = 80
PROPERTY_TYPES = ["array", "boolean", "integer", "number", "object", "string", None]


def _s(kind: str, description: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, **extra}
    if description:
        out["description"] = description
    return out


def _stamps(what: str) -> dict[str, Any]:
    return {
        "created_at": _s("string", f"Date and time of {what} creation", readOnly=True,
                         format="date-time"),
        "updated_at": _s("string", f"Date and time of the last {what} modification",
                         readOnly=True, format="date-time"),
    }


_LINKS = {"schema": {"readOnly": True, "type": "string"},
          "self": {"readOnly": True, "type": "string"}}

# One property definition: a small JSON-schema fragment (title, type, constraints).
PROPERTY_FIELDS: dict[str, Any] = {
    "name": _s("string", maxLength=MAX_NAME),
    "title": _s("string"),
    "description": _s("string"),
    "operators": _s("array", items={"type": "string"}),
    "type": _s("string", enum=PROPERTY_TYPES),
    "required": {"$ref": "#/definitions/stringArray"},
    "minimum": _s("number"),
    "maximum": _s("number"),
    "maxLength": {"$ref": "#/definitions/positiveInteger"},
    "minLength": {"$ref": "#/definitions/positiveIntegerDefault0"},
    "pattern": _s("string", format="regex"),
    "enum": _s("array"),
    "readonly": _s("boolean"),
    "default": {},
    "items": _s("object", properties={"type": _s("string", enum=PROPERTY_TYPES),
                                      "enum": _s("array")}),
    "maxItems": {"$ref": "#/definitions/positiveInteger"},
    "minItems": {"$ref": "#/definitions/positiveIntegerDefault0"},
    "uniqueItems": _s("boolean", default=False),
    "additionalItems": _s("boolean"),
}

_INTEGERS = {
    "positiveInteger": {"type": "integer", "minimum": 0},
    "positiveIntegerDefault0": {"allOf": [{"$ref": "#/definitions/positiveInteger"},
                                          {"default": 0}]},
}

DEFINITIONS: dict[str, Any] = {
    **_INTEGERS,
    "stringArray": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    "property": {
        "type": "object",
        "additionalProperties": {"type": "object", "required": ["title", "type"],
                                 "properties": PROPERTY_FIELDS},
    },
}


def _item(name: str, properties: dict[str, Any], required: list[str],
          definitions: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "properties": properties, "additionalProperties": False}
    if definitions:
        out["definitions"] = definitions
    if required:
        out["required"] = required
    return out


def _collection(name: str, item: dict[str, Any], as_dict: bool = False) -> dict[str, Any]:
    """Glance's CollectionSchema (a list) or DictCollectionSchema (keyed by name)."""
    item = copy.deepcopy(item)
    definitions = item.pop("definitions", None)
    items = ({"type": "object", "additionalProperties": item} if as_dict
             else {"type": "array", "items": item})
    out: dict[str, Any] = {
        "name": name,
        "properties": {name: items, "first": {"type": "string"}, "next": {"type": "string"},
                       "schema": {"type": "string"}},
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }
    if definitions:
        out["definitions"] = definitions
    return out


NAMESPACE = _item("namespace", {
    "namespace": _s("string", "The unique namespace text.", maxLength=MAX_NAME),
    "display_name": _s("string", "The user friendly name for the namespace. Used by UI if "
                       "available.", maxLength=MAX_NAME),
    "description": _s("string", "Provides a user friendly description of the namespace.",
                      maxLength=500),
    "visibility": _s("string", "Scope of namespace accessibility.", enum=["public", "private"]),
    "protected": _s("boolean", "If true, namespace will not be deletable."),
    "owner": _s("string", "Owner of the namespace.", maxLength=255),
    **_stamps("namespace"),
    **_LINKS,
    "resource_type_associations": _s("array", items=_s("object", properties={
        "name": _s("string"), "prefix": _s("string"), "properties_target": _s("string")})),
    "properties": {"$ref": "#/definitions/property"},
    "objects": _s("array", items=_s("object", properties={
        "name": _s("string"), "description": _s("string"),
        "required": {"$ref": "#/definitions/stringArray"},
        "properties": {"$ref": "#/definitions/property"}})),
    "tags": _s("array", items=_s("object", properties={"name": _s("string")})),
}, ["namespace"], DEFINITIONS)

OBJECT = _item("object", {
    "name": _s("string", maxLength=MAX_NAME),
    "description": _s("string"),
    "required": {"$ref": "#/definitions/stringArray"},
    "properties": {"$ref": "#/definitions/property"},
    **_LINKS,
    **_stamps("object"),
}, ["name"], DEFINITIONS)

PROPERTY = _item("property", PROPERTY_FIELDS, ["type", "title", "name"], {
    **_INTEGERS,
    "stringArray": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                    "uniqueItems": True},
})

RESOURCE_TYPE_ASSOCIATION = _item("resource_type_association", {
    "name": _s("string", "Resource type names should be aligned with Heat resource types "
               "whenever possible: https://docs.openstack.org/heat/latest/template_guide/"
               "openstack.html", maxLength=MAX_NAME),
    "prefix": _s("string", "Specifies the prefix to use for the given resource type. Any "
                 "properties in the namespace should be prefixed with this prefix when being "
                 "applied to the specified resource type. Must include prefix separator (e.g. "
                 "a colon :).", maxLength=MAX_NAME),
    "properties_target": _s("string", "Some resource types allow more than one key / value "
                            "pair per instance.  For example, Cinder allows user and image "
                            "metadata on volumes. Only the image properties metadata is "
                            "evaluated by Nova (scheduling or drivers). This property allows "
                            "a namespace target to remove the ambiguity.", maxLength=MAX_NAME),
    **_stamps("resource type association"),
}, ["name"])

TAG = _item("tag", {"name": _s("string", maxLength=MAX_NAME), **_stamps("tag")}, ["name"])


def _properties_collection() -> dict[str, Any]:
    item = copy.deepcopy(PROPERTY)
    item["required"] = [k for k in item["required"] if k != "name"]  # the name is the key
    return _collection("properties", item, as_dict=True)


SCHEMAS: dict[str, dict[str, Any]] = {
    "namespace": NAMESPACE,
    "namespaces": _collection("namespaces", NAMESPACE),
    "object": OBJECT,
    "objects": _collection("objects", OBJECT),
    "property": PROPERTY,
    "properties": _properties_collection(),
    "resource_type": RESOURCE_TYPE_ASSOCIATION,
    "resource_types": _collection("resource_type_associations", RESOURCE_TYPE_ASSOCIATION),
    "tag": TAG,
    "tags": _collection("tags", TAG),
}
