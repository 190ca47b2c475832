"""In-process tests of image locations (Glance's show_multiple_locations and http store): a
cloud with `image_locations` on that may read from loopback, where a test web server runs."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import BACKENDS, Api, backend_cloud, make_cloud
from picocloud.cloud import Cloud
from webserver import Web

V2 = "/image/v2"
OCTETS = {"Content-Type": "application/octet-stream"}
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
DATA = bytes(range(256)) * 16


@pytest.fixture(params=BACKENDS)
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cloud]:
    c = backend_cloud(request, tmp_path, image_locations=True,
                      image_import_allowed_hosts="127.0.0.1")
    yield c
    c.close()


@pytest.fixture
def data_url(web: Web) -> str:
    web.routes["/disk.raw"] = (200, {}, DATA)
    return f"{web.url}/disk.raw"


def create(api: Api, token: str) -> dict[str, Any]:
    r = api.post(f"{V2}/images", token, json={"disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def patch(api: Api, token: str, image_id: str, *ops: dict[str, Any]) -> Any:
    return api.request("PATCH", f"{V2}/images/{image_id}", token, json=list(ops),
                       headers=PATCH)


def show(api: Api, token: str, image_id: str) -> dict[str, Any]:
    return api.get(f"{V2}/images/{image_id}", token).json()  # type: ignore[no-any-return]


def add(url: str, **extra: Any) -> dict[str, Any]:
    return {"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}, **extra}}


def test_locations_are_hidden_and_locked_when_turned_off(tmp_path: Path, data_url: str) -> None:
    cloud = make_cloud(tmp_path, image_import_allowed_hosts="127.0.0.1")
    api = Api(cloud)
    try:
        token = api.token()
        image = create(api, token)
        assert "locations" not in image
        r = patch(api, token, image["id"], add(data_url))
        assert r.status_code == 403, r.text
        assert show(api, token, image["id"])["status"] == "queued"
    finally:
        api.client.close()
        cloud.close()


def test_a_url_location_activates_the_image_and_serves_its_bytes(
        api: Api, admin_token: str, data_url: str, web: Web) -> None:
    image = create(api, admin_token)
    assert image["locations"] == [] and image["status"] == "queued"
    r = patch(api, admin_token, image["id"], add(data_url, metadata={"foo": "bar"}))
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["status"] == "active" and shown["size"] == len(DATA)
    assert shown["locations"] == [{"url": data_url, "metadata": {"foo": "bar"}}]
    assert shown["checksum"] is None and shown["os_hash_value"] is None
    assert shown["stores"] == "web"
    assert ("HEAD", "/disk.raw") in web.hits
    r = api.get(f"{V2}/images/{image['id']}/file", admin_token)
    assert r.status_code == 200 and r.content == DATA
    del web.routes["/disk.raw"]  # the URL stops answering: the data can't be read
    assert api.get(f"{V2}/images/{image['id']}/file", admin_token).status_code == 503


def test_replace_changes_metadata_only_and_the_last_location_stays(
        api: Api, admin_token: str, data_url: str) -> None:
    image = create(api, admin_token)
    second = data_url + "#new"
    assert patch(api, admin_token, image["id"], add(data_url)).status_code == 200
    r = patch(api, admin_token, image["id"], add(second, metadata={"speed": "88mph"}))
    assert r.status_code == 200, r.text
    locs = r.json()["locations"]
    assert [loc["url"] for loc in locs] == [data_url, second]
    assert patch(api, admin_token, image["id"], add(data_url)).status_code == 400  # duplicate
    replace = {"op": "replace", "path": "/locations"}
    assert patch(api, admin_token, image["id"], {**replace, "value": locs}).status_code == 200
    locs[0]["metadata"]["date"] = "2015-10-15"
    assert patch(api, admin_token, image["id"], {**replace, "value": locs}).status_code == 200
    for bad in ([locs[0]], [locs[0], {"url": data_url + "#other", "metadata": {}}]):
        r = patch(api, admin_token, image["id"], {**replace, "value": bad})
        assert r.status_code == 400, r.text
    assert show(api, admin_token, image["id"])["locations"] == locs

    member = api.member(admin_token, "locowner")[0]
    own = create(api, member)
    assert patch(api, member, own["id"], add(data_url), add(second)).status_code == 200
    remove = {"op": "remove", "path": "/locations/0"}
    assert patch(api, member, own["id"], remove).status_code == 403  # admins remove locations
    assert patch(api, admin_token, own["id"], remove).status_code == 200
    assert [loc["url"] for loc in show(api, member, own["id"])["locations"]] == [second]
    r = patch(api, admin_token, own["id"], remove)
    assert r.status_code == 403 and "last location" in r.text


@pytest.mark.parametrize("url,why", [
    ("gopher://info.cern.ch", "only http and https"),
    ("http://127.0.0.1:1/nothing", "Invalid location"),
    ("http://169.254.169.254/latest", "does not pass filtering"),
])
def test_bad_locations_are_refused_and_change_nothing(
        api: Api, admin_token: str, web: Web, url: str, why: str) -> None:
    image = create(api, admin_token)
    r = patch(api, admin_token, image["id"], add(url))
    assert r.status_code == 400 and why in r.text, r.text
    shown = show(api, admin_token, image["id"])
    assert shown["status"] == "queued" and shown["locations"] == []


def test_a_missing_url_is_refused(api: Api, admin_token: str, web: Web) -> None:
    image = create(api, admin_token)
    r = patch(api, admin_token, image["id"], add(f"{web.url}/missing"))
    assert r.status_code == 400 and "404" in r.text, r.text


def test_validation_data_is_recorded_and_must_agree(api: Api, admin_token: str,
                                                    data_url: str) -> None:
    image = create(api, admin_token)
    values = {"checksum": "1" * 32, "os_hash_algo": "sha512", "os_hash_value": "deadbeef" * 16}
    r = patch(api, admin_token, image["id"], add(data_url, validation_data=values))
    assert r.status_code == 200, r.text
    shown = r.json()
    assert {k: shown[k] for k in values} == values
    assert "validation_data" not in shown["locations"][0]
    r = patch(api, admin_token, image["id"], add(data_url + "#2", validation_data=values))
    assert r.status_code == 200, r.text
    for key, other in (("checksum", "2" * 32), ("os_hash_value", "beefdead" * 16),
                       ("os_hash_algo", "sha256")):
        wrong = {**values, key: other}
        r = patch(api, admin_token, image["id"], add(data_url + "#3", validation_data=wrong))
        assert r.status_code == 409, r.text
    # As in Glance, validation data that can't be right conflicts (409) too.
    for bad in ({"os_hash_algo": "sha123", "os_hash_value": "ab"},
                {"os_hash_value": "ab" * 64}, {"checksum": "xyz"}, {"size": 3}):
        r = patch(api, admin_token, image["id"], add(data_url + "#4", validation_data=bad))
        assert r.status_code == 409, r.text
    assert len(show(api, admin_token, image["id"])["locations"]) == 2


def test_an_uploaded_image_shows_its_store_copy(api: Api, admin_token: str) -> None:
    image = create(api, admin_token)
    r = api.request("PUT", f"{V2}/images/{image['id']}/file", admin_token, content=DATA,
                    headers=OCTETS)
    assert r.status_code == 204
    shown = show(api, admin_token, image["id"])
    [loc] = shown["locations"]
    assert loc["url"].startswith("file:///") and loc["metadata"] == {"store": "local"}
    assert hashlib.md5(Path(loc["url"][len("file://"):]).read_bytes()).hexdigest() == \
        shown["checksum"]
    r = patch(api, admin_token, image["id"], {"op": "remove", "path": "/locations/0"})
    assert r.status_code == 403


def test_other_projects_do_not_see_locations(api: Api, admin_token: str, data_url: str) -> None:
    image = create(api, admin_token)
    assert patch(api, admin_token, image["id"], add(data_url),
                 {"op": "replace", "path": "/visibility", "value": "public"}).status_code == 200
    other = api.member(admin_token, "locother")[0]
    shown = show(api, other, image["id"])
    assert shown["status"] == "active" and "locations" not in shown
    r = patch(api, other, image["id"], add(data_url + "#x"))
    assert r.status_code in (403, 404)


def tasks_of(api: Api, token: str, image_id: str) -> list[dict[str, Any]]:
    """The image's tasks once none is processing any more."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = api.get(f"{V2}/images/{image_id}/tasks", token)
        assert r.status_code == 200, r.text
        found = r.json()["tasks"]
        if found and all(t["status"] in ("success", "failure") for t in found):
            return found  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"tasks of {image_id} did not finish")


