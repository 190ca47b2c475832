"""In-process API tests for the createBackup server action (both databases), with the fake
driver taking the snapshots: 202 and Location as Tempest's 2.1 schema expects, the backup
image's properties, rotation of the oldest backups of one type, rotation 0, a failed backup,
the instance action, and Nova's 400/403/409 answers."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
from nova_checks import fault, valid
from tempest.lib.api_schema.response.compute.v2_1 import servers as servers21
from tempest.lib.api_schema.response.compute.v2_26 import servers as servers226
from test_servers_api import WAIT, Compute
from test_servers_api import compute as compute  # fixtures: a cloud with the fake driver
from test_servers_api import disk_image as disk_image

from picocloud.compute.virt.errors import HypervisorError
from picocloud.image.models import Image

IMAGES = "/image/v2/images"


def backup(c: Compute, token: str, server_id: str, **spec: Any) -> httpx.Response:
    return c.act(token, server_id, "createBackup",
                 {"name": "b", "backup_type": "daily", "rotation": 1, **spec})  # fmt: skip


def image_of(r: httpx.Response) -> str:
    valid(servers21.create_backup, r)  # 2.1-2.44: 202 and no body
    return r.headers["location"].rsplit("/", 1)[-1]


def active(c: Compute, token: str, image_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while (image := c.api.get(f"{IMAGES}/{image_id}", token).json())["status"] != "active":
        assert time.monotonic() < deadline, image
        time.sleep(0.05)
    return dict(image)


def age(c: Compute, image_id: str, hours: int) -> None:
    """Make a backup look `hours` older: created_at counts whole seconds, and these tests
    take several backups in one."""
    with c.cloud.session() as db:
        image = db.get(Image, image_id)
        assert image is not None
        image.created_at -= timedelta(hours=hours)
        db.commit()


def backups(c: Compute, token: str, server_id: str, backup_type: str) -> list[str]:
    """The server's backups of one type, oldest first, as Tempest's test_create_backup lists
    them (Glance's property filters)."""
    query = {"image_type": "backup", "backup_type": backup_type, "instance_uuid": server_id,
             "sort_key": "created_at", "sort_dir": "asc"}  # fmt: skip
    r = c.api.get(IMAGES, token, params=query)
    assert r.status_code == 200, r.text
    return [i["name"] for i in r.json()["images"]]


def test_backup_image_and_rotation(compute: Compute) -> None:
    c = compute
    token, project = c.member("backup-proj")
    me = c.api.get("/identity/v3/auth/tokens", token, headers={"X-Subject-Token": token})
    user_id = me.json()["token"]["user"]["id"]
    server_id = c.boot(token)
    r = backup(c, token, server_id, name="daily-1", rotation=2, metadata={"purpose": "nightly"})
    first = image_of(r)
    assert r.headers["location"].endswith(f"{IMAGES}/{first}")
    image = active(c, token, first)
    assert image["name"] == "daily-1" and image["purpose"] == "nightly"
    assert (image["image_type"], image["backup_type"]) == ("backup", "daily")
    assert image["instance_uuid"] == server_id and image["base_image_ref"] == c.image_id
    assert image["user_id"] == user_id and image["owner"] == project
    assert image["visibility"] == "private" and image["disk_format"] == "qcow2"
    assert image["size"] > 0
    assert c.wait(token, server_id, "ACTIVE")["OS-EXT-STS:task_state"] is None
    age(c, first, 2)
    second = image_of(backup(c, token, server_id, name="daily-2", rotation="2"))
    active(c, token, second)
    c.wait(token, server_id, "ACTIVE")
    age(c, second, 1)
    assert backups(c, token, server_id, "daily") == ["daily-1", "daily-2"]
    # A weekly backup counts only against weekly ones.
    weekly = image_of(backup(c, token, server_id, name="weekly-1", backup_type="weekly"))
    active(c, token, weekly)
    c.wait(token, server_id, "ACTIVE")
    assert backups(c, token, server_id, "daily") == ["daily-1", "daily-2"]
    # The third daily backup with rotation 2 deletes the oldest, its data too.
    third = image_of(backup(c, token, server_id, name="daily-3", rotation=2))
    active(c, token, third)
    c.wait(token, server_id, "ACTIVE")
    assert backups(c, token, server_id, "daily") == ["daily-2", "daily-3"]
    assert c.api.get(f"{IMAGES}/{first}", token).status_code == 404
    assert c.cloud.images.path(first) is None and c.cloud.images.path(third) is not None
    # Rotation 1 leaves only the new one; rotation 0 (no Location, as Nova) leaves none.
    assert backups(c, token, server_id, "weekly") == ["weekly-1"]
    r = backup(c, token, server_id, name="weekly-2", backup_type="weekly", rotation=0)
    valid(servers21.create_backup, r)
    assert "location" not in r.headers
    c.wait(token, server_id, "ACTIVE")
    assert backups(c, token, server_id, "weekly") == []
    assert c.api.get(f"{IMAGES}/{weekly}", token).status_code == 404
    assert backups(c, token, server_id, "daily") == ["daily-2", "daily-3"]
    # Each backup is an instance action whose event the agent recorded.
    path = f"/servers/{server_id}/os-instance-actions"
    listed = valid(servers226.list_instance_actions, c.call("GET", path, c.admin))
    names = [a["action"] for a in listed["instanceActions"]]
    assert names == ["createBackup"] * 5 + ["create"]
    request_id = r.headers["x-openstack-request-id"]
    shown = c.call("GET", f"{path}/{request_id}", c.admin)
    events = valid(servers226.show_instance_action, shown)["instanceAction"]["events"]
    assert [(e["event"], e["result"]) for e in events] == [("compute_image_backup", "Success")]


def test_backup_of_a_stopped_or_locked_server(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    c.act(c.admin, server_id, "os-stop")
    c.wait(c.admin, server_id, "SHUTOFF")
    c.act(c.admin, server_id, "lock")  # as Nova, a lock does not stop a backup
    active(c, c.admin, image_of(backup(c, c.admin, server_id)))
    assert c.wait(c.admin, server_id, "SHUTOFF")["OS-EXT-STS:task_state"] is None


def test_failed_backup_deletes_its_image(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    kept = image_of(backup(c, c.admin, server_id, name="good", rotation=1))
    active(c, c.admin, kept)
    c.wait(c.admin, server_id, "ACTIVE")
    c.driver.fail["snapshot"] = HypervisorError("the disk went away")
    r = backup(c, c.admin, server_id, name="bad", rotation=1)
    failed = image_of(r)
    assert c.settle(c.admin, server_id)["status"] == "ACTIVE"
    assert c.api.get(f"{IMAGES}/{failed}", c.admin).status_code == 404
    assert backups(c, c.admin, server_id, "daily") == ["good"]  # no rotation after a failure
    action = c.call("GET", f"/servers/{server_id}/os-instance-actions/"
                    f"{r.headers['x-openstack-request-id']}", c.admin)  # fmt: skip
    events = valid(servers226.show_instance_action, action)["instanceAction"]["events"]
    assert [(e["event"], e["result"]) for e in events] == [("compute_image_backup", "Error")]


def test_backup_validation_is_400(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    good = {"name": "b", "backup_type": "daily", "rotation": 1}
    bad: list[Any] = [
        None, [], {"backup_type": "daily", "rotation": 1}, {**good, "name": ""},
        {**good, "name": " padded"}, {**good, "name": "x" * 256}, {**good, "name": 7},
        {"name": "b", "rotation": 1}, {**good, "backup_type": 1},
        {"name": "b", "backup_type": "daily"}, {**good, "rotation": -1},
        {**good, "rotation": "-1"}, {**good, "rotation": "two"}, {**good, "rotation": 1.5},
        {**good, "rotation": True}, {**good, "rotation": None}, {**good, "metadata": []},
        {**good, "metadata": {"k": 1}}, {**good, "metadata": {"k": "v" * 256}},
        {**good, "metadata": {"bad/key": "v"}}, {**good, "extra": 1},
    ]
    for body in bad:
        fault(c.act(c.admin, server_id, "createBackup", body), 400, "badRequest")
    message = fault(backup(c, c.admin, server_id, rotation=-1), 400, "badRequest")
    assert message.startswith("Invalid input for field/attribute rotation.")
    # More metadata than the metadata_items quota: 403, before anything is recorded.
    admin_project = c.api.get("/identity/v3/auth/tokens", c.admin, headers={
        "X-Subject-Token": c.admin}).json()["token"]["project"]["id"]  # fmt: skip
    r = c.call("PUT", f"/os-quota-sets/{admin_project}", c.admin,
               json={"quota_set": {"metadata_items": 1}})  # fmt: skip
    assert r.status_code == 200, r.text
    too_many = backup(c, c.admin, server_id, metadata={"a": "1", "b": "2"})
    assert fault(too_many, 403, "forbidden") == "Image metadata limit exceeded"
    assert c.show(c.admin, server_id)["OS-EXT-STS:task_state"] is None
    assert backups(c, c.admin, server_id, "daily") == []


def test_backup_in_the_wrong_state_is_409(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    c.act(c.admin, server_id, "os-resetState", {"state": "error"})
    message = fault(backup(c, c.admin, server_id), 409, "conflictingRequest")
    assert message == f"Cannot 'createBackup' instance {server_id} while it is in vm_state error"
    c.act(c.admin, server_id, "os-resetState", {"state": "active"})
    c.act(c.admin, server_id, "resize", {"flavorRef": "84"})
    c.wait(c.admin, server_id, "VERIFY_RESIZE")
    fault(backup(c, c.admin, server_id), 409, "conflictingRequest")
    assert backups(c, c.admin, server_id, "daily") == []
    # One backup at a time: the second is refused while the first is being taken.
    c.act(c.admin, server_id, "confirmResize")
    c.wait(c.admin, server_id, "ACTIVE")
    c.agent.stop()  # nobody takes the first backup, so it stays in progress
    image_of(backup(c, c.admin, server_id))
    message = fault(backup(c, c.admin, server_id), 409, "conflictingRequest")
    assert "task_state image_backup" in message
