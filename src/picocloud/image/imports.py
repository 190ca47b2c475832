"""Interoperable image import: glance-direct, web-download and copy-image, to one or more stores.

`POST /v2/images/{id}/import` checks the request, marks the image (status `importing`, or
still `active` for copy-image) and answers 202; a worker thread then gets the bytes (the
staged file, a web download into the staging area, or an existing copy), inspects them as an
upload is inspected, and writes them to each target store. Progress is kept where Glance
keeps it, in the image properties `os_glance_importing_to_stores` (stores still to do) and
`os_glance_failed_import` (stores that failed); `os_glance_import_task` names the running
import, the lock that refuses a second one. A failed import leaves the image as it was
(`queued` for glance-direct and web-download; the staged data is dropped) and its data in no
store it was not in before.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from picocloud.errors import ApiError, BadRequest, Conflict
from picocloud.http import Ctx, Reply, Route
from picocloud.image.access import caller as _caller
from picocloud.image.access import target as _target
from picocloud.image.data import CHUNK, inspect, publish
from picocloud.image.datastore import Upload
from picocloud.image.locations import WEB_STORE, add_location
from picocloud.image.models import Image
from picocloud.image.service import ImageService, utcnow
from picocloud.image.stores import ImageStores, UnknownStore
from picocloud.image.tasks import finish_task, new_task
from picocloud.image.webfetch import FetchFailed, HostPolicy, RefusedURI, fetch
from picocloud.settings import Settings

if TYPE_CHECKING:
    from picocloud.cloud import Cloud

log = logging.getLogger("picocloud.image.import")

IMPORT_METHODS = ("glance-direct", "web-download", "copy-image")
LOCATION = "location-import"  # the job of `POST /v2/images/{id}/locations` (2.17)
IMPORTING = "os_glance_importing_to_stores"
FAILED = "os_glance_failed_import"
TASK = "os_glance_import_task"
_SLOTS = threading.BoundedSemaphore(4)  # imports running at once in this process
BEAT = 60.0  # seconds between a worker's touches of the image while it makes progress
STALE = timedelta(minutes=10)  # an import not heard of for this long lost its worker


def available_methods(settings: Settings) -> list[str]:
    web = HostPolicy(settings.image_import_allowed_hosts).enabled
    return [m for m in IMPORT_METHODS if m != "web-download" or web]




def _split(value: Any) -> list[str]:
    return [s for s in str(value or "").split(",") if s]


@dataclass(frozen=True)
class ImportJob:
    """One accepted import, handed to a worker thread."""

    image_id: str
    task_id: str
    method: str
    stores: tuple[str, ...]
    must_succeed: bool
    disk_format: str
    container_format: str
    uri: str = ""
    budget: int = 0  # bytes a web download may bring
    expected_sha512: str | None = None  # copy-image: every copy must match the image
    validation: tuple[str, str] | None = None  # location import: (os_hash_algo, value)


def target_stores(ctx: Ctx, body: dict[str, Any], stores: ImageStores) -> list[str]:
    """The stores an import writes to, as Glance reads them: `all_stores`, `stores`, the
    X-Image-Meta-Store header, else the default store; 400 for a mix or an unknown store."""
    header = ctx.request.headers.get("x-image-meta-store")
    all_stores = body.get("all_stores", False)
    if not isinstance(all_stores, bool):
        raise BadRequest("Invalid input for field 'all_stores': expected a boolean")
    if all_stores:
        if "stores" in body or header:
            raise BadRequest("all_stores can't be used with the x-image-meta-store header or "
                             "the stores parameter")
        return stores.ids
    if "stores" in body:
        if header:
            raise BadRequest("The stores parameter and the x-image-meta-store header can't "
                             "both be specified")
        wanted = body["stores"]
        if (not isinstance(wanted, list) or not wanted
                or not all(isinstance(s, str) for s in wanted)):
            raise BadRequest("Invalid input for field 'stores': expected a list of store ids")
    else:
        wanted = [header or stores.default]
    for store_id in wanted:
        try:
            stores.get(store_id)
        except UnknownStore as exc:
            raise BadRequest(str(exc)) from None
    return list(dict.fromkeys(wanted))


def import_image(ctx: Ctx) -> Reply:
    """`POST /v2/images/{id}/import`: accept the import (202) and start its worker."""
    settings = ctx.cloud.settings
    svc = ImageService(ctx.db, settings)
    image = svc.get(ctx.params["image_id"], _caller(ctx))
    ctx.authorize(_target(image))
    body = ctx.body if isinstance(ctx.body, dict) else {}
    method = body.get("method")
    name = method.get("name") if isinstance(method, dict) else None
    methods = available_methods(settings)
    if name not in methods:
        raise BadRequest(f"Import method {name!r} is not supported; use one of "
                         f"{', '.join(methods)}.")
    assert isinstance(method, dict)
    images = ctx.cloud.images
    stores = target_stores(ctx, body, images)
    must_succeed = body.get("all_stores_must_succeed", True)
    if not isinstance(must_succeed, bool):
        raise BadRequest("Invalid input for field 'all_stores_must_succeed': expected a boolean")
    uri, budget, expected = "", 0, None
    if name == "copy-image":
        ctx.authorize(_target(image), rule="copy_image")
    elif name == "web-download":  # before the row lock: this resolves the host name
        try:
            uri = HostPolicy(settings.image_import_allowed_hosts).check(method.get("uri")).uri
        except RefusedURI as exc:
            raise BadRequest(str(exc)) from None
    ctx.db.refresh(image, with_for_update=True)
    if image.properties.get(TASK) or image.status == "importing":
        if utcnow() - image.updated_at < STALE:
            raise Conflict(f"Image {image.id} is already being imported to "
                           f"{image.properties.get(IMPORTING)}; wait for it to finish.")
        _abandon(ctx.db, images, image)
        ctx.db.commit()  # whatever this request decides next, the dead import is gone
        ctx.db.refresh(image, with_for_update=True)
    if name == "copy-image":
        if image.status != "active":
            raise Conflict(f"Only an active image can be copied (image {image.id} is "
                           f"{image.status}).")
        held = images.holding(image.id)
        if body.get("all_stores"):
            stores = [s for s in stores if s not in held]
        elif present := [s for s in stores if s in held]:
            raise Conflict(f"Image {image.id} is already present in store(s) "
                           f"{', '.join(present)}.")
        expected = image.os_hash_value
    elif name == "glance-direct":
        if image.status != "uploading" or images.staging_path(image.id) is None:
            raise Conflict(f"Image {image.id} has no staged data to import (status "
                           f"{image.status}): stage it with PUT /v2/images/{{id}}/stage first.")
    else:
        if image.status != "queued":
            raise Conflict(f"web-download imports into a queued image; image {image.id} is "
                           f"{image.status}.")
        if image.disk_format is None or image.container_format is None:
            raise BadRequest("Properties disk_format, container_format must be set prior to "
                             "importing data.")
        budget = svc.budget(image)
    task_id = new_task(ctx, image, "api_image_import", {
        "image_id": image.id, "import_req": body, "backend": stores}).id if stores else ""
    props = {**image.properties, IMPORTING: ",".join(stores), FAILED: ",".join(
        s for s in _split(image.properties.get(FAILED)) if s not in stores)}
    props.pop(TASK, None)
    image.properties = {**props, TASK: task_id} if task_id else props
    if name != "copy-image":
        image.status = "importing"
    image.updated_at = utcnow()
    ctx.db.commit()
    if task_id:
        start(ctx.cloud, ImportJob(image.id, task_id, name, tuple(stores), must_succeed,
                                   image.disk_format or "", image.container_format or "",
                                   uri, budget, expected))
    return Reply(None, status=202)


def _abandon(db: Session, images: ImageStores, image: Image) -> None:
    """Forget an import whose worker stopped (picocloud was stopped): as if it had failed."""
    log.warning("image %s: import to %s abandoned (no progress since %s)", image.id,
                image.properties.get(IMPORTING), image.updated_at)
    lost = _split(image.properties.get(IMPORTING))
    props = {**image.properties, IMPORTING: "", FAILED: ",".join(
        dict.fromkeys([*_split(image.properties.get(FAILED)), *lost]))}
    finish_task(db, str(props.pop(TASK, "")), "abandoned: picocloud stopped during the import")
    image.properties = props
    if image.status == "importing":
        image.status = "queued"
        images.delete(image.id)  # its staged data and any copy it wrote


def info_import(ctx: Ctx) -> dict[str, Any]:
    return {"import-methods": {"description": "Import methods available.", "type": "array",
                               "value": available_methods(ctx.cloud.settings)}}


def info_stores(ctx: Ctx) -> dict[str, Any]:
    return {"stores": _stores(ctx, detail=False)}


def info_stores_detail(ctx: Ctx) -> dict[str, Any]:
    """`GET /v2/info/stores/detail` (2.15, admins): each store's type and where it is."""
    ctx.authorize()
    return {"stores": _stores(ctx, detail=True)}