def add_location(api: Api, token: str, image_id: str, **body: Any) -> Any:
    return api.post(f"{V2}/images/{image_id}/locations", token, json=body)


def test_location_import_hashes_the_bytes_then_activates(
        api: Api, admin_token: str, data_url: str) -> None:
    assert api.get("/image").json()["versions"][0]["id"] == "v2.17"
    image = create(api, admin_token)
    sha256 = hashlib.sha256(DATA).hexdigest()
    r = add_location(api, admin_token, image["id"], url=data_url,
                     validation_data={"os_hash_algo": "sha256", "os_hash_value": sha256})
    assert r.status_code == 202, r.text
    [task] = tasks_of(api, admin_token, image["id"])
    assert task["type"] == "location_import" and task["status"] == "success", task
    assert task["input"]["loc_url"] == data_url and task["expires_at"]
    shown = show(api, admin_token, image["id"])
    assert shown["status"] == "active" and shown["size"] == len(DATA)
    assert shown["os_hash_algo"] == "sha256" and shown["os_hash_value"] == sha256
    assert shown["checksum"] == hashlib.md5(DATA).hexdigest()
    assert shown["locations"] == [{"url": data_url, "metadata": {}}]
    assert shown["stores"] == "web"
    assert api.get(f"{V2}/images/{image['id']}/file", admin_token).content == DATA
    assert not list((api.cloud.settings.data_dir / "images").rglob(image["id"]))  # not copied
    assert add_location(api, admin_token, image["id"], url=data_url).status_code == 409
    r = api.get(f"{V2}/images/{image['id']}/locations", admin_token)
    assert r.status_code == 200 and r.json() == shown["locations"]

    plain = create(api, admin_token)
    assert add_location(api, admin_token, plain["id"], url=data_url).status_code == 202
    assert tasks_of(api, admin_token, plain["id"])[0]["status"] == "success"
    shown = show(api, admin_token, plain["id"])
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(DATA).hexdigest()


