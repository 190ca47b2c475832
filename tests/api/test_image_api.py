"""In-process image API tests (both databases): create, upload/download, visibility, sharing."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import Api

V2 = "/image/v2"
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
OCTETS = {"Content-Type": "application/octet-stream"}


def create(api: Api, token: str, **body: Any) -> dict[str, Any]:
    r = api.post(f"{V2}/images", token, json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_versions_and_catalog(api: Api, admin_token: str) -> None:
    r = api.get("/image")
    assert r.status_code == 300 and r.json()["versions"][0]["status"] == "CURRENT"
    r = api.get("/identity/v3/auth/catalog", admin_token)
    assert "image" in {s["type"] for s in r.json()["catalog"]}


def test_create_upload_download_round_trip(api: Api, admin_token: str) -> None:
    image = create(api, admin_token, name="blob", disk_format="raw", container_format="bare",
                   architecture="x86_64")
    assert image["status"] == "queued" and image["visibility"] == "shared"
    assert image["architecture"] == "x86_64"
    data = bytes(range(256)) * 4096 + b"tail"
    r = api.request("PUT", f"{V2}/images/{image['id']}/file", admin_token, content=data,
                    headers=OCTETS)
    assert r.status_code == 204, r.text
    shown = api.get(f"{V2}/images/{image['id']}", admin_token).json()
    assert shown["status"] == "active" and shown["size"] == len(data)
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert shown["virtual_size"] == len(data)
    r = api.get(f"{V2}/images/{image['id']}/file", admin_token)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-md5"] == shown["checksum"]
    r = api.get(f"{V2}/images/{image['id']}/file", admin_token, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    r = api.request("PUT", f"{V2}/images/{image['id']}/file", admin_token, content=b"x",
                    headers=OCTETS)
    assert r.status_code == 409  # upload to an active image


def test_bad_input_is_refused_and_changes_nothing(api: Api, admin_token: str) -> None:
    r = api.post(f"{V2}/images", admin_token, json={"name": "x", "disk_format": "floppy"})
    assert r.status_code == 400 and "disk_format" in r.json()["message"]
    r = api.post(f"{V2}/images", admin_token, json={"name": "x", "status": "active"})
    assert r.status_code == 403
    assert api.get(f"{V2}/images?name=x", admin_token).json()["images"] == []
    image = create(api, admin_token, name="y")
    r = api.request("PUT", f"{V2}/images/{image['id']}/file", admin_token, content=b"abc",
                    headers=OCTETS)
    assert r.status_code == 400  # formats not set yet
    assert api.get(f"{V2}/images/{image['id']}", admin_token).json()["status"] == "queued"


def test_qcow2_with_backing_file_is_refused(api: Api, admin_token: str, tmp_path: Path) -> None:
    evil = tmp_path / "evil.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw",
                    str(evil), "1M"], check=True)
    image = create(api, admin_token, name="evil", disk_format="qcow2", container_format="bare")
    r = api.request("PUT", f"{V2}/images/{image['id']}/file", admin_token,
                    content=evil.read_bytes(), headers=OCTETS)
    assert r.status_code == 400 and "backing" in r.json()["message"].lower()
    assert api.get(f"{V2}/images/{image['id']}", admin_token).json()["status"] == "queued"
    assert api.cloud.images.path(image["id"]) is None
    images_dir = api.cloud.settings.data_dir / "images"
    assert [p for p in images_dir.rglob("*") if p.is_file()] == []


def test_patch_tags_protected_delete(api: Api, admin_token: str) -> None:
    image = create(api, admin_token, name="p", tags=["a"])
    ops = [{"op": "replace", "path": "/name", "value": "q"},
           {"op": "add", "path": "/hypervisor_type", "value": "qemu"},
           {"op": "replace", "path": "/protected", "value": True}]
    r = api.request("PATCH", f"{V2}/images/{image['id']}", admin_token, json=ops, headers=PATCH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["name"], body["hypervisor_type"], body["protected"]) == ("q", "qemu", True)
    assert api.request("PUT", f"{V2}/images/{image['id']}/tags/b", admin_token).status_code == 204
    assert api.get(f"{V2}/images?tag=b", admin_token).json()["images"][0]["id"] == image["id"]
    assert api.request("DELETE", f"{V2}/images/{image['id']}", admin_token).status_code == 403
    ops = [{"op": "replace", "path": "/protected", "value": False}]
    api.request("PATCH", f"{V2}/images/{image['id']}", admin_token, json=ops, headers=PATCH)
    assert api.request("DELETE", f"{V2}/images/{image['id']}", admin_token).status_code == 204
    assert api.get(f"{V2}/images/{image['id']}", admin_token).status_code == 404


def test_private_images_and_sharing(api: Api, admin_token: str) -> None:
    alice = api.member(admin_token, "alice")[0]
    bob = api.member(admin_token, "bob")[0]
    image = create(api, alice, name="mine", visibility="private")
    assert api.get(f"{V2}/images/{image['id']}", bob).status_code == 404
    r = api.post(f"{V2}/images", alice, json={"name": "pub", "visibility": "public"})
    assert r.status_code == 403  # only admins publish
    shared = create(api, alice, name="lab", visibility="shared")
    bob_project = api.get("/identity/v3/auth/tokens", bob,
                          headers={"X-Subject-Token": bob}).json()["token"]["project"]["id"]
    r = api.post(f"{V2}/images/{shared['id']}/members", alice, json={"member": bob_project})
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert [i["id"] for i in api.get(f"{V2}/images", bob).json()["images"]] == []
    r = api.request("PUT", f"{V2}/images/{shared['id']}/members/{bob_project}", alice,
                    json={"status": "accepted"})
    assert r.status_code == 403  # only the member accepts
    r = api.request("PUT", f"{V2}/images/{shared['id']}/members/{bob_project}", bob,
                    json={"status": "accepted"})
    assert r.status_code == 200
    assert [i["id"] for i in api.get(f"{V2}/images", bob).json()["images"]] == [shared["id"]]


@pytest.mark.parametrize("limit", [1, 2])
def test_list_sort_and_pagination(api: Api, admin_token: str, limit: int) -> None:
    for name in ("c", "a", "b"):
        create(api, admin_token, name=name)
    seen: list[str] = []
    url = f"{V2}/images?sort=name:asc&limit={limit}"
    while url:
        body = api.get(url.replace("/v2", V2, 1) if url.startswith("/v2") else url,
                       admin_token).json()
        seen += [i["name"] for i in body["images"]]
        url = body.get("next", "")
    assert seen == ["a", "b", "c"]
