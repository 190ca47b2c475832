"""`POST /servers/{id}/action`: power, pause, suspend, lock, rebuild, resize, snapshot,
backup, console output. Each action records desired state; the host agent carries it out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from picocloud.compute import states
from picocloud.compute import validation as v
from picocloud.compute.api.servers import actor, basic_view, svc
from picocloud.compute.models import Server
from picocloud.compute.service import description, flavor_snapshot, utcnow, validate_metadata
from picocloud.errors import BadRequest, Conflict, Forbidden, NotFound
from picocloud.http import Ctx, Reply, Route

P = "os_compute_api:"
ACCEPTED = Reply(None, status=202)
A, S, PA, SU, E, R = (
    states.ACTIVE,
    states.STOPPED,
    states.PAUSED,
    states.SUSPENDED,
    states.ERROR,
    states.RESIZED,
)

# action name -> (policy rule, vm_states it may start from, task_state it sets)
SIMPLE: dict[str, tuple[str, tuple[str, ...], str]] = {
    "os-start": ("servers:start", (S,), states.POWERING_ON),
    "os-stop": ("servers:stop", (A, E), states.POWERING_OFF),
    "pause": ("os-pause-server:pause", (A,), states.PAUSING),
    "unpause": ("os-pause-server:unpause", (PA,), states.UNPAUSING),
    "suspend": ("os-suspend-server:suspend", (A,), states.SUSPENDING),
    "resume": ("os-suspend-server:resume", (SU,), states.RESUMING),
}


def _simple(ctx: Ctx, server: Server, name: str, body: Any) -> Reply:
    rule, allowed, task = SIMPLE[name]
    ctx.authorize({"target": {"project_id": server.project_id}}, rule=P + rule)
    svc(ctx).transition(server, name.removeprefix("os-"), actor(ctx), allowed, task)
    return ACCEPTED


def reboot(ctx: Ctx, server: Server, body: Any) -> Reply:
    ctx.authorize({"target": {"project_id": server.project_id}}, rule=f"{P}servers:reboot")
    kind = body.get("type") if isinstance(body, dict) else None
    if kind not in ("SOFT", "HARD", "soft", "hard"):
        raise BadRequest("Invalid input for field/attribute type: must be SOFT or HARD.")
    if kind.upper() == "SOFT":
        svc(ctx).transition(server, "reboot", actor(ctx), (A,), states.REBOOTING)
    else:
        svc(ctx).transition(server, "reboot", actor(ctx), (A, S, PA, SU, E), states.REBOOTING_HARD)
    return ACCEPTED


def lock(ctx: Ctx, server: Server, body: Any) -> Reply:
    ctx.authorize({"target": {"project_id": server.project_id}}, rule=f"{P}os-lock-server:lock")
    server.locked = True
    server.locked_by = "admin" if actor(ctx).is_admin else "owner"
    svc(ctx).record_action(server, "lock", actor(ctx))
    return ACCEPTED


def unlock(ctx: Ctx, server: Server, body: Any) -> Reply:
    ctx.authorize({"target": {"project_id": server.project_id}}, rule=f"{P}os-lock-server:unlock")
    if server.locked_by == "admin":
        ctx.authorize({"target": {"project_id": server.project_id}},
                      rule=f"{P}os-lock-server:unlock:unlock_override")
    server.locked = False
    server.locked_by = None
    svc(ctx).record_action(server, "unlock", actor(ctx))
    return ACCEPTED


def rebuild(ctx: Ctx, server: Server, body: Any) -> Reply:
    ctx.authorize({"target": {"project_id": server.project_id}}, rule=f"{P}servers:rebuild")
    if not isinstance(body, dict) or not body.get("imageRef"):
        raise BadRequest("Invalid input for field/attribute rebuild: imageRef is required.")
    service = svc(ctx)
    image = service.image(str(body["imageRef"]).rstrip("/").rsplit("/", 1)[-1], actor(ctx))
    service.transition(server, "rebuild", actor(ctx), (A, S, E), states.REBUILDING)
    server.image_id = image.id
    if "name" in body:
        if not isinstance(body["name"], str) or not body["name"].strip():
            raise BadRequest("Invalid input for field/attribute name.")
        server.name = body["name"]
    if "metadata" in body:
        server.metadata_ = validate_metadata(body["metadata"])
    if "description" in body and ctx.version >= (2, 19):
        server.description = description(body["description"])
    ctx.db.commit()
    ctx.cloud.wake_agents()
    return Reply({"server": basic_view(ctx, server)}, status=202)


def resize(ctx: Ctx, server: Server, body: Any) -> Reply:
    ctx.authorize({"target": {"project_id": server.project_id}}, rule=f"{P}servers:resize")
    ref = body.get("flavorRef") if isinstance(body, dict) else None
    if ref is None:
        raise BadRequest("Invalid input for field/attribute flavorRef.")
    service = svc(ctx)
    try:
        flavor = service.flavor(str(ref).rstrip("/").rsplit("/", 1)[-1], actor(ctx))
    except NotFound:
        raise BadRequest("Unable to locate requested flavor.") from None
    if flavor.id == server.flavor_id:
        raise BadRequest("When resizing, instances must change flavor!")
    if flavor.disk and flavor.disk < int(server.flavor["disk"]):
        raise BadRequest("Resizing to a smaller disk flavor is not allowed.")
    from picocloud.compute import quota

    old = server.flavor
    quota.check(
        ctx.db,
        server.project_id,
        server.user_id,
        {
            "cores": max(0, flavor.vcpus - int(old["vcpus"])),
            "ram": max(0, flavor.ram - int(old["ram"])),
        },
    )
    service.transition(server, "resize", actor(ctx), (A, S), states.RESIZE_PREP)
    server.old_flavor = old
    server.flavor = flavor_snapshot(flavor)
    server.flavor_id = flavor.id
    return ACCEPTED


def confirm_resize(ctx: Ctx, server: Server, body: Any) -> Reply:
    ctx.authorize({"target": {"project_id": server.project_id}}, rule=f"{P}servers:confirm_resize")
    # The host drops the disks it kept for a revert, then the server is ACTIVE (or SHUTOFF).
    svc(ctx).transition(server, "confirmResize", actor(ctx), (R,), states.RESIZE_CONFIRMING)
    return Reply(None, status=204)


def revert_resize(ctx: Ctx, server: Server, body: Any) -> Reply:
    ctx.authorize({"target": {"project_id": server.project_id}}, rule=f"{P}servers:revert_resize")
    svc(ctx).transition(server, "revertResize", actor(ctx), (R,), states.RESIZE_REVERTING)
    return ACCEPTED


def create_image(ctx: Ctx, server: Server, body: Any) -> Reply:
    ctx.authorize({"target": {"project_id": server.project_id}}, rule=f"{P}servers:create_image")
    spec = body if isinstance(body, dict) else {}
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise BadRequest("Invalid input for field/attribute name.")
    meta = validate_metadata(spec.get("metadata", {}))
    svc(ctx).transition(server, "createImage", actor(ctx), (A, S, PA, SU), states.IMAGE_SNAPSHOT)
    image_id = _queue_image(ctx, server, name, {**meta, "image_type": "snapshot"})
    server.task_args = {"image_id": image_id}
    return Reply(None, status=202, headers={"Location": _image_url(ctx, image_id)})


def create_backup(ctx: Ctx, server: Server, body: Any) -> Reply:
    """A snapshot typed "backup"; once it is taken the agent deletes this server's backups of
    the same backup_type beyond the `rotation` newest (rotation 0: all of them, as Nova)."""
    ctx.authorize({"target": {"project_id": server.project_id}}, rule=f"{P}os-create-backup")
    spec = v.obj({"createBackup": body}, "createBackup")
    v.only(spec, ("name", "backup_type", "rotation", "metadata"))
    v.required(spec, "name", "backup_type", "rotation")
    name = v.name("name", spec["name"])
    backup_type = spec["backup_type"]
    if not isinstance(backup_type, str):
        raise v.invalid("backup_type", backup_type, f"{backup_type!r} is not of type 'string'")
    rotation = v.integer("rotation", spec["rotation"])
    meta = v.metadata("metadata", spec.get("metadata", {}))
    if meta:  # before 2.39 the caller's metadata_items quota bounds the image's metadata
        from picocloud.compute import quota

        caller = actor(ctx)
        limit = quota.limits(ctx.db, caller.project_id, caller.user_id)["metadata_items"]
        if limit != quota.UNLIMITED and len(meta) > limit:
            raise Forbidden("Image metadata limit exceeded")
    # As Nova, a lock does not stop a backup: locks guard against changing the server.
    svc(ctx).transition(server, "createBackup", actor(ctx), (A, S, PA, SU), states.IMAGE_BACKUP,
                        check_lock=False)
    image_id = _queue_image(
        ctx, server, name, {**meta, "image_type": "backup", "backup_type": backup_type}
    )
    server.task_args = {"image_id": image_id, "backup_type": backup_type, "rotation": rotation}
    # Nova names the image only when it will survive the rotation.
    headers = {"Location": _image_url(ctx, image_id)} if rotation > 0 else {}
    return Reply(None, status=202, headers=headers)


def _queue_image(ctx: Ctx, server: Server, name: str, properties: dict[str, Any]) -> str:
    """Add the queued image a snapshot of `server` will fill; its id. The properties Nova
    sets win over the caller's metadata (rotation finds backups by them)."""
    from picocloud.image.service import Caller, ImageService

    owner = Caller(server.project_id, is_admin=False)  # the server's project owns the image
    image = ImageService(ctx.db, ctx.cloud.settings).create({
        **properties,
        "instance_uuid": server.id,
        "base_image_ref": server.image_id,
        "user_id": actor(ctx).user_id,
        "name": name,
        "visibility": "private",
        "disk_format": "qcow2",
        "container_format": "bare",
        "min_disk": int(server.flavor["disk"]),
    }, owner)
    return image.id