def test_location_import_failures_leave_the_image_queued(
        api: Api, admin_token: str, data_url: str, web: Web) -> None:
    image = create(api, admin_token)
    r = add_location(api, admin_token, image["id"], url=data_url,
                     validation_data={"os_hash_algo": "sha512", "os_hash_value": "beefdead" * 16})
    assert r.status_code == 202
    [task] = tasks_of(api, admin_token, image["id"])
    assert task["status"] == "failure" and "sha512" in task["message"]
    shown = show(api, admin_token, image["id"])  # the URL stays listed, as in Glance
    assert shown["status"] == "queued" and shown["locations"] == [{"url": data_url,
                                                                    "metadata": {}}]
    assert shown["checksum"] is None and shown["os_hash_algo"] is None
    assert shown["stores"] == "web"
    assert not list((api.cloud.settings.data_dir / "images").rglob(image["id"]))
    assert api.get(f"{V2}/images/{image['id']}/file", admin_token).status_code == 204

    web.routes["/not-qcow2"] = (200, {}, b"plain bytes" * 100)
    qcow = api.post(f"{V2}/images", admin_token,
                    json={"disk_format": "qcow2", "container_format": "bare"}).json()
    assert add_location(api, admin_token, qcow["id"], url=f"{web.url}/not-qcow2").status_code \
        == 202
    [task] = tasks_of(api, admin_token, qcow["id"])
    assert task["status"] == "failure" and "refused" in task["message"]
    assert show(api, admin_token, qcow["id"])["status"] == "queued"