def _stores(ctx: Ctx, detail: bool) -> list[dict[str, Any]]:
    images = ctx.cloud.images
    stores = []
    for info in images.infos:
        entry: dict[str, Any] = {"id": info.id, "description": info.description}
        if info.id == images.default:
            entry["default"] = True
        if detail:
            root = getattr(info.store, "root", None)
            entry.update(type="file", weight=0,
                         properties={"data_dir": str(root)} if root else {})
        stores.append(entry)
    if ctx.cloud.settings.image_locations:  # the URLs owners register (Glance's http store)
        web: dict[str, Any] = {"id": WEB_STORE, "description": "Image data at http(s) URLs",
                               "read-only": "true"}
        if detail:
            web.update(type="http", weight=0, properties={})
        stores.append(web)
    return stores


def info_usage(ctx: Ctx) -> dict[str, Any]:
    """`GET /v2/info/usage` (2.13): the caller's project's image usage against its limits
    (MiB for sizes; -1 means unlimited)."""
    settings = ctx.cloud.settings
    project = ctx.token.project_id
    rows = ctx.db.scalars(select(Image).where(Image.owner == project)).all()
    mib = 1 << 20
    active = sum(i.size or 0 for i in rows)
    staged = sum(i.size or 0 for i in rows if i.status in ("uploading", "importing"))
    quota = settings.image_quota_bytes // mib if settings.image_quota_bytes else -1
    return {"usage": {
        "image_size_total": {"limit": quota, "usage": -(-active // mib)},
        "image_stage_total": {"limit": -1, "usage": -(-staged // mib)},
        "image_count_total": {"limit": -1, "usage": len(rows)},
        "image_count_uploading": {"limit": -1, "usage": sum(
            1 for i in rows if i.status in ("saving", "uploading", "importing"))},
    }}


# -- the worker ---------------------------------------------------------------------------
def start(cloud: Cloud, job: ImportJob) -> threading.Thread:
    thread = threading.Thread(target=run, args=(cloud, job), daemon=True,
                              name=f"image-import-{job.image_id[:8]}")
    thread.start()
    return thread


def _mine(db: Session, job: ImportJob) -> Image | None:
    """The image, locked, while `job` is still its import (not deleted, not abandoned)."""
    image = db.get(Image, job.image_id)
    if image is None:
        return None
    db.refresh(image, with_for_update=True)
    return image if image.properties.get(TASK) == job.task_id else None


def _progress(cloud: Cloud, job: ImportJob, store_id: str, ok: bool) -> None:
    """One store done: out of the importing list, and into the failed list if it failed."""

    def update(db: Session) -> None:
        image = _mine(db, job)
        if image is None:
            return
        props = dict(image.properties)
        props[IMPORTING] = ",".join(s for s in _split(props.get(IMPORTING)) if s != store_id)
        if not ok:
            props[FAILED] = ",".join(dict.fromkeys([*_split(props.get(FAILED)), store_id]))
        image.properties = props
        image.updated_at = utcnow()

    cloud.transaction(update)


class Heartbeat:
    """Touches the image's updated_at at most every BEAT seconds while the import waits for
    a slot or bytes flow, which tells a slow import from one whose worker is gone (STALE)."""

    def __init__(self, cloud: Cloud, job: ImportJob) -> None:
        self.cloud = cloud
        self.job = job
        self.due = time.monotonic() + BEAT

    def __call__(self, now: bool = False) -> None:
        if now or time.monotonic() >= self.due:
            self.due = time.monotonic() + BEAT
            self.cloud.transaction(self._touch)

    def writer(self, upload: Upload) -> Callable[[bytes], None]:
        def write(chunk: bytes) -> None:
            upload.write(chunk)
            self()

        return write

    def _touch(self, db: Session) -> None:
        image = _mine(db, self.job)
        if image is not None:
            image.updated_at = utcnow()


def _download(cloud: Cloud, job: ImportJob, beat: Heartbeat) -> Upload:
    staged = cloud.images.begin_staging(job.image_id)
    try:
        fetch(job.uri, HostPolicy(cloud.settings.image_import_allowed_hosts),
              beat.writer(staged), job.budget)
        staged.commit()
    except BaseException:
        staged.discard()
        raise
    return staged


def _copy(source: Path, upload: Upload, expected_sha512: str | None, beat: Heartbeat) -> None:
    write = beat.writer(upload)
    try:
        with source.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                write(chunk)
        if expected_sha512 and upload.sha512 != expected_sha512:
            raise OSError("the copy does not match the image's os_hash_value")
        upload.commit()
    except BaseException:
        upload.discard()
        raise


def run(cloud: Cloud, job: ImportJob) -> None:
    """Wait for a slot, then import; nothing escapes (this is a thread's whole life)."""
    beat = Heartbeat(cloud, job)
    try:
        while not _SLOTS.acquire(timeout=BEAT):
            beat(now=True)
        try:
            _run(cloud, job, beat)
        finally:
            _SLOTS.release()
    except Exception:
        log.exception("image %s: %s import broke", job.image_id, job.method)


def _run(cloud: Cloud, job: ImportJob, beat: Heartbeat) -> None:
    """Get the bytes, write them to each target store, then publish or roll back."""
    if job.method == LOCATION:
        _run_location(cloud, job, beat)
        return
    images = cloud.images
    written: list[str] = []
    first: Upload | None = None
    virtual_size: int | None = None
    error: str | None = None
    try:
        if job.method == "web-download":
            _download(cloud, job, beat)
        if job.method == "copy-image":
            source = images.path(job.image_id)
        else:
            source = images.staging_path(job.image_id)
        if source is None:
            raise FileNotFoundError("no data to import")
        if job.method != "copy-image":
            virtual_size = inspect(source, (job.disk_format, job.container_format),
                                   cloud.settings)
        expected = job.expected_sha512
        for store_id in job.stores:
            try:
                upload = images.begin(job.image_id, store_id)
                _copy(source, upload, expected, beat)
            except Exception as exc:
                log.warning("image %s: copy to store %s failed: %s", job.image_id, store_id,
                            exc)
                _progress(cloud, job, store_id, ok=False)
                if job.must_succeed:
                    break
                continue
            first, expected = first or upload, expected or upload.sha512
            written.append(store_id)
            _progress(cloud, job, store_id, ok=True)
    except (ApiError, FetchFailed, RefusedURI, OSError) as exc:
        log.warning("image %s: %s import failed: %s", job.image_id, job.method, exc)
        error = str(exc)
    complete = len(written) == len(job.stores)
    if not complete and error is None:
        error = "the data could not be written to store(s) " + ", ".join(
            s for s in job.stores if s not in written)
    kept = written if written and (complete or not job.must_succeed) else []
    # Clean up before the image can take new data; not if the import was abandoned meanwhile
    # (the files may be a new import's by now) or the image deleted (all goes, below).
    if cloud.transaction(lambda db: _mine(db, job) is not None):
        for store_id in set(written) - set(kept):
            images.delete(job.image_id, store_id)
        if job.method != "copy-image":
            images.drop_staging(job.image_id)
    outcome = cloud.transaction(lambda db: _finish(db, job, kept, first, virtual_size, error))
    if outcome == "deleted":
        images.delete(job.image_id)


def _run_location(cloud: Cloud, job: ImportJob, beat: Heartbeat) -> None:
    """Fetch the URL's bytes into the staging area, inspect and hash them, then record the
    URL as the image's location (the bytes are not kept: the URL is the data) or fail."""
    images = cloud.images
    staged: Upload | None = None
    virtual_size: int | None = None
    error: str | None = None
    try:
        staged = _download(cloud, job, beat)
        path = images.staging_path(job.image_id)
        if path is None:
            raise FileNotFoundError("the downloaded data is gone")
        virtual_size = inspect(path, (job.disk_format, job.container_format), cloud.settings)
        if job.validation:
            algo, wanted = job.validation
            actual = {"md5": staged.md5, "sha512": staged.sha512}.get(algo)  # hashed on the way
            if actual is None:
                with path.open("rb") as fh:
                    actual = hashlib.file_digest(fh, algo).hexdigest()
            if actual != wanted:
                raise OSError(f"the data's {algo} is {actual}, the validation data says "
                              f"{wanted}")
    except (ApiError, FetchFailed, RefusedURI, OSError, ValueError) as exc:
        log.warning("image %s: location import of %s failed: %s", job.image_id, job.uri, exc)
        error = str(exc)
    if cloud.transaction(lambda db: _mine(db, job) is not None):
        images.drop_staging(job.image_id)

    def finish(db: Session) -> bool:
        image = _mine(db, job)
        if image is None:
            return db.get(Image, job.image_id) is None
        finish_task(db, job.task_id, error)
        image.properties = {k: v for k, v in image.properties.items() if k != TASK}
        if error is not None or staged is None:
            image.status = "queued"
            if staged is not None:  # the URL answered with other bytes: it stays listed, as
                add_location(db, image.id, job.uri)  # Glance keeps an http location
        else:
            publish(image, staged, virtual_size)
            if job.validation:
                image.os_hash_algo, image.os_hash_value = job.validation
            add_location(db, image.id, job.uri)
        image.updated_at = utcnow()
        return False

    if cloud.transaction(finish):  # the image was deleted meanwhile: nothing of it may stay
        images.delete(job.image_id)


def _finish(db: Session, job: ImportJob, kept: list[str], first: Upload | None,
            virtual_size: int | None, error: str | None) -> str:
    """Record the outcome: "done", or "deleted"/"superseded" when the image moved on."""
    image = _mine(db, job)
    if image is None:
        return "deleted" if db.get(Image, job.image_id) is None else "superseded"
    finish_task(db, job.task_id, error)
    props = dict(image.properties)
    props.pop(TASK, None)
    props[IMPORTING] = ""
    missed = [s for s in job.stores if s not in kept]
    props[FAILED] = ",".join(dict.fromkeys([*_split(props.get(FAILED)), *missed]))
    image.properties = props
    if job.method != "copy-image" and image.status == "importing":
        if kept and first is not None:
            publish(image, first, virtual_size)
        else:
            image.status = "queued"
    image.updated_at = utcnow()
    return "done"


ROUTES = [
    Route("GET", "/v2/info/import", info_import),
    Route("GET", "/v2/info/stores", info_stores),
    Route("GET", "/v2/info/stores/detail", info_stores_detail, "context_is_admin"),
    Route("GET", "/v2/info/usage", info_usage),
    Route("POST", "/v2/images/{image_id}/import", import_image, "upload_image"),
]
