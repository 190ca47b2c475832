"""Server rules (Nova semantics): create with quota and placement, state transitions, delete.

The API only records desired state here (vm_state/task_state); the host agent acts on it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, object_session

from picocloud.compute import scheduler, states, tags
from picocloud.compute.errors import flavor_not_found, server_not_found
from picocloud.compute.models import (
    Flavor,
    FlavorAccess,
    InstanceAction,
    Keypair,
    Server,
    ServerGroup,
)
from picocloud.errors import BadRequest, Conflict, Forbidden, NotFound
from picocloud.image.models import Image
from picocloud.image.service import Caller, ImageService
from picocloud.settings import Settings

MAX_USER_DATA = 65535
MAX_METADATA_ITEMS = 128
claims_lock = threading.Lock()  # one scheduling pass at a time in this process


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


@dataclass(frozen=True)
class Actor:
    """Who calls: their project and user, and whether they are an admin."""

    project_id: str
    user_id: str
    is_admin: bool
    request_id: str


def flavor_snapshot(f: Flavor) -> dict[str, Any]:
    return {
        "id": f.id, "name": f.name, "vcpus": f.vcpus, "ram": f.ram, "disk": f.disk,
        "ephemeral": f.ephemeral, "swap": f.swap, "extra_specs": dict(f.extra_specs),
    }


class ServerService:
    def __init__(self, db: Session, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    # -- lookups ---------------------------------------------------------------------------
    def get(self, server_id: str, actor: Actor, deleted_ok: bool = False) -> Server:
        server = self.db.get(Server, server_id)
        if server is None or (server.deleted and not deleted_ok):
            raise server_not_found(server_id)
        if not actor.is_admin and server.project_id != actor.project_id:
            raise server_not_found(server_id)
        return server

    def flavor(self, flavor_id: str, actor: Actor) -> Flavor:
        flavor = self.db.get(Flavor, str(flavor_id))
        if flavor is None:
            raise flavor_not_found(str(flavor_id))
        if not flavor.is_public and not actor.is_admin:
            access = self.db.get(FlavorAccess, (flavor.id, actor.project_id))
            if access is None:
                raise flavor_not_found(str(flavor_id))
        return flavor

    def image(self, image_id: str, actor: Actor) -> Image:
        try:
            image = ImageService(self.db, self.settings).get(
                image_id, Caller(actor.project_id, actor.is_admin)
            )
        except NotFound:
            raise BadRequest(f"Image {image_id} could not be found.") from None
        if image.status != "active":
            raise BadRequest(f"Image {image_id} is not active.")
        return image

    # -- create ----------------------------------------------------------------------------
    def create(self, req: dict[str, Any], actor: Actor) -> list[Server]:
        """Validate, check quota, record the servers and place them, in one locked pass."""
        from picocloud.compute import quota

        name = req.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise BadRequest("Invalid input for field/attribute name: a name of 1-255 "
                             "characters is required.")
        image_id = _image_ref(req)
        try:
            flavor = self.flavor(_ref_id(req.get("flavorRef"), "flavorRef"), actor)
        except NotFound as exc:
            raise BadRequest(exc.message) from None
        image = self.image(image_id, actor)
        if image.min_ram and flavor.ram < image.min_ram:
            raise BadRequest("Flavor's memory is too small for requested image.")
        if image.min_disk and flavor.disk and flavor.disk < image.min_disk:
            raise BadRequest("Flavor's disk is too small for requested image.")
        if flavor.disk and image.virtual_size and image.virtual_size > flavor.disk << 30:
            raise BadRequest("Flavor's disk is too small for requested image.")
        key_name, key_data = self._keypair(req.get("key_name"), actor)
        metadata = validate_metadata(req.get("metadata", {}))
        user_data = _user_data(req.get("user_data"))
        min_count, max_count = _counts(req)
        az = req.get("availability_zone") or None
        group = self._group(req.get("os:scheduler_hints"), actor)
        networks = req.get("networks", "auto")
        if networks not in ("none", "auto") and not isinstance(networks, list):
            raise BadRequest("Invalid input for field/attribute networks.")
        if isinstance(networks, list) and networks:
            raise BadRequest("Networks other than 'none' and 'auto' need the networking "
                             "service, which this cloud does not run yet.")
        security_groups = [
            g.get("name", "") for g in req.get("security_groups", []) if isinstance(g, dict)
        ] or ["default"]
        reservation = "r-" + secrets.token_hex(4)
        access = {k: access_ip(k, req[k]) for k in ("accessIPv4", "accessIPv6") if req.get(k)}
        with claims_lock:
            scheduler.lock_claims(self.db)
            count = self._fit_quota(quota, actor, flavor, min_count, max_count)
            hosts = scheduler.host_states(self.db)
            request = scheduler.Request(
                vcpus=flavor.vcpus, ram=flavor.ram,
                disk=flavor.disk + flavor.ephemeral + -(-flavor.swap // 1024),
                availability_zone=az, extra_specs=dict(flavor.extra_specs),
                image_properties=dict(image.properties), group=group,
            )
            created: list[Server] = []
            for index in range(count):
                server = self._new_server(
                    name if count == 1 else f"{name}-{index + 1}", image, flavor, actor,
                    key_name, key_data, metadata, user_data, bool(req.get("config_drive")), az,
                    reservation, index, networks, security_groups, access,
                    req.get("description"),
                )
                try:
                    st = scheduler.select_host(hosts, request, self.settings)
                except scheduler.NoValidHost as exc:
                    server.vm_state, server.task_state = states.ERROR, None
                    server.fault = {"code": 500, "message": str(exc),
                                    "created": _iso(utcnow()), "details": ""}
                else:
                    scheduler.claim(st, request)
                    st.servers.add(server.id)
                    server.host = st.host.name
                    server.availability_zone = az or st.az
                    server.task_state = states.SPAWNING
                if group is not None:
                    group.members = [*group.members, server.id]
                self.db.add(server)
                self.record_action(server, "create", actor)
                created.append(server)
            self.db.commit()
        return created

    def _fit_quota(
        self, quota: Any, actor: Actor, flavor: Flavor, min_count: int, max_count: int
    ) -> int:
        """The most servers (max_count down to min_count) the project's quota allows, as Nova
        does for multi-create; the min_count refusal is the error the caller sees."""
        for count in range(max_count, min_count - 1, -1):
            deltas = {"instances": count, "cores": flavor.vcpus * count,
                      "ram": flavor.ram * count}
            try:
                quota.check(self.db, actor.project_id, actor.user_id, deltas)
            except Forbidden:
                if count == min_count:
                    raise
                continue
            return count
        raise AssertionError("unreachable")

    def _new_server(
        self, name: str, image: Image, flavor: Flavor, actor: Actor, key_name: str | None,
        key_data: str | None, metadata: dict[str, str], user_data: str | None,
        config_drive: bool, az: str | None, reservation: str, index: int, networks: Any,
        security_groups: list[str], access: dict[str, str], desc: str | None,
    ) -> Server:
        now = utcnow()
        return Server(
            access_ipv4=access.get("accessIPv4", ""), access_ipv6=access.get("accessIPv6", ""),
            description=desc,
            id=str(uuid.uuid4()), name=name, project_id=actor.project_id,
            user_id=actor.user_id, image_id=image.id, flavor_id=flavor.id,
            flavor=flavor_snapshot(flavor), key_name=key_name, key_data=key_data,
            metadata_=metadata, user_data=user_data, config_drive=config_drive,
            availability_zone=az, vm_state=states.BUILDING, task_state=states.SCHEDULING,
            power_state=0, locked=False, reservation_id=reservation, launch_index=index,
            networks=networks, security_groups=security_groups, deleted=False,
            created_at=now, updated_at=now,
        )

    def _keypair(self, name: Any, actor: Actor) -> tuple[str | None, str | None]:
        if name is None:
            return None, None
        key = self.db.get(Keypair, (actor.user_id, str(name)))
        if key is None:
            raise BadRequest(f"Invalid key_name provided: {name}.")
        return key.name, key.public_key

    def _group(self, hints: Any, actor: Actor) -> ServerGroup | None:
        if not isinstance(hints, dict) or not hints.get("group"):
            return None
        group = self.db.get(ServerGroup, str(hints["group"]))
        if group is None or (group.project_id != actor.project_id and not actor.is_admin):
            raise BadRequest(f"Invalid server group {hints['group']}.")
        return group

    def record_action(self, server: Server, action: str, actor: Actor) -> None:
        self.db.add(InstanceAction(
            server_id=server.id, action=action, request_id=actor.request_id,
            user_id=actor.user_id, project_id=actor.project_id, message=None,
            events=[], start_time=utcnow(),
        ))

    # -- state transitions -----------------------------------------------------------------
    def transition(
        self, server: Server, action: str, actor: Actor, allowed: tuple[str, ...],
        task: str | None, check_lock: bool = True,
    ) -> None:
        """Move `server` to `task` if its vm_state is one of `allowed`; else 409 as Nova says."""
        if check_lock and server.locked and not actor.is_admin:
            raise Conflict(f"Instance {server.id} is locked")
        if server.vm_state not in allowed or (
            server.task_state is not None and task != states.DELETING
        ):
            raise Conflict(
                f"Cannot '{action}' instance {server.id} while it is in vm_state "
                f"{server.vm_state}" + (f" task_state {server.task_state}"
                                        if server.task_state else "")
            )
        server.task_state = task
        server.updated_at = utcnow()
        self.record_action(server, action, actor)

    def delete(self, server: Server, actor: Actor) -> None:
        if server.locked and not actor.is_admin:
            raise Conflict(f"Instance {server.id} is locked")
        self.record_action(server, "delete", actor)
        if server.host is None:  # never placed: nothing exists on any host
            mark_deleted(server)
        else:
            server.task_state = states.DELETING
            server.updated_at = utcnow()


def mark_deleted(server: Server) -> None:
    """The server is gone: its row stays (soft delete, as Nova's), its tags do not."""
    db = object_session(server)
    assert db is not None, "a server is marked deleted inside its session"
    tags.remove_all(db, server.id)
    now = utcnow()
    server.vm_state = states.DELETED
    server.task_state = None
    server.power_state = 0
    server.deleted = True
    server.terminated_at = now
    server.updated_at = now


def hostname_of(name: str) -> str:
    """The guest hostname a display name gives (letters, digits and dashes, at most 63)."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "server"


def description(value: Any) -> str | None:
    """A server description (2.19): null, or at most 255 printable characters."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 255 or not value.isprintable():
        raise BadRequest("Invalid input for field/attribute description: null or at most 255 "
                         "printable characters.")
    return value


def access_ip(field: str, value: Any) -> str:
    """An accessIPv4/accessIPv6 value, validated and in canonical form ('::babe:dc0c:1602')."""
    try:
        ip = ipaddress.ip_address(str(value))
    except ValueError:
        raise BadRequest(f"Invalid input for field/attribute {field}: {value!r} is not an "
                         "IP address.") from None
    if ip.version != (4 if field == "accessIPv4" else 6):
        raise BadRequest(f"Invalid input for field/attribute {field}: wrong IP version.")
    return str(ip)


def validate_metadata(meta: Any) -> dict[str, str]:
    if not isinstance(meta, dict):
        raise BadRequest("Invalid input for field/attribute metadata: expected an object.")
    if len(meta) > MAX_METADATA_ITEMS:
        raise Forbidden(f"Quota exceeded for metadata_items: at most {MAX_METADATA_ITEMS}")
    for key, value in meta.items():
        if not isinstance(value, str) or not 1 <= len(key) <= 255 or len(value) > 255:
            raise BadRequest("Invalid input for field/attribute metadata: keys of 1-255 and "
                             "string values of at most 255 characters.")
    return dict(meta)


def _ref_id(ref: Any, field: str) -> str:
    if not isinstance(ref, (str, int)) or str(ref) == "":
        raise BadRequest(f"Invalid input for field/attribute {field}.")
    return str(ref).rstrip("/").rsplit("/", 1)[-1]


def _image_ref(req: dict[str, Any]) -> str:
    """imageRef, or the image of a block_device_mapping_v2 image->local boot device."""
    if req.get("imageRef"):
        return _ref_id(req["imageRef"], "imageRef")
    for bdm in req.get("block_device_mapping_v2") or []:
        if not isinstance(bdm, dict):
            continue
        if bdm.get("source_type") == "image" and bdm.get("destination_type", "local") == "local":
            if str(bdm.get("boot_index", "0")) == "0":
                return _ref_id(bdm.get("uuid"), "block_device_mapping_v2.uuid")
        raise BadRequest("Only image->local block device mappings are supported until the "
                         "block storage service exists.")
    raise BadRequest("Missing imageRef attribute")


def _user_data(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise BadRequest("Invalid input for field/attribute user_data.")
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("User data needs to be valid base 64.") from None
    if len(decoded) > MAX_USER_DATA:
        raise BadRequest(f"User data too large: at most {MAX_USER_DATA} bytes decoded.")
    return raw


def _counts(req: dict[str, Any]) -> tuple[int, int]:
    def as_int(name: str, default: int) -> int:
        value = req.get(name, default)
        if isinstance(value, str) and re.fullmatch(r"\d+", value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequest(f"Invalid input for field/attribute {name}.")
        return value

    lo = as_int("min_count", 1)
    hi = as_int("max_count", lo)
    if hi < lo:
        raise BadRequest("min_count must be <= max_count")
    return lo, hi


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")