@pytest.mark.parametrize("body", [
    {"url": "gopher://x"},
    {"url": "http://169.254.169.254/"},
    {"url": "URL", "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "ab" * 15}},
    {"url": "URL", "validation_data": {"os_hash_value": "ab" * 64}},
    {"url": "URL", "validation_data": {"os_hash_algo": "sha123", "os_hash_value": "ab" * 64}},
    {"url": "URL", "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "ab" * 32}},
    {"url": "URL", "size": 3},
])
def test_bad_location_imports_are_400(api: Api, admin_token: str, data_url: str,
                                      body: dict[str, Any]) -> None:
    image = create(api, admin_token)
    if body["url"] == "URL":
        body = {**body, "url": data_url}
    assert add_location(api, admin_token, image["id"], **body).status_code == 400
    shown = show(api, admin_token, image["id"])
    assert shown["status"] == "queued"
    assert api.get(f"{V2}/images/{image['id']}/tasks", admin_token).json()["tasks"] == []


def test_only_services_and_admins_list_locations(api: Api, admin_token: str) -> None:
    member = api.member(admin_token, "locreader")[0]
    image = create(api, member)
    assert api.get(f"{V2}/images/{image['id']}/locations", member).status_code == 403


def test_stores_info_shows_the_read_only_web_store(api: Api, admin_token: str) -> None:
    stores = api.get(f"{V2}/info/stores", admin_token).json()["stores"]
    assert stores[-1] == {"id": "web", "description": "Image data at http(s) URLs",
                          "read-only": "true"}
    detail = api.get(f"{V2}/info/stores/detail", admin_token).json()["stores"]
    assert [s["type"] for s in detail] == ["file", "http"]
    member = api.member(admin_token, "locdetail")[0]
    assert api.get(f"{V2}/info/stores/detail", member).status_code == 403
    usage = api.get(f"{V2}/info/usage", member).json()["usage"]
    assert usage["image_count_total"] == {"limit": -1, "usage": 0}


def test_import_tasks_are_listed_with_their_request(api: Api, admin_token: str) -> None:
    image = create(api, admin_token)
    r = api.request("PUT", f"{V2}/images/{image['id']}/stage", admin_token, content=DATA,
                    headers=OCTETS)
    assert r.status_code == 204
    r = api.post(f"{V2}/images/{image['id']}/import", admin_token,
                 json={"method": {"name": "glance-direct"}})
    assert r.status_code == 202
    [task] = tasks_of(api, admin_token, image["id"])
    assert task["type"] == "api_image_import" and task["status"] == "success"
    assert task["request_id"] == r.headers["x-openstack-request-id"]
    assert task["input"]["import_req"]["method"]["name"] == "glance-direct"
    assert show(api, admin_token, image["id"])["status"] == "active"
    listed = api.get(f"{V2}/tasks", admin_token).json()["tasks"]
    assert [t["id"] for t in listed] == [task["id"]] and "input" not in listed[0]
    whole = api.get(f"{V2}/tasks/{task['id']}", admin_token).json()
    assert whole["input"]["import_req"]["method"]["name"] == "glance-direct"
    assert api.get(f"{V2}/tasks/{uuid.uuid4()}", admin_token).status_code == 404
    member = api.member(admin_token, "tasklooker")[0]
    assert api.get(f"{V2}/tasks", member).status_code == 403
