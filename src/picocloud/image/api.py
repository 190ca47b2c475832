"""The image API (Glance v2), mounted at /image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from picocloud.errors import BadRequest, Forbidden, UnsupportedMediaType
from picocloud.http import Ctx, Reply, Route, Service
from picocloud.image import (
    data,
    imports,
    listing,
    location_api,
    locations,
    metadefs,
    schemas,
    tasks,
)
from picocloud.image.access import caller as _caller
from picocloud.image.access import target as _target
from picocloud.image.errors import image_not_found, render
from picocloud.image.models import Image, ImageLocation, ImageMember
from picocloud.image.service import ImageService

NO_CONTENT = Reply(None, status=204)
PATCH_TYPES = (
    "application/openstack-images-v2.1-json-patch",
    "application/openstack-images-v2.0-json-patch",
)
INSPECTED_CONTAINERS = ("bare", "ami", "aki", "ari")
CHUNK = 1 << 20
# v2.8-v2.10: multiple stores, import to several stores and copy-image, delete from a store;
# 2.12 an image's tasks, 2.13 usage, 2.15 store details, 2.17 the location API. Not 2.14 and
# 2.16 (the image cache API): like Glance without an image cache, those are not listed.
VERSIONS = [("v2.17", "CURRENT"), *((f"v2.{n}", "SUPPORTED")
                                    for n in (15, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0))]
DATA_STATUSES = ("active", "deactivated", "importing")  # statuses whose data may be in stores



def _svc(ctx: Ctx) -> ImageService:
    return ImageService(ctx.db, ctx.cloud.settings)


def _iso(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[no-any-return]


def image_json(image: Image, stores: list[str] | None = None) -> dict[str, Any]:
    """The image as Glance shows it; `stores` (ids holding its data) only when there are."""
    body = {
        **image.properties,
        "id": image.id,
        "name": image.name,
        "status": image.status,
        "visibility": image.visibility,
        "protected": image.protected,
        "os_hidden": image.os_hidden,
        "owner": image.owner,
        "checksum": image.checksum,
        "os_hash_algo": image.os_hash_algo,
        "os_hash_value": image.os_hash_value,
        "size": image.size,
        "virtual_size": image.virtual_size,
        "min_disk": image.min_disk,
        "min_ram": image.min_ram,
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "tags": list(image.tags),
        "created_at": _iso(image.created_at),
        "updated_at": _iso(image.updated_at),
        "self": f"/v2/images/{image.id}",
        "file": f"/v2/images/{image.id}/file",
        "schema": "/v2/schemas/image",
    }
    if stores:
        body["stores"] = ",".join(stores)
    return body


def _show(ctx: Ctx, image: Image, web: Sequence[ImageLocation] | None = None) -> dict[str, Any]:
    """The image with the stores holding its data and, where the caller may see them, its
    locations; `web`: its registered URLs, when the caller already read them."""
    held = ctx.cloud.images.holding(image.id) if image.status in DATA_STATUSES else []
    if web is None:
        web = locations.external(ctx.db, image.id)
    body = image_json(image, [*held, locations.WEB_STORE] if web else held)
    if locations.enabled(ctx.cloud) and ctx.allowed("get_image_location", _target(image)):
        body["locations"] = locations.locations_json(ctx.cloud, image.id, held, web)
    return body


def member_json(m: ImageMember) -> dict[str, Any]:
    return {
        "image_id": m.image_id,
        "member_id": m.member_id,
        "status": m.status,
        "created_at": _iso(m.created_at),
        "updated_at": _iso(m.updated_at),
        "schema": "/v2/schemas/member",
    }



# -- versions and schemas -----------------------------------------------------------------
def versions(ctx: Ctx) -> Reply:
    href = f"{ctx.cloud.settings.base_url}/image/v2/"
    body = [{"id": v, "status": s, "links": [{"rel": "self", "href": href}]} for v, s in VERSIONS]
    return Reply({"versions": body}, status=300)


def get_schema(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    name = ctx.params["name"]
    if name not in schemas.SCHEMAS:
        raise BadRequest(f"Unknown schema {name}")
    return schemas.SCHEMAS[name]


def create_task(ctx: Ctx) -> Reply:
    """Tasks import from URLs; picocloud fetches nothing from the network, so it refuses."""
    ctx.authorize()
    raise BadRequest("Import tasks from a URL are not supported: upload the data with "
                     "PUT /v2/images/{id}/file.")


# -- images -------------------------------------------------------------------------------
def create_image(ctx: Ctx) -> Reply:
    if not isinstance(ctx.body, dict):
        raise BadRequest("The request body must be a JSON object")
    owner = ctx.token.project_id
    ctx.authorize({"target": {"owner": owner}})
    caller = _caller(ctx)
    if ctx.body.get("visibility") == "community":
        ctx.authorize({"target": {"owner": owner}}, rule="communitize_image")
    image = _svc(ctx).create(ctx.body, caller)
    return Reply(_show(ctx, image), status=201, headers={"Location": f"/v2/images/{image.id}"})


def list_images(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    visibility = ctx.q("visibility")
    if visibility is not None and visibility not in ("public", "private", "shared",
                                                     "community", "all"):
        raise BadRequest(f"Invalid visibility value: {visibility}")
    member_status = ctx.q("member_status") or "accepted"
    if member_status not in ("pending", "accepted", "rejected", "all"):
        raise BadRequest(f"Invalid status value: {member_status}")
    rows = _svc(ctx).list(_caller(ctx), visibility, member_status)
    rows = listing.filter_images(rows, ctx.query)
    rows = listing.sort_images(rows, listing.sort_spec(ctx.query))
    shown, more = listing.page(rows, ctx.query)
    web = locations.external_of(ctx.db, [i.id for i in shown])
    body: dict[str, Any] = {
        "images": [_show(ctx, i, web[i.id]) for i in shown],
        "first": "/v2/images",
        "schema": "/v2/schemas/images",
    }
    if more and shown:
        params = [(k, v) for k, v in ctx.query.multi_items() if k != "marker"]
        params.append(("marker", shown[-1].id))
        body["next"] = f"/v2/images?{urlencode(params)}"
    return body


def get_image(ctx: Ctx) -> dict[str, Any]:
    image = _svc(ctx).get(ctx.params["image_id"], _caller(ctx))
    ctx.authorize(_target(image))
    return _show(ctx, image)


def update_image(ctx: Ctx) -> dict[str, Any]:
    content_type = ctx.request.headers.get("content-type", "").split(";")[0].strip()
    if content_type not in PATCH_TYPES:
        raise UnsupportedMediaType(
            f"Unsupported Content-Type {content_type!r}: use {PATCH_TYPES[0]}",
            headers={"Accept-Patch": ", ".join(PATCH_TYPES)},
        )
    svc = _svc(ctx)
    caller = _caller(ctx)
    image = svc.get(ctx.params["image_id"], caller)
    ctx.authorize(_target(image))
    ops = ctx.body if isinstance(ctx.body, list) else None
    for op in ops or []:
        if isinstance(op, dict) and op.get("path") == "/visibility":
            if op.get("value") == "community":
                ctx.authorize(_target(image), rule="communitize_image")
    on_locations = locations.LocationPatch(
        ctx.cloud, ctx.db, image, ctx.allowed("delete_image_location", _target(image)))
    return _show(ctx, svc.patch(image, ctx.body, caller, on_locations))


def delete_image(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    image = svc.get(ctx.params["image_id"], _caller(ctx))
    ctx.authorize(_target(image))
    image_id = image.id
    svc.delete(image)
    ctx.db.commit()
    ctx.cloud.images.delete(image_id)
    return NO_CONTENT


def _action(status: str) -> Any:
    def handler(ctx: Ctx) -> Reply:
        svc = _svc(ctx)
        image = svc.get(ctx.params["image_id"], _caller(ctx))
        ctx.authorize(_target(image))
        svc.set_status(image, status)
        return NO_CONTENT

    return handler


def add_tag(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    image = svc.get(ctx.params["image_id"], _caller(ctx))
    ctx.authorize(_target(image))
    svc.add_tag(image, ctx.params["tag"])
    return NO_CONTENT


def delete_tag(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    image = svc.get(ctx.params["image_id"], _caller(ctx))
    ctx.authorize(_target(image))
    if not svc.remove_tag(image, ctx.params["tag"]):
        raise image_not_found(f"{image.id} tag {ctx.params['tag']}")
    return NO_CONTENT


# -- members ------------------------------------------------------------------------------
def _member_target(image: Image, member_id: str | None) -> dict[str, Any]:
    return _target(image, member_id=member_id)


def add_member(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    image = svc.get(ctx.params["image_id"], _caller(ctx))
    ctx.authorize(_target(image))
    body = ctx.body if isinstance(ctx.body, dict) else {}
    return member_json(svc.add_member(image, body.get("member")))


def list_members(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    caller = _caller(ctx)
    image = svc.get(ctx.params["image_id"], caller)
    ctx.authorize(_target(image))
    if image.visibility != "shared":
        raise Forbidden(f"Image {image.id} is not shared: only shared images have members.")
    members = svc.members(image)
    if not caller.is_admin and image.owner != caller.project_id:
        members = [m for m in members if m.member_id == caller.project_id]
    return {"members": [member_json(m) for m in members], "schema": "/v2/schemas/members"}


def _find_member(ctx: Ctx, svc: ImageService) -> tuple[Image, ImageMember]:
    caller = _caller(ctx)
    image = svc.get(ctx.params["image_id"], caller)
    member_id = ctx.params["member_id"]
    ctx.authorize(_member_target(image, member_id))
    member = svc.member(image.id, member_id)
    allowed = caller.is_admin or caller.project_id in (image.owner, member_id)
    if member is None or not allowed:
        raise image_not_found(f"{image.id} member {member_id}")
    return image, member


def get_member(ctx: Ctx) -> dict[str, Any]:
    return member_json(_find_member(ctx, _svc(ctx))[1])


def update_member(ctx: Ctx) -> dict[str, Any]:
    svc = _svc(ctx)
    _image, member = _find_member(ctx, svc)
    body = ctx.body if isinstance(ctx.body, dict) else {}
    svc.set_member_status(member, body.get("status"))
    return member_json(member)


def delete_member(ctx: Ctx) -> Reply:
    svc = _svc(ctx)
    image, member = _find_member(ctx, svc)
    caller = _caller(ctx)
    if not caller.is_admin and caller.project_id != image.owner:
        raise Forbidden("Only the image owner can remove a member.")
    ctx.db.delete(member)
    return NO_CONTENT


ROUTES = [
    Route("GET", "", versions, auth=False),
    Route("GET", "/", versions, auth=False),
    Route("GET", "/versions", versions, auth=False),
    Route("GET", "/v2", versions, auth=False),
    Route("GET", "/v2/", versions, auth=False),
    Route("GET", "/v2/schemas/{name}", get_schema, "get_image_schema"),
    Route("POST", "/v2/tasks", create_task, "add_task"),
    Route("POST", "/v2/images", create_image, "add_image"),
    Route("GET", "/v2/images", list_images, "get_images"),
    Route("GET", "/v2/images/{image_id}", get_image, "get_image"),
    Route("PATCH", "/v2/images/{image_id}", update_image, "modify_image"),
    Route("DELETE", "/v2/images/{image_id}", delete_image, "delete_image"),
    *data.ROUTES,
    *imports.ROUTES,
    *location_api.ROUTES,
    *tasks.ROUTES,
    Route("POST", "/v2/images/{image_id}/actions/deactivate", _action("deactivated"),
          "deactivate"),
    Route("POST", "/v2/images/{image_id}/actions/reactivate", _action("active"), "reactivate"),
    Route("PUT", "/v2/images/{image_id}/tags/{tag}", add_tag, "modify_image"),
    Route("DELETE", "/v2/images/{image_id}/tags/{tag}", delete_tag, "modify_image"),
    Route("POST", "/v2/images/{image_id}/members", add_member, "add_member"),
    Route("GET", "/v2/images/{image_id}/members", list_members, "get_members"),
    Route("GET", "/v2/images/{image_id}/members/{member_id}", get_member, "get_member"),
    Route("PUT", "/v2/images/{image_id}/members/{member_id}", update_member, "modify_member"),
    Route("DELETE", "/v2/images/{image_id}/members/{member_id}", delete_member,
          "delete_member"),
]


def service() -> Service:
    return Service("/image", [*metadefs.ROUTES, *ROUTES], render)
