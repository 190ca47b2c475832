"""The `tiny` guest image every picocloud offers: built once from Debian packages (cached
under ~/.cache/picocloud/guest), registered in this cloud's image store at first start."""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

from sqlalchemy import select

from picocloud.cloud import Cloud
from picocloud.identity.models import Project
from picocloud.identity.service import DEFAULT_DOMAIN
from picocloud.image.hostfiles import copy_into_store
from picocloud.image.models import Image
from picocloud.image.service import utcnow

log = logging.getLogger("picocloud.image")
MARKER = "picocloud_builtin"
PROPERTIES = {
    MARKER: "tiny",
    "architecture": "x86_64",
    "hypervisor_type": "qemu",
    "os_distro": "picocloud-tiny",
    "hw_disk_bus": "virtio",
    "hw_vif_model": "virtio",
}


def registered(cloud: Cloud) -> Image | None:
    with cloud.session() as db:
        for image in db.scalars(select(Image).where(Image.name == "tiny")).all():
            if image.properties.get(MARKER) == "tiny":
                return image
    return None


def register_file(cloud: Cloud, source: Path) -> Image:
    """Copy `source` into the image store and register it as the public `tiny` image."""
    image_id = str(uuid.uuid4())
    upload, virtual_size = copy_into_store(cloud, image_id, source, ("qcow2", "bare"))
    with cloud.session() as db:
        admin = db.scalars(
            select(Project).where(Project.name == "admin", Project.domain_id == DEFAULT_DOMAIN)
        ).first()
        now = utcnow()
        image = Image(
            id=image_id, name="tiny", status="active", visibility="public",
            owner=admin.id if admin else None, protected=False, os_hidden=False,
            disk_format="qcow2", container_format="bare", size=upload.size,
            virtual_size=virtual_size, checksum=upload.md5, os_hash_algo="sha512",
            os_hash_value=upload.sha512, min_disk=1, min_ram=128, tags=[],
            properties=dict(PROPERTIES), created_at=now, updated_at=now,
        )
        db.add(image)
        db.commit()
    cloud.after_commit(db)
    return image


def ensure_tiny(cloud: Cloud, cache_dir: Path | None = None) -> Image | None:
    """Register `tiny` unless it already is; None (and a log line) if it cannot be built."""
    found = registered(cloud)
    if found is not None:
        return found
    from picocloud.guest.build import GuestBuildError, cached_tiny

    try:
        source = cached_tiny(cache_dir)
    except (GuestBuildError, OSError) as exc:
        log.warning("built-in image 'tiny' not available: %s", exc)
        return None
    image = register_file(cloud, source)
    log.info("registered built-in image 'tiny' (%s, %d bytes)", image.id, image.size or 0)
    return image


def ensure_tiny_in_background(cloud: Cloud) -> threading.Thread:
    thread = threading.Thread(target=ensure_tiny, args=(cloud,), name="picocloud-tiny",
                              daemon=True)
    thread.start()
    return thread