def _image_url(ctx: Ctx, image_id: str) -> str:
    return f"{ctx.cloud.settings.base_url}/image/v2/images/{image_id}"


def console_output(ctx: Ctx, server: Server, body: Any) -> dict[str, Any]:
    ctx.authorize({"target": {"project_id": server.project_id}}, rule=f"{P}os-console-output")
    spec = body if isinstance(body, dict) else {}
    length = spec.get("length")
    if length is not None:
        try:
            length = int(length)
        except (TypeError, ValueError):
            raise BadRequest("Invalid input for field/attribute length.") from None
        if length < -1:
            raise BadRequest("Invalid input for field/attribute length.")
        if length == -1:
            length = None
    if server.vm_state == states.BUILDING or server.host is None:
        raise Conflict(f"Instance {server.id} is not ready: no console yet.")
    output = ctx.cloud.console_log(server, None)
    if length is not None:  # as Nova: the last `length` pieces of the text split on newlines
        output = "\n".join(output.split("\n")[-length:]) if length else ""
    return {"output": output}


def force_delete(ctx: Ctx, server: Server, body: Any) -> Reply:
    ctx.authorize(
        {"target": {"project_id": server.project_id}}, rule=f"{P}os-deferred-delete:force"
    )
    svc(ctx).delete(server, actor(ctx))
    return ACCEPTED


