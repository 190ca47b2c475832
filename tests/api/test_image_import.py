"""In-process tests of image import (glance-direct, web-download, copy-image) and of multiple
stores, against a cloud with two stores (`local`, the default, and `fast`) that may fetch
from loopback, where a test web server runs."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import BACKENDS, Api, backend_cloud, make_cloud
from picocloud.cloud import Cloud
from webserver import Web

V2 = "/image/v2"
OCTETS = {"Content-Type": "application/octet-stream"}
SIZE_CAP = 4 << 20


@pytest.fixture(params=BACKENDS)
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cloud]:
    c = backend_cloud(request, tmp_path, image_stores="local:images,fast:fast-images",
                      image_import_allowed_hosts="127.0.0.1", image_size_cap=SIZE_CAP)
    yield c
    c.close()


def create(api: Api, token: str, **body: Any) -> dict[str, Any]:
    r = api.post(f"{V2}/images", token, json={"disk_format": "raw", "container_format": "bare",
                                              **body})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def show(api: Api, token: str, image_id: str) -> dict[str, Any]:
    return api.get(f"{V2}/images/{image_id}", token).json()  # type: ignore[no-any-return]


def settled(api: Api, token: str, image_id: str) -> dict[str, Any]:
    """The image once no import is running on it any more."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        image = show(api, token, image_id)
        if image["status"] != "importing" and image.get("os_glance_importing_to_stores") == "":
            return image
        time.sleep(0.05)
    raise AssertionError(f"import of {image_id} did not finish: {image}")


def start_import(api: Api, token: str, image_id: str, method: str, **body: Any) -> Any:
    name, _, uri = method.partition(" ")
    spec = {"name": name, **({"uri": uri} if uri else {})}
    return api.post(f"{V2}/images/{image_id}/import", token, json={"method": spec, **body})


def store_files(cloud: Cloud) -> list[str]:
    found = []
    for info in cloud.images.infos:
        root = info.store.root  # type: ignore[attr-defined]
        found += [f"{info.id}/{p.name}" for p in root.rglob("*") if p.is_file()]
    return sorted(found)


def stage(api: Api, token: str, image_id: str, data: bytes) -> None:
    r = api.request("PUT", f"{V2}/images/{image_id}/stage", token, content=data, headers=OCTETS)
    assert r.status_code == 204, r.text


def test_discovery(api: Api, admin_token: str) -> None:
    info = api.get(f"{V2}/info/import", admin_token).json()
    assert info["import-methods"]["value"] == ["glance-direct", "web-download", "copy-image"]
    stores = api.get(f"{V2}/info/stores", admin_token).json()["stores"]
    assert [(s["id"], s.get("default", False)) for s in stores] == [("local", True),
                                                                    ("fast", False)]
    assert api.get("/image").json()["versions"][0]["id"] == "v2.17"


def test_glance_direct_import_to_all_stores(api: Api, admin_token: str) -> None:
    image = create(api, admin_token, name="staged")
    assert start_import(api, admin_token, image["id"], "glance-direct").status_code == 409
    data = b"staged bytes" * 1000
    stage(api, admin_token, image["id"], data)
    assert show(api, admin_token, image["id"])["status"] == "uploading"
    r = start_import(api, admin_token, image["id"], "glance-direct", all_stores=True,
                     stores=["local"])
    assert r.status_code == 400  # all_stores and stores together
    r = start_import(api, admin_token, image["id"], "glance-direct", stores=["slow"])
    assert r.status_code == 400 and "slow" in r.json()["message"]
    r = start_import(api, admin_token, image["id"], "glance-direct", all_stores=True)
    assert r.status_code == 202, r.text
    shown = settled(api, admin_token, image["id"])
    assert shown["status"] == "active" and shown["size"] == len(data)
    assert shown["stores"] == "fast,local" and shown["os_glance_failed_import"] == ""
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert api.get(f"{V2}/images/{image['id']}/file", admin_token).content == data
    assert api.cloud.images.staging_path(image["id"]) is None
    assert start_import(api, admin_token, image["id"], "glance-direct").status_code == 409


