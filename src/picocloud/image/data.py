"""Image data: streamed upload, staging + glance-direct import, ranged download.

Bytes are never held whole in memory: the request body is copied in 1 MiB batches to a
staged file while size and checksums are computed; the file is inspected (its real format,
backing files, virtual size) before it is published; a refused or failed upload leaves
nothing behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, Response

from picocloud.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    RequestTooLarge,
    UnsupportedMediaType,
)
from picocloud.http import BaseCtx, Ctx, Reply, Route, StreamCtx
from picocloud.image.datastore import FileUpload
from picocloud.image.inspect import UnsafeImage, check_upload
from picocloud.image.models import Image
from picocloud.image.service import Caller, ImageService, utcnow
from picocloud.settings import Settings

CHUNK = 1 << 20
INSPECTED_CONTAINERS = ("bare", "ami", "aki", "ari")
IMPORT_METHODS = ["glance-direct"]


class ImageFile(FileResponse):
    chunk_size = CHUNK


def _caller(ctx: BaseCtx) -> Caller:
    return Caller(ctx.token.project_id, ctx.allowed("context_is_admin"))


def _target(image: Image) -> dict[str, Any]:
    return {"target": {"owner": image.owner, "visibility": image.visibility}}


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


def _publish(image: Image, upload: FileUpload, virtual_size: int | None) -> None:
    image.size = upload.size
    image.checksum = upload.md5
    image.os_hash_algo = "sha512"
    image.os_hash_value = upload.sha512
    image.virtual_size = virtual_size
    image.status = "active"
    image.updated_at = utcnow()


async def _receive(ctx: StreamCtx, upload: FileUpload, budget: int) -> None:
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
        budget = settings.image_size_cap
        if settings.image_quota_bytes:
            budget = min(budget, settings.image_quota_bytes - svc.used_bytes(image.owner))
        return image.disk_format or "", image.container_format or "", budget

    return start


async def upload(ctx: StreamCtx) -> Response:
    """`PUT /v2/images/{id}/file`: queued -> saving -> active (or back to queued / killed)."""
    image_id = ctx.params["image_id"]
    disk_format, container_format, budget = await ctx.call(_begin(ctx, "saving"))
    staged = ctx.cloud.images.begin(image_id)
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
            _publish(image, staged, virtual_size)

    await ctx.call(finish)
    return Response(status_code=204)


async def _fail(ctx: StreamCtx, staged: FileUpload, exc: BaseException) -> None:
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


def import_image(ctx: Ctx) -> Reply:
    """`POST /v2/images/{id}/import` with glance-direct: publish the staged data."""
    svc = ImageService(ctx.db, ctx.cloud.settings)
    image = svc.get(ctx.params["image_id"], _caller(ctx))
    ctx.authorize(_target(image))
    body = ctx.body if isinstance(ctx.body, dict) else {}
    method = body.get("method")
    name = method.get("name") if isinstance(method, dict) else None
    if name not in IMPORT_METHODS:
        raise BadRequest(f"Import method {name!r} is not supported; use one of "
                         f"{', '.join(IMPORT_METHODS)}.")
    staged_path = ctx.cloud.images.staging_path(image.id)
    if image.status != "uploading" or staged_path is None:
        raise Conflict(f"Image {image.id} has no staged data to import (status "
                       f"{image.status}): stage it with PUT /v2/images/{{id}}/stage first.")
    upload = ctx.cloud.images.begin(image.id)
    try:
        with staged_path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                upload.write(chunk)
        virtual_size = inspect(upload.staged_path, image, ctx.cloud.settings)
        upload.commit()
    except BaseException:
        upload.discard()
        ctx.cloud.images.drop_staging(image.id)
        image.status = "queued"
        ctx.db.commit()
        raise
    ctx.cloud.images.drop_staging(image.id)
    _publish(image, upload, virtual_size)
    return Reply(None, status=202)


def import_info(ctx: Ctx) -> dict[str, Any]:
    return {"import-methods": {"description": "Import methods available.", "type": "array",
                               "value": IMPORT_METHODS}}


def download(ctx: Ctx) -> Response:
    svc = ImageService(ctx.db, ctx.cloud.settings)
    caller = _caller(ctx)
    image = svc.get(ctx.params["image_id"], caller)
    ctx.authorize(_target(image))
    if image.status == "deactivated" and not caller.is_admin:
        raise Forbidden("The requested image has been deactivated. Image data download is "
                        "forbidden.")
    path = ctx.cloud.images.path(image.id)
    if image.status != "active" or path is None:
        return Response(status_code=204)
    return ImageFile(path, media_type="application/octet-stream",
                     headers={"Content-MD5": image.checksum or ""})


ROUTES = [
    Route("GET", "/v2/info/import", import_info),
    Route("PUT", "/v2/images/{image_id}/file", upload, "upload_image", stream=True),
    Route("GET", "/v2/images/{image_id}/file", download, "download_image"),
    Route("PUT", "/v2/images/{image_id}/stage", stage, "upload_image", stream=True),
    Route("POST", "/v2/images/{image_id}/import", import_image, "upload_image"),
]
