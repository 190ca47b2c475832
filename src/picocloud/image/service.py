"""Image rules (Glance v2 semantics): visibility, status transitions, members, properties."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from picocloud.errors import BadRequest, Conflict, Forbidden
from picocloud.image.errors import image_not_found
from picocloud.image.models import Image, ImageMember
from picocloud.settings import Settings

DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")
VISIBILITIES = ("public", "private", "shared", "community")
MEMBER_STATUSES = ("pending", "accepted", "rejected")
READ_ONLY = {
    "id", "status", "checksum", "size", "virtual_size", "created_at", "updated_at", "file",
    "self", "schema", "direct_url", "locations", "os_hash_algo", "os_hash_value", "stores",
}
CORE = {"name", "visibility", "protected", "os_hidden", "min_ram", "min_disk", "disk_format",
        "container_format", "tags", "owner"} | READ_ONLY
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}$")


LocationOp = Callable[[str, str | None, Any], None]  # (op, index or None, value)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


class Caller:
    """Who asks: the project they act for and whether they are an image admin."""

    def __init__(self, project_id: str | None, is_admin: bool) -> None:
        self.project_id = project_id
        self.is_admin = is_admin


class ImageService:
    def __init__(self, db: Session, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    # -- visibility ------------------------------------------------------------------------
    def member(self, image_id: str, member_id: str | None) -> ImageMember | None:
        if member_id is None:
            return None
        return self.db.get(ImageMember, (image_id, member_id))

    def visible(self, image: Image, caller: Caller) -> bool:
        if caller.is_admin or image.owner == caller.project_id:
            return True
        if image.visibility in ("public", "community"):
            return True
        if image.visibility == "shared":
            return self.member(image.id, caller.project_id) is not None
        return False

    def get(self, image_id: str, caller: Caller) -> Image:
        image = self.db.get(Image, image_id)
        if image is None or not self.visible(image, caller):
            raise image_not_found(image_id)
        return image

    def list(self, caller: Caller, visibility: str | None, member_status: str) -> Sequence[Image]:
        """Images the caller may list, before the generic filters."""
        stmt = select(Image)
        project = caller.project_id
        shared_ok = select(ImageMember.image_id).where(ImageMember.member_id == project)
        if member_status != "all":
            shared_ok = shared_ok.where(ImageMember.status == member_status)
        if visibility is None:
            if not caller.is_admin:
                stmt = stmt.where(
                    (Image.owner == project)
                    | (Image.visibility == "public")
                    | ((Image.visibility == "shared") & Image.id.in_(shared_ok))
                )
            else:
                stmt = stmt.where((Image.visibility != "community") | (Image.owner == project))
        elif visibility == "all":
            if not caller.is_admin:
                stmt = stmt.where(
                    (Image.owner == project)
                    | Image.visibility.in_(("public", "community"))
                    | ((Image.visibility == "shared") & Image.id.in_(shared_ok))
                )
        else:
            stmt = stmt.where(Image.visibility == visibility)
            if visibility == "shared" and not caller.is_admin:
                stmt = stmt.where((Image.owner == project) | Image.id.in_(shared_ok))
            elif visibility == "private" and not caller.is_admin:
                stmt = stmt.where(Image.owner == project)
        return self.db.scalars(stmt).all()

    # -- create and update -----------------------------------------------------------------
    def create(self, body: dict[str, Any], caller: Caller) -> Image:
        for key in body:
            if key in READ_ONLY and key != "id":
                raise Forbidden(f"Attribute '{key}' is read-only.")
        ident = body.get("id")
        if ident is not None:
            if not isinstance(ident, str) or not _UUID.match(ident):
                raise BadRequest(f"Invalid input for field 'id': {ident!r} is not a UUID")
            if self.db.get(Image, ident) is not None:
                raise Conflict(f"An image with identifier {ident} already exists")
        now = utcnow()
        image = Image(
            id=str(uuid.UUID(ident)) if ident else str(uuid.uuid4()),
            status="queued", visibility="shared", owner=caller.project_id, protected=False,
            os_hidden=False, min_disk=0, min_ram=0, tags=[], properties={},
            created_at=now, updated_at=now,
        )
        for key, value in body.items():
            if key != "id":
                self._set(image, key, value, caller, creating=True)
        self.db.add(image)
        self.db.flush()
        return image

    def _set(self, image: Image, key: str, value: Any, caller: Caller,
             creating: bool = False) -> None:
        if key in READ_ONLY:
            raise Forbidden(f"Attribute '{key}' is read-only.")
        if key.startswith("os_glance"):
            raise Forbidden(f"Attribute '{key}' is reserved.")
        if key == "name":
            if value is not None and (not isinstance(value, str) or len(value) > 255):
                raise BadRequest("Invalid input for field 'name': at most 255 characters")
            image.name = value
        elif key == "visibility":
            if value not in VISIBILITIES:
                raise BadRequest(f"Invalid input for field 'visibility': {value!r} is not one "
                                 f"of {', '.join(VISIBILITIES)}")
            if value == "public" and not caller.is_admin:
                raise Forbidden("You are not authorized to publicize this image.")
            image.visibility = value
        elif key in ("protected", "os_hidden"):
            if not isinstance(value, bool):
                raise BadRequest(f"Invalid input for field '{key}': expected a boolean")
            setattr(image, key, value)
        elif key in ("min_ram", "min_disk"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise BadRequest(f"Invalid input for field '{key}': expected an integer >= 0")
            setattr(image, key, value)
        elif key in ("disk_format", "container_format"):
            allowed = DISK_FORMATS if key == "disk_format" else CONTAINER_FORMATS
            if value is not None and value not in allowed:
                raise BadRequest(f"Invalid input for field '{key}': {value!r} is not one of "
                                 f"{', '.join(allowed)}")
            if not creating and image.status not in ("queued",) and value != getattr(image, key):
                raise Forbidden(f"Attribute {key} can be only replaced for a queued image.")
            setattr(image, key, value)
        elif key == "tags":
            image.tags = _tags(value)
        elif key == "owner":
            if not caller.is_admin and value != image.owner:
                raise Forbidden("Attribute 'owner' can only be changed by an admin.")
            image.owner = value
        else:
            if not isinstance(value, str):
                raise BadRequest(f"Invalid input for field '{key}': property values are strings")
            if len(key) > 255 or len(value) > 65535:
                raise BadRequest(f"Invalid input for field '{key}': too long")
            image.properties = {**image.properties, key: value}

    def patch(self, image: Image, ops: Any, caller: Caller,
              locations: LocationOp | None = None) -> Image:
        """Apply a JSON patch; `/locations` operations go to `locations` (403 without)."""
        if not isinstance(ops, list):
            raise BadRequest("Expected a JSON patch: a list of operations")
        for raw in ops:
            op = _normalize_op(raw)
            path = op.get("path")
            if isinstance(path, str) and (path == "/locations" or
                                          path.startswith("/locations/")):
                if locations is None:
                    raise Forbidden("Image locations can't be changed here.")
                if op["op"] != "remove" and "value" not in op:
                    raise BadRequest(f"Operation {op['op']} needs a value")
                index = path[len("/locations/"):] if path != "/locations" else None
                locations(op["op"], index, op.get("value"))
                continue
            if not isinstance(path, str) or not path.startswith("/") or path.count("/") != 1:
                raise BadRequest(f"Invalid JSON pointer for this resource: {path!r}")
            key = path[1:].replace("~1", "/").replace("~0", "~")
            if op["op"] == "remove":
                self._remove(image, key)
                continue
            if "value" not in op:
                raise BadRequest(f"Operation {op['op']} needs a value")
            if op["op"] == "replace" and key not in CORE and key not in image.properties:
                raise Conflict(f"Property {key} does not exist.")
            self._set(image, key, op["value"], caller)
        image.updated_at = utcnow()
        self.db.flush()
        return image

    def _remove(self, image: Image, key: str) -> None:
        if key in CORE:
            raise Forbidden(f"Attribute '{key}' can not be removed.")
        if key.startswith("os_glance"):
            raise Forbidden(f"Attribute '{key}' is reserved.")
        if key not in image.properties:
            raise Conflict(f"Property {key} does not exist.")
        image.properties = {k: v for k, v in image.properties.items() if k != key}

    def delete(self, image: Image) -> None:
        if image.protected:
            raise Forbidden(f"Image {image.id} is protected and cannot be deleted.")
        self.db.delete(image)
        self.db.flush()

    def set_status(self, image: Image, wanted: str) -> None:
        """deactivate/reactivate: active <-> deactivated only."""
        if image.status == wanted:
            return
        if (image.status, wanted) not in (("active", "deactivated"), ("deactivated", "active")):
            raise Forbidden(f"Not allowed to change image status from {image.status} to {wanted}")
        image.status = wanted
        image.updated_at = utcnow()

    def add_tag(self, image: Image, tag: str) -> None:
        image.tags = _tags([*image.tags, tag]) if tag not in image.tags else image.tags
        image.updated_at = utcnow()

    def remove_tag(self, image: Image, tag: str) -> bool:
        if tag not in image.tags:
            return False
        image.tags = [t for t in image.tags if t != tag]
        image.updated_at = utcnow()
        return True

    # -- data ------------------------------------------------------------------------------
    def begin_upload(self, image: Image, next_status: str = "saving") -> None:
        """queued -> saving (or uploading, for staging), or 409/400 saying why not."""
        if image.status != "queued":
            raise Conflict(f"Image status transition from {image.status} to {next_status} is "
                           "not allowed (data can only be uploaded to a queued image).")
        if image.disk_format is None or image.container_format is None:
            raise BadRequest("Properties disk_format, container_format must be set prior to "
                             "saving data.")
        image.status = next_status
        image.updated_at = utcnow()

    def used_bytes(self, owner: str | None) -> int:
        stmt = select(func.coalesce(func.sum(Image.size), 0)).where(Image.owner == owner)
        return int(self.db.scalar(stmt) or 0)

    def budget(self, image: Image) -> int:
        """How many bytes of data the image may take: the size cap, within what is left of
        its project's quota."""
        cap = self.settings.image_size_cap
        if self.settings.image_quota_bytes:
            cap = min(cap, self.settings.image_quota_bytes - self.used_bytes(image.owner))
        return cap

    # -- members ---------------------------------------------------------------------------
    def add_member(self, image: Image, member_id: Any) -> ImageMember:
        if image.visibility != "shared":
            raise Forbidden(f"Image {image.id} is not shared: only shared images have members.")
        if not isinstance(member_id, str) or not member_id or len(member_id) > 64:
            raise BadRequest("Invalid input for field 'member': a project id is required")
        if self.member(image.id, member_id) is not None:
            raise Conflict(f"Member {member_id} already exists for image {image.id}")
        now = utcnow()
        member = ImageMember(image_id=image.id, member_id=member_id, status="pending",
                             created_at=now, updated_at=now)
        self.db.add(member)
        self.db.flush()
        return member

    def members(self, image: Image) -> Sequence[ImageMember]:
        stmt = select(ImageMember).where(ImageMember.image_id == image.id)
        return self.db.scalars(stmt.order_by(ImageMember.created_at)).all()

    def set_member_status(self, member: ImageMember, status: Any) -> None:
        if status not in MEMBER_STATUSES:
            raise BadRequest(f"Invalid input for field 'status': {status!r} is not one of "
                             f"{', '.join(MEMBER_STATUSES)}")
        member.status = status
        member.updated_at = utcnow()


def _normalize_op(raw: Any) -> dict[str, Any]:
    """One JSON-patch operation, accepting both v2.1 ({"op": "add", "path": "/x"}) and
    v2.0 ({"add": "/x"}) media types."""
    if isinstance(raw, dict):
        if raw.get("op") in ("add", "replace", "remove"):
            return raw
        verbs = [v for v in ("add", "replace", "remove") if v in raw]
        if len(verbs) == 1:
            op = {"op": verbs[0], "path": raw[verbs[0]]}
            if "value" in raw:
                op["value"] = raw["value"]
            return op
    raise BadRequest("Each operation needs op add, replace or remove")


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise BadRequest("Invalid input for field 'tags': expected a list of strings")
    for t in value:
        if len(t) > 255:
            raise BadRequest("Invalid input for field 'tags': a tag has at most 255 characters")
    if len(value) > 128:
        raise BadRequest("Maximum number of tags exceeded (128).")
    return list(dict.fromkeys(value))