def test_glance_direct_import_of_refused_data_returns_to_queued(
        api: Api, admin_token: str, tmp_path: Path) -> None:
    qcow2 = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "1M"], check=True)
    image = create(api, admin_token, name="lies")  # declared raw
    stage(api, admin_token, image["id"], qcow2.read_bytes())
    r = start_import(api, admin_token, image["id"], "glance-direct", stores=["fast"])
    assert r.status_code == 202
    shown = settled(api, admin_token, image["id"])
    assert shown["status"] == "queued" and shown["os_glance_failed_import"] == "fast"
    assert "stores" not in shown and store_files(api.cloud) == []
    assert api.cloud.images.staging_path(image["id"]) is None


def test_web_download_import(api: Api, admin_token: str, web: Web, tmp_path: Path) -> None:
    qcow2 = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "1M"], check=True)
    data = qcow2.read_bytes()
    web.routes["/disk.qcow2"] = (200, {}, data)
    web.routes["/moved"] = (302, {"Location": "/disk.qcow2"}, b"")
    image = create(api, admin_token, name="web", disk_format="qcow2")
    r = start_import(api, admin_token, image["id"], f"web-download {web.url}/moved")
    assert r.status_code == 202, r.text
    assert start_import(api, admin_token, image["id"],
                        f"web-download {web.url}/moved").status_code == 409
    shown = settled(api, admin_token, image["id"])
    assert shown["status"] == "active" and shown["stores"] == "local"
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["virtual_size"] == 1 << 20 and shown["os_glance_failed_import"] == ""
    assert api.get(f"{V2}/images/{image['id']}/file", admin_token).content == data
    # the same bytes declared raw are refused after the download, like an upload
    liar = create(api, admin_token, name="liar")
    start_import(api, admin_token, liar["id"], f"web-download {web.url}/disk.qcow2")
    shown = settled(api, admin_token, liar["id"])
    assert shown["status"] == "queued" and shown["os_glance_failed_import"] == "local"
    assert api.cloud.images.staging_path(liar["id"]) is None


@pytest.mark.parametrize("path", ["/missing", "/to-metadata", "/too-big", "/loop"])
def test_web_download_failure_leaves_image_queued(
        api: Api, admin_token: str, web: Web, path: str) -> None:
    web.routes["/to-metadata"] = (302, {"Location": "http://169.254.169.254/latest"}, b"")
    web.routes["/too-big"] = (200, {}, b"\0" * (SIZE_CAP + 1))
    web.routes["/loop"] = (301, {"Location": "/loop"}, b"")
    image = create(api, admin_token, name="broken")
    r = start_import(api, admin_token, image["id"], f"web-download {web.url}{path}",
                     stores=["fast"])
    assert r.status_code == 202, r.text
    shown = settled(api, admin_token, image["id"])
    assert shown["status"] == "queued" and shown["os_glance_failed_import"] == "fast"
    assert store_files(api.cloud) == [] and api.cloud.images.staging_path(image["id"]) is None
    # the image can still be given data
    r = api.request("PUT", f"{V2}/images/{image['id']}/file", admin_token, content=b"ok",
                    headers=OCTETS)
    assert r.status_code == 204


@pytest.mark.parametrize("uri", [
    "file:///etc/passwd", "ftp://127.0.0.1/x", "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1/image", "http:///nohost", "http://does-not.exist/no/possible/way",
])
def test_web_download_refuses_uris_at_import(api: Api, admin_token: str, uri: str) -> None:
    image = create(api, admin_token, name="refused")
    r = start_import(api, admin_token, image["id"], f"web-download {uri}")
    assert r.status_code == 400, r.text
    assert show(api, admin_token, image["id"])["status"] == "queued"


