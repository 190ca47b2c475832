"""Image import and multiple stores end to end: the real `openstack image import` / `image
stores list` / `image delete --store` against a `picocloud up` with two stores that may fetch
from loopback, where the test serves a real qcow2. What the CLI hides is asked over HTTP."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .test_image_cli import MiB, create_queued, digests, image_api, real_qcow2

if TYPE_CHECKING:
    from .conftest import Picocloud, PicocloudFactory

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("qemu-img") is None,
                       reason="qemu-img is not installed (package qemu-utils)"),
]

SERVER_ENV = {
    "PICOCLOUD_IMAGE_BUILTIN_TINY": "0",
    "PICOCLOUD_IMAGE_STORES": "local:images,fast:images-fast",
    "PICOCLOUD_IMAGE_IMPORT_ALLOWED_HOSTS": "public,127.0.0.1",
}


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A loopback web server over a directory: (base URL, directory)."""
    root = tmp_path_factory.mktemp("web")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def cloud(picocloud_factory: PicocloudFactory) -> Iterator[Picocloud]:
    pc = picocloud_factory("import", env=SERVER_ENV)
    pc.start()
    yield pc
    pc.stop()


def settled(cloud: Picocloud, name: str) -> dict[str, Any]:
    """`image show` once no import runs on the image any more."""
    deadline = time.monotonic() + 60
    while True:
        shown: dict[str, Any] = cloud.run("image", "show", name)
        props = shown["properties"]
        if shown["status"] != "importing" and props.get("os_glance_importing_to_stores") == "":
            return shown
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)


def files(cloud: Picocloud) -> list[str]:
    return sorted(str(p.relative_to(cloud.data_dir)) for folder in ("images", "images-fast")
                  for p in (cloud.data_dir / folder).rglob("*") if p.is_file())


def test_import_and_stores_tour(cloud: Picocloud, web: tuple[str, Path],
                                tmp_path: Path) -> None:
    url, root = web
    disk = real_qcow2(root / "disk.qcow2")
    sums = digests(disk)

    assert cloud.run("image", "stores", "list") == [
        {"ID": "local", "Description": "Filesystem store local", "Default": True},
        {"ID": "fast", "Description": "Filesystem store fast", "Default": None}]
    methods = cloud.run("image", "import", "info", "-f", "json")["import-methods"]
    assert methods == ["glance-direct", "web-download", "copy-image"]

    # web-download into the second store
    create_queued(cloud, "fetched", "qcow2")
    cloud.run("image", "import", "--method", "web-download", "--uri", f"{url}/disk.qcow2",
              "--store=fast", "fetched")
    shown = settled(cloud, "fetched")
    assert shown["status"] == "active" and shown["checksum"] == sums["md5"]
    assert shown["virtual_size"] == 16 * MiB
    assert shown["properties"]["stores"] == "fast"
    assert shown["properties"]["os_glance_failed_import"] == ""

    # copy-image to every store that lacks it, then drop one copy
    cloud.run("image", "import", "--method", "copy-image", "--all-stores", "fetched")
    assert settled(cloud, "fetched")["properties"]["stores"] == "fast,local"
    assert cloud.run("image", "delete", "--store", "fast", "fetched") is None
    assert settled(cloud, "fetched")["properties"]["stores"] == "local"
    back = tmp_path / "back.qcow2"
    cloud.run("image", "save", "--file", str(back), "fetched")
    assert back.read_bytes() == disk.read_bytes()

    # glance-direct: stage with the CLI, import to both stores
    create_queued(cloud, "staged", "qcow2")
    cloud.run("image", "stage", "--file", str(disk), "staged")
    assert cloud.run("image", "show", "staged")["status"] == "uploading"
    cloud.run("image", "import", "--method", "glance-direct", "--all-stores", "staged")
    shown = settled(cloud, "staged")
    assert shown["status"] == "active" and shown["properties"]["stores"] == "fast,local"

    # what the API server must not fetch is refused before anything starts; the CLI does not
    # report an import's status code (openstacksdk ignores it), so ask over HTTP
    nosy = create_queued(cloud, "nosy", "raw")
    reply = image_api(cloud, "POST", f"/v2/images/{nosy}/import", body={"method": {
        "name": "web-download", "uri": "http://169.254.169.254/openstack/latest/meta_data.json"}})
    assert reply.status == 400 and "image_import_allowed_hosts" in reply.json()["message"]
    assert cloud.run("image", "show", "nosy")["status"] == "queued"

    for name in ("fetched", "staged", "nosy"):
        cloud.run("image", "delete", name)
    assert files(cloud) == []