def restore(ctx: Ctx, server: Server, body: Any) -> Reply:
    """Servers are deleted at once (no soft delete), so there is never one to restore."""
    ctx.authorize({"target": {"project_id": server.project_id}}, rule=f"{P}servers:delete")
    raise Conflict(f"Cannot 'restore' instance {server.id} while it is in vm_state "
                   f"{server.vm_state}")


def reset_state(ctx: Ctx, server: Server, body: Any) -> Reply:
    ctx.authorize(
        {"target": {"project_id": server.project_id}}, rule=f"{P}os-admin-actions:reset_state"
    )
    wanted = body.get("state") if isinstance(body, dict) else None
    if wanted not in ("active", "error"):
        raise BadRequest("Invalid input for field/attribute state: active or error.")
    server.vm_state = wanted
    server.task_state, server.task_args = None, None
    server.updated_at = utcnow()
    return ACCEPTED


Handler = Callable[[Ctx, Server, Any], Any]
HANDLERS: dict[str, Handler] = {
    "reboot": reboot,
    "lock": lock,
    "unlock": unlock,
    "rebuild": rebuild,
    "resize": resize,
    "confirmResize": confirm_resize,
    "revertResize": revert_resize,
    "createImage": create_image,
    "createBackup": create_backup,
    "os-getConsoleOutput": console_output,
    "forceDelete": force_delete,
    "os-resetState": reset_state,
    "restore": restore,
}


def action(ctx: Ctx) -> Any:
    body = ctx.body
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest("There is no such action: the body must name exactly one action.")
    name, payload = next(iter(body.items()))
    server = svc(ctx).get(ctx.params["server_id"], actor(ctx))
    if name in SIMPLE:
        result: Any = _simple(ctx, server, name, payload)
    elif name in HANDLERS:
        result = HANDLERS[name](ctx, server, payload)
    else:
        raise BadRequest(f"There is no such action: {name}")
    ctx.db.commit()
    ctx.cloud.wake_agents()
    return result


ROUTES = [Route("POST", "/v2.1/servers/{server_id}/action", action, f"{P}servers:show")]
