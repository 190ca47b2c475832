"""The location API of Glance 2.17: `POST /v2/images/{id}/locations` registers a URL as a
queued image's data after fetching, inspecting and hashing its bytes in a task
(`location_import`); `GET /v2/images/{id}/locations` lists the locations for services.

Both need `image_locations` on; URLs are checked as everywhere else (see `locations`).
"""

from __future__ import annotations

from typing import Any

from picocloud.errors import BadRequest, Conflict, Forbidden
from picocloud.http import Ctx, Reply, Route
from picocloud.image import locations
from picocloud.image.access import caller as _caller
from picocloud.image.access import target as _target
from picocloud.image.imports import LOCATION, STALE, TASK, ImportJob, start
from picocloud.image.service import ImageService, utcnow
from picocloud.image.tasks import new_task

ALGOS = ("sha1", "sha256", "sha512", "md5")  # what the 2.17 validation data may name


def _validation(body: dict[str, Any]) -> tuple[str, str] | None:
    data = body.get("validation_data")
    if data is None or data == {}:
        return None
    if not isinstance(data, dict) or set(data) != {"os_hash_algo", "os_hash_value"}:
        raise BadRequest("Invalid validation_data: it holds os_hash_algo and os_hash_value, "
                         "both, and nothing else.")
    checked = locations.check_validation(data, ALGOS)
    return checked["os_hash_algo"], checked["os_hash_value"]


def add_location(ctx: Ctx) -> Reply:
    settings = ctx.cloud.settings
    svc = ImageService(ctx.db, settings)
    image = svc.get(ctx.params["image_id"], _caller(ctx))
    ctx.authorize(_target(image))
    if not locations.enabled(ctx.cloud):
        raise Forbidden("Adding image locations is turned off on this cloud "
                        "(image_locations).")
    body = ctx.body if isinstance(ctx.body, dict) else None
    if body is None or set(body) - {"url", "validation_data"}:
        raise BadRequest("Expected an object with url and optionally validation_data.")
    validation = _validation(body)
    url = locations.check_url(ctx.cloud, body.get("url"))
    ctx.db.refresh(image, with_for_update=True)
    if image.status != "queued":
        raise Conflict(f"Image {image.id} is {image.status}: a location can only be added to "
                       "a queued image.")
    if image.properties.get(TASK) and utcnow() - image.updated_at < STALE:
        raise Conflict(f"Image {image.id} has a task running; wait for it to finish.")
    if image.disk_format is None or image.container_format is None:
        raise BadRequest("Properties disk_format, container_format must be set prior to "
                         "adding a location.")
    task = new_task(ctx, image, "location_import", {
        "image_id": image.id, "loc_url": url,
        "validation_data": body.get("validation_data") or {}})
    image.properties = {**image.properties, TASK: task.id}
    image.status = "importing"
    image.updated_at = utcnow()
    ctx.db.commit()
    start(ctx.cloud, ImportJob(image.id, task.id, LOCATION, (), True, image.disk_format,
                               image.container_format, url, svc.budget(image),
                               validation=validation))
    return Reply(None, status=202)


def list_locations(ctx: Ctx) -> Any:
    image = ImageService(ctx.db, ctx.cloud.settings).get(ctx.params["image_id"], _caller(ctx))
    ctx.authorize(_target(image))
    return Reply(locations.locations_json(ctx.cloud, image.id, None,
                                          locations.external(ctx.db, image.id)))


ROUTES = [
    Route("POST", "/v2/images/{image_id}/locations", add_location, "add_image_location"),
    Route("GET", "/v2/images/{image_id}/locations", list_locations, "fetch_image_location"),
]