def test_default_host_policy_refuses_loopback(tmp_path: Path, web: Web) -> None:
    for hosts, offered in (("public", True), ("", False)):
        cloud = make_cloud(tmp_path / (hosts or "off"), image_import_allowed_hosts=hosts)
        api = Api(cloud)
        try:
            token = api.token()
            methods = api.get(f"{V2}/info/import", token).json()["import-methods"]["value"]
            assert ("web-download" in methods) is offered
            assert [s["id"] for s in api.get(f"{V2}/info/stores", token).json()["stores"]] == [
                "local"]
            image = create(api, token, name="x")
            r = start_import(api, token, image["id"], f"web-download {web.url}/x")
            assert r.status_code == 400
            if offered:
                assert "image_import_allowed_hosts" in r.json()["message"]
        finally:
            api.client.close()
            cloud.close()


def test_delete_during_web_download_leaves_nothing(api: Api, admin_token: str,
                                                   web: Web) -> None:
    release = threading.Event()

    def slow() -> bytes:
        release.wait(10)
        return b"late bytes"

    web.routes["/slow"] = (200, {}, slow)
    image = create(api, admin_token, name="gone")
    r = start_import(api, admin_token, image["id"], f"web-download {web.url}/slow",
                     all_stores=True)
    assert r.status_code == 202
    assert show(api, admin_token, image["id"])["status"] == "importing"
    assert api.request("DELETE", f"{V2}/images/{image['id']}", admin_token).status_code == 204
    release.set()
    deadline = time.monotonic() + 10
    while any(t.name.startswith("image-import-") for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert store_files(api.cloud) == [] and api.cloud.images.staging_path(image["id"]) is None


def test_upload_to_a_store_copy_image_and_delete_from_store(api: Api, admin_token: str) -> None:
    image = create(api, admin_token, name="copied")
    r = api.request("PUT", f"{V2}/images/{image['id']}/file", admin_token, content=b"x",
                    headers={**OCTETS, "X-Image-Meta-Store": "slow"})
    assert r.status_code == 400 and show(api, admin_token, image["id"])["status"] == "queued"
    data = bytes(range(256)) * 100
    r = api.request("PUT", f"{V2}/images/{image['id']}/file", admin_token, content=data,
                    headers={**OCTETS, "X-Image-Meta-Store": "fast"})
    assert r.status_code == 204, r.text
    assert show(api, admin_token, image["id"])["stores"] == "fast"
    assert api.get(f"{V2}/images/{image['id']}/file", admin_token).content == data
    r = start_import(api, admin_token, image["id"], "copy-image", stores=["fast"])
    assert r.status_code == 409  # already there
    r = start_import(api, admin_token, image["id"], "copy-image", all_stores=True,
                     all_stores_must_succeed=False)
    assert r.status_code == 202, r.text
    shown = settled(api, admin_token, image["id"])
    assert shown["stores"] == "fast,local" and shown["os_glance_failed_import"] == ""
    assert shown["status"] == "active"
    # nothing left to copy: the import is accepted and finishes at once
    assert start_import(api, admin_token, image["id"], "copy-image").status_code == 409
    r = start_import(api, admin_token, image["id"], "copy-image", all_stores=True)
    assert r.status_code == 202
    assert show(api, admin_token, image["id"])["os_glance_importing_to_stores"] == ""

    def drop(store: str) -> int:
        return api.request("DELETE", f"{V2}/stores/{store}/{image['id']}",
                           admin_token).status_code

    assert drop("slow") == 409
    assert drop("fast") == 204
    assert show(api, admin_token, image["id"])["stores"] == "local"
    assert drop("fast") == 404
    assert drop("local") == 409  # the last copy
    assert api.get(f"{V2}/images/{image['id']}/file", admin_token).content == data
    assert api.request("DELETE", f"{V2}/images/{image['id']}", admin_token).status_code == 204
    assert store_files(api.cloud) == []


def test_copy_image_is_for_admins_and_active_images(api: Api, admin_token: str) -> None:
    v3 = "/identity/v3"
    project = api.post(f"{v3}/projects", admin_token,
                       json={"project": {"name": "p1"}}).json()["project"]
    user = api.post(f"{v3}/users", admin_token,
                    json={"user": {"name": "u1", "password": "pw"}}).json()["user"]
    role = api.get(f"{v3}/roles?name=member", admin_token).json()["roles"][0]["id"]
    api.request("PUT", f"{v3}/projects/{project['id']}/users/{user['id']}/roles/{role}",
                admin_token)
    member = api.token("u1", "pw", "p1")
    image = create(api, member, name="mine")
    assert start_import(api, admin_token, image["id"], "copy-image").status_code == 409
    r = api.request("PUT", f"{V2}/images/{image['id']}/file", member, content=b"data",
                    headers=OCTETS)
    assert r.status_code == 204
    assert start_import(api, member, image["id"], "copy-image",
                        stores=["fast"]).status_code == 403
    assert api.request("DELETE", f"{V2}/stores/local/{image['id']}",
                       member).status_code == 403
    r = start_import(api, admin_token, image["id"], "copy-image", stores=["fast"])
    assert r.status_code == 202
    assert settled(api, member, image["id"])["stores"] == "fast,local"


@pytest.mark.parametrize("must_succeed", [True, False])
def test_all_stores_must_succeed(api: Api, admin_token: str, must_succeed: bool,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(image_id: str) -> Any:
        raise OSError("disk on fire")

    monkeypatch.setattr(api.cloud.images.get("fast"), "begin", broken)
    image = create(api, admin_token, name="half")
    stage(api, admin_token, image["id"], b"half and half")
    r = start_import(api, admin_token, image["id"], "glance-direct", all_stores=True,
                     all_stores_must_succeed=must_succeed)
    assert r.status_code == 202
    shown = settled(api, admin_token, image["id"])
    if must_succeed:
        assert shown["status"] == "queued" and "stores" not in shown
        assert set(shown["os_glance_failed_import"].split(",")) == {"local", "fast"}
        assert store_files(api.cloud) == []
    else:
        assert shown["status"] == "active" and shown["stores"] == "local"
        assert shown["os_glance_failed_import"] == "fast"


def test_an_import_whose_worker_died_is_abandoned_after_a_while(api: Api,
                                                                  admin_token: str) -> None:
    from datetime import timedelta

    from picocloud.image.models import Image
    from picocloud.image.service import utcnow

    image = create(api, admin_token, name="orphan")
    stage(api, admin_token, image["id"], b"staged before the crash")

    def crash(db: Any, minutes: int) -> None:  # what a stopped picocloud leaves behind
        row = db.get(Image, image["id"])
        row.status = "importing"
        row.properties = {"os_glance_import_task": "gone", "os_glance_importing_to_stores":
                          "local", "os_glance_failed_import": ""}
        row.updated_at = utcnow() - timedelta(minutes=minutes)
        db.commit()

    with api.cloud.session() as db:
        crash(db, 2)
    assert start_import(api, admin_token, image["id"], "glance-direct").status_code == 409
    with api.cloud.session() as db:
        crash(db, 11)
    r = start_import(api, admin_token, image["id"], "glance-direct")
    assert r.status_code == 409  # abandoned: back to queued, its staged data gone with it
    shown = show(api, admin_token, image["id"])
    assert shown["status"] == "queued" and "os_glance_import_task" not in shown
    assert shown["os_glance_failed_import"] == "local"
    assert api.cloud.images.staging_path(image["id"]) is None
    r = api.request("PUT", f"{V2}/images/{image['id']}/file", admin_token, content=b"again",
                    headers=OCTETS)
    assert r.status_code == 204
