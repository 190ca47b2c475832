"""Image data: streamed upload (to a chosen store), staging for imports, ranged download,
and removal from one store.

Bytes are never held whole in memory: the request body is copied in 1 MiB batches to a
staged file while size and checksums are computed; the file is inspected (its real format,
backing files, virtual size) before it is published; a refused or failed upload leaves
nothing behind. Imports (glance-direct, web-download, copy-image) are in `imports`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, Response, StreamingResponse

from picocloud.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RequestTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from picocloud.http import Ctx, Reply, Route, StreamCtx
from picocloud.image import locations
from picocloud.image.access import caller as _caller
from picocloud.image.access import target as _target
from picocloud.image.datastore import Upload
from picocloud.image.inspect import UnsafeImage, check_upload
from picocloud.image.models import Image
from picocloud.image.service import ImageService, utcnow
from picocloud.image.stores import UnknownStore
from picocloud.image.webfetch import FetchFailed
from picocloud.settings import Settings

CHUNK = 1 << 20
INSPECTED_CONTAINERS = ("bare", "ami", "aki", "ari")
STORE_HEADER = "x-image-meta-store"


class ImageFile(FileResponse):
    chunk_size = CHUNK




def inspect(path: Path, image: Image | tuple[str, str], settings: Settings) -> int | None:
    """The virtual size of acceptable data; 400 naming what is wrong otherwise."""
    disk_format, container_format = (
        image if isinstance(image, tuple) else (image.disk_format, image.container_format)
    )
    if container_format not in INSPECTED_CONTAINERS:
        return None
    try:
        return check_upload(path, disk_format or "", settings.image_max_virtual_size).virtual_size
    except UnsafeImage as exc:
        raise BadRequest(f"Image data refused: {exc}") from None


def _set_status(db: Session, image_id: str, status: str) -> None:
    image = db.get(Image, image_id)
    if image is not None:
        image.status = status
        image.updated_at = utcnow()


def publish(image: Image, upload: Upload, virtual_size: int | None) -> None:
    image.size = upload.size
    image.checksum = upload.md5
    image.os_hash_algo = "sha512"
    image.os_hash_value = upload.sha512
    image.virtual_size = virtual_size
    image.status = "active"
    image.updated_at = utcnow()


async def _receive(ctx: StreamCtx, upload: Upload, budget: int) -> None:
    """Copy the request body into `upload` in 1 MiB batches, within `budget` bytes."""
    content_type = ctx.request.headers.get("content-type", "application/octet-stream")
    if content_type.split(";")[0].strip() != "application/octet-stream":
        raise UnsupportedMediaType("Image data must be sent as application/octet-stream.")
    buffer = bytearray()
    async for chunk in ctx.request.stream():
        buffer += chunk
        if upload.size + len(buffer) > budget:
            raise RequestTooLarge("Denying attempt to upload image: it is larger than the "
                                  "size cap or the project's remaining image quota.")
        if len(buffer) >= CHUNK:
            await anyio.to_thread.run_sync(upload.write, bytes(buffer))
            buffer.clear()
    if buffer:
        await anyio.to_thread.run_sync(upload.write, bytes(buffer))


def _begin(ctx: StreamCtx, next_status: str) -> Any:
    """queued -> `next_status` under a row lock; returns the image's formats and byte budget."""
    settings = ctx.cloud.settings
    image_id = ctx.params["image_id"]

    def start(db: Session) -> tuple[str, str, int]:
        svc = ImageService(db, settings)
        image = svc.get(image_id, _caller(ctx))
        db.refresh(image, with_for_update=True)
        ctx.authorize(_target(image))
        svc.begin_upload(image, next_status)
        return image.disk_format or "", image.container_format or "", svc.budget(image)

    return start


async def upload(ctx: StreamCtx) -> Response:
    """`PUT /v2/images/{id}/file`: queued -> saving -> active (or back to queued / killed);
    into the store named by X-Image-Meta-Store, else the default store."""
    image_id = ctx.params["image_id"]
    store_id = ctx.request.headers.get(STORE_HEADER) or None
    try:
        ctx.cloud.images.get(store_id or ctx.cloud.images.default)
    except UnknownStore as exc:
        raise BadRequest(str(exc)) from None
    disk_format, container_format, budget = await ctx.call(_begin(ctx, "saving"))
    staged = ctx.cloud.images.begin(image_id, store_id)
    try:
        await _receive(ctx, staged, budget)
        virtual_size = await anyio.to_thread.run_sync(
            inspect, staged.staged_path, (disk_format, container_format), ctx.cloud.settings
        )
        await anyio.to_thread.run_sync(staged.commit)
    except BaseException as exc:
        await _fail(ctx, staged, exc)
        raise

    def finish(db: Session) -> None:
        image = db.get(Image, image_id)
        if image is None:  # deleted while uploading
            ctx.cloud.images.delete(image_id)
        else:
            publish(image, staged, virtual_size)

    await ctx.call(finish)
    return Response(status_code=204)


