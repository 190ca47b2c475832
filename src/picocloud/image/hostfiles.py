"""Image data that is already on this host (the built-in image, server snapshots): copied
into the image store with checksums, inspected like any upload, then published."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from picocloud.cloud import Cloud
from picocloud.image.data import CHUNK, inspect, publish
from picocloud.image.datastore import FileUpload
from picocloud.image.models import Image


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

    def finish(db: Session) -> bool:
        image = db.get(Image, image_id)
        if image is not None:
            publish(image, upload, virtual_size)
        return image is not None

    if not cloud.transaction(finish):  # deleted meanwhile
        cloud.images.delete(image_id)
