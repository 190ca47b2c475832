"""Servers from images whose data is at a URL (image locations): the agent fetches the
bytes, checks them against the image's checksum and inspects them before a guest uses them."""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_servers_api import WAIT, Compute, running_compute
from test_servers_api import disk_image as disk_image  # a fixture

from conftest import BACKENDS
from webserver import Web

V2 = "/image/v2"
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


@pytest.fixture(params=BACKENDS)
def compute(request: pytest.FixtureRequest, tmp_path: Path, disk_image: Path) -> Iterator[Compute]:
    with running_compute(request, tmp_path, disk_image, image_locations=True,
                         image_import_allowed_hosts="127.0.0.1") as c:
        yield c


def image_at(c: Compute, url: str, checksum: str) -> str:
    """A qcow2 image whose data is `url`, registered with the JSON patch (not fetched)."""
    image = c.api.post(f"{V2}/images", c.admin, json={
        "disk_format": "qcow2", "container_format": "bare"}).json()
    r = c.api.request("PATCH", f"{V2}/images/{image['id']}", c.admin, headers=PATCH, json=[
        {"op": "add", "path": "/locations/-",
         "value": {"url": url, "metadata": {}, "validation_data": {"checksum": checksum}}}])
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    return str(image["id"])


def test_a_server_boots_from_bytes_at_a_url(compute: Compute, web: Web,
                                            disk_image: Path) -> None:
    c = compute
    data = disk_image.read_bytes()
    web.routes["/disk.qcow2"] = (200, {}, data)
    checksum = hashlib.md5(data).hexdigest()
    image_id = image_at(c, f"{web.url}/disk.qcow2", checksum)
    c.boot(c.admin, "from-url", imageRef=image_id)
    assert ("GET", "/disk.qcow2") in web.hits
    assert (c.agent.images.path(checksum)).read_bytes() == data  # cached, verified


def test_unsafe_or_changed_bytes_at_a_url_never_reach_a_guest(
        compute: Compute, web: Web, disk_image: Path, tmp_path: Path) -> None:
    c = compute
    evil = tmp_path / "evil.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw",
                    str(evil), "64M"], check=True)
    web.routes["/evil.qcow2"] = (200, {}, evil.read_bytes())
    web.routes["/changed.qcow2"] = (200, {}, disk_image.read_bytes())
    cases = [("/evil.qcow2", hashlib.md5(evil.read_bytes()).hexdigest(), "backing"),
             ("/changed.qcow2", "0" * 32, "checksum")]
    for path, checksum, why in cases:
        image_id = image_at(c, f"{web.url}{path}", checksum)
        r = c.create(c.admin, f"from{path.replace('/', '-')}", imageRef=image_id)
        server_id = r.json()["server"]["id"]
        deadline = time.monotonic() + WAIT
        while (server := c.show(c.admin, server_id))["status"] != "ERROR":
            assert time.monotonic() < deadline, server
            time.sleep(0.05)
        assert why in server["fault"]["message"], server["fault"]
        assert not c.agent.images.path(checksum).exists()
        assert server_id not in c.driver.guests_
