"""The JSON schemas Glance publishes at /v2/schemas/{image,images,member,members}."""

from __future__ import annotations

from typing import Any

from picocloud.image.service import CONTAINER_FORMATS, DISK_FORMATS, MEMBER_STATUSES, VISIBILITIES


def _s(kind: Any, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **extra}


IMAGE_PROPERTIES: dict[str, Any] = {
    "id": _s("string", "An identifier for the image", pattern="^([0-9a-fA-F]){8}-([0-9a-fA-F])"
             "{4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"),
    "name": _s(["null", "string"], "Descriptive name for the image", maxLength=255),
    "status": _s("string", "Status of the image", readOnly=True,
                 enum=["queued", "saving", "active", "killed", "deleted", "uploading",
                       "importing", "pending_delete", "deactivated"]),
    "visibility": _s("string", "Scope of image accessibility", enum=list(VISIBILITIES)),
    "protected": _s("boolean", "If true, image will not be deletable."),
    "os_hidden": _s("boolean", "If true, image will not appear in default image list."),
    "checksum": _s(["null", "string"], "md5 hash of image contents.", readOnly=True,
                   maxLength=32),
    "os_hash_algo": _s(["null", "string"], "Algorithm to calculate the os_hash_value",
                       readOnly=True, maxLength=64),
    "os_hash_value": _s(["null", "string"], "Hexdigest of the image contents",
                        readOnly=True, maxLength=128),
    "owner": _s(["null", "string"], "Owner of the image", maxLength=255),
    "size": _s(["null", "integer"], "Size of image file in bytes", readOnly=True),
    "virtual_size": _s(["null", "integer"], "Virtual size of image in bytes", readOnly=True),
    "container_format": _s(["null", "string"], "Format of the container",
                           enum=[None, *CONTAINER_FORMATS]),
    "disk_format": _s(["null", "string"], "Format of the disk", enum=[None, *DISK_FORMATS]),
    "created_at": _s("string", "Date and time of image registration", readOnly=True),
    "updated_at": _s("string", "Date and time of the last image modification", readOnly=True),
    "tags": _s("array", "List of strings related to the image",
               items={"type": "string", "maxLength": 255}),
    "min_ram": _s("integer", "Amount of ram (in MB) required to boot image."),
    "min_disk": _s("integer", "Amount of disk space (in GB) required to boot image."),
    "stores": _s("string", "Store in which image data resides. Only present when the image "
                 "has data; a comma-separated list of store identifiers.", readOnly=True),
    "self": _s("string", "An image self url", readOnly=True),
    "file": _s("string", "An image file url", readOnly=True),
    "schema": _s("string", "An image schema url", readOnly=True),
}

IMAGE = {
    "name": "image",
    "properties": IMAGE_PROPERTIES,
    "additionalProperties": {"type": "string"},
    "links": [
        {"rel": "self", "href": "{self}"},
        {"rel": "enclosure", "href": "{file}"},
        {"rel": "describedby", "href": "{schema}"},
    ],
}

MEMBER = {
    "name": "member",
    "properties": {
        "image_id": _s("string", "An identifier for the image"),
        "member_id": _s("string", "An identifier for the image member (project_id)"),
        "status": _s("string", "The status of this image member",
                     enum=list(MEMBER_STATUSES)),
        "created_at": _s("string", "Date and time of image member creation"),
        "updated_at": _s("string", "Date and time of last modification of image member"),
        "schema": _s("string", "A member schema url", readOnly=True),
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "image": IMAGE,
    "images": {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": IMAGE},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    },
    "member": MEMBER,
    "members": {
        "name": "members",
        "properties": {"members": {"type": "array", "items": MEMBER},
                       "schema": {"type": "string"}},
        "links": [{"rel": "describedby", "href": "{schema}"}],
    },
}