async def _fail(ctx: StreamCtx, staged: Upload, exc: BaseException) -> None:
    """Remove the partial data; a refusal returns the image to queued, anything else kills it."""
    await anyio.to_thread.run_sync(staged.discard)
    status = "queued" if isinstance(exc, ApiError) else "killed"
    await ctx.call(lambda db: _set_status(db, ctx.params["image_id"], status))
    if isinstance(exc, ClientDisconnect):
        raise BadRequest("The client went away before the image data was complete.") from None


async def stage(ctx: StreamCtx) -> Response:
    """`PUT /v2/images/{id}/stage`: queued -> uploading, data kept aside for an import."""
    _disk, _container, budget = await ctx.call(_begin(ctx, "uploading"))
    staged = ctx.cloud.images.begin_staging(ctx.params["image_id"])
    try:
        await _receive(ctx, staged, budget)
        await anyio.to_thread.run_sync(staged.commit)
    except BaseException as exc:
        await _fail(ctx, staged, exc)
        raise
    return Response(status_code=204)


def download(ctx: Ctx) -> Response:
    svc = ImageService(ctx.db, ctx.cloud.settings)
    caller = _caller(ctx)
    image = svc.get(ctx.params["image_id"], caller)
    ctx.authorize(_target(image))
    if image.status == "deactivated" and not caller.is_admin:
        raise Forbidden("The requested image has been deactivated. Image data download is "
                        "forbidden.")
    if image.status not in ("active", "deactivated"):
        return Response(status_code=204)
    headers = {"Content-MD5": image.checksum} if image.checksum else {}
    path = ctx.cloud.images.path(image.id)  # the default store's copy, else any
    if path is not None:
        return ImageFile(path, media_type="application/octet-stream", headers=headers)
    web = locations.urls(ctx.db, image.id)
    if not web:
        return Response(status_code=204)
    try:  # the first location that answers; its bytes stream through
        chunks = locations.open_first(ctx.cloud, web)
    except FetchFailed as exc:
        raise ServiceUnavailable(f"The image's data can't be read: {exc}") from None
    if image.size is not None:
        headers["Content-Length"] = str(image.size)
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


def delete_from_store(ctx: Ctx) -> Reply:
    """`DELETE /v2/stores/{store_id}/{image_id}`: drop one copy of an active image, never
    the last one (delete the image for that)."""
    images = ctx.cloud.images
    store_id = ctx.params["store_id"]
    image = ImageService(ctx.db, ctx.cloud.settings).get(ctx.params["image_id"], _caller(ctx))
    ctx.authorize(_target(image))
    try:
        images.get(store_id)
    except UnknownStore as exc:
        raise Conflict(str(exc)) from None
    ctx.db.refresh(image, with_for_update=True)
    if image.status != "active":
        raise Conflict(f"Image {image.id} is {image.status}: data can only be removed from a "
                       "store while the image is active.")
    image.updated_at = utcnow()
    ctx.db.flush()  # holds the image row (on SQLite, the write lock) while copies are counted
    held = images.holding(image.id)
    if store_id not in held:
        raise NotFound(f"Image {image.id} has no data in store {store_id}.")
    if len(held) == 1:
        raise Conflict(f"Store {store_id} holds the only copy of image {image.id}; delete the "
                       "image instead.")
    images.delete(image.id, store_id)
    return Reply(None, status=204)


ROUTES = [
    Route("PUT", "/v2/images/{image_id}/file", upload, "upload_image", stream=True),
    Route("GET", "/v2/images/{image_id}/file", download, "download_image"),
    Route("PUT", "/v2/images/{image_id}/stage", stage, "upload_image", stream=True),
    Route("DELETE", "/v2/stores/{store_id}/{image_id}", delete_from_store,
          "delete_image_location"),
]
