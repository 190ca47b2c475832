"""Image data that is already on this host (the built-in image, server snapshots): copied
into the image store with checksums, inspected like any upload, then published."""

from __future__ import annotations

from pathlib import Path

from picocloud.cloud import Cloud
from picocloud.image.data import CHUNK, inspect
from picocloud.image.datastore import FileUpload
from picocloud.image.models import Image
from picocloud.image.service import utcnow


def copy_into_store(
    cloud: Cloud, image_id: str, source: Path, formats: tuple[str, str]
) -> tuple[FileUpload, int | None]:
    """Store `source` as the data of `image_id`; returns the upload (sizes, hashes) and the
    inspected virtual size. Nothing is left behind on failure."""
    upload = cloud.images.begin(image_id)
    try:
        with source.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                upload.write(chunk)
        virtual_size = inspect(upload.staged_path, formats, cloud.settings)
        upload.commit()
    except BaseException:
        upload.discard()
        raise
    return upload, virtual_size  # type: ignore[return-value]


def publish_file(cloud: Cloud, image_id: str, source: Path) -> None:
    """Make `source` the data of the queued image `image_id` and mark it active."""
    with cloud.session() as db:
        image = db.get(Image, image_id)
        if image is None:
            return
        formats = (image.disk_format or "qcow2", image.container_format or "bare")
    upload, virtual_size = copy_into_store(cloud, image_id, source, formats)
    with cloud.session() as db:
        image = db.get(Image, image_id)
        if image is None:  # deleted meanwhile
            cloud.images.delete(image_id)
            return
        image.size = upload.size
        image.checksum = upload.md5
        image.os_hash_algo = "sha512"
        image.os_hash_value = upload.sha512
        image.virtual_size = virtual_size
        image.status = "active"
        image.updated_at = utcnow()
        db.commit()
    cloud.after_commit(db)
