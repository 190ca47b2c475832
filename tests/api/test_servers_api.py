"""In-process API tests for servers (both databases), with this host's agent running the fake
hypervisor driver: create, list filters, show, update, every action's state round trip,
quotas, scheduling failures, multi-create, metadata, instance actions, delete, and isolation
between projects. Successful responses are checked against Tempest's schema for the
microversion asked for (2.37 unless a test says otherwise)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nova_checks import fault, valid
from tempest.lib.api_schema.response.compute.v2_1 import servers as servers21
from tempest.lib.api_schema.response.compute.v2_9 import servers as servers29
from tempest.lib.api_schema.response.compute.v2_26 import servers as servers226

from conftest import BACKENDS, Api, backend_cloud
from picocloud.cloud import Cloud
from picocloud.compute.agent import HostAgent
from picocloud.compute.flavors_seed import seed_flavors
from picocloud.compute.virt.base import PowerState
from picocloud.compute.virt.errors import HypervisorError
from picocloud.compute.virt.fake import FakeDriver
from picocloud.image.builtin import register_file

C = "/compute/v2.1"
MV = {"OpenStack-API-Version": "compute 2.37"}
TINY, SMALL, M1_SMALL = "42", "84", "2"  # p1.tiny 128 MiB, p1.small 256 MiB, m1.small 2 GiB
HOST = "node1"
WAIT = 15.0  # seconds an agent task may take (the fake driver is instant; CI may be slow)




@pytest.fixture(scope="session")
def disk_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed: the image service inspects a real qcow2")
    path = tmp_path_factory.mktemp("images") / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


@dataclass
class Compute:
    cloud: Cloud
    api: Api
    agent: HostAgent
    image_id: str
    admin: str  # an admin token, scoped to project admin

    @property
    def driver(self) -> FakeDriver:
        driver = self.agent.driver
        assert isinstance(driver, FakeDriver)
        return driver

    def call(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        headers = {**MV, **(kw.pop("headers", None) or {})}
        return self.api.request(method, f"{C}{path}", token, headers=headers, **kw)

    def create(self, token: str, name: str = "vm", flavor: str = TINY,
               **extra: Any) -> httpx.Response:  # fmt: skip
        server = {"name": name, "imageRef": self.image_id, "flavorRef": flavor,
                  "networks": "none", **extra}  # fmt: skip
        return self.call("POST", "/servers", token, json={"server": server})

    def boot(self, token: str, name: str = "vm", flavor: str = TINY, **extra: Any) -> str:
        """Create one server and wait until it is ACTIVE; its id."""
        r = self.create(token, name, flavor, **extra)
        server_id = str(valid(servers21.create_server, r)["server"]["id"])
        self.wait(token, server_id, "ACTIVE")
        return server_id

    def show(self, token: str, server_id: str) -> dict[str, Any]:
        r = self.call("GET", f"/servers/{server_id}", token)
        return dict(valid(servers226.get_server, r)["server"])

    def settle(self, token: str, server_id: str) -> dict[str, Any]:
        """The server once no task is in progress (whatever its status)."""
        deadline = time.monotonic() + WAIT
        while (server := self.show(token, server_id))["OS-EXT-STS:task_state"] is not None:
            assert time.monotonic() < deadline, server
            time.sleep(0.05)
        return server

    def wait(self, token: str, server_id: str, status: str) -> dict[str, Any]:
        """The server once it has `status` and no task in progress."""
        deadline = time.monotonic() + WAIT
        while True:
            server = self.show(token, server_id)
            if server["status"] == status and server["OS-EXT-STS:task_state"] is None:
                return server
            if time.monotonic() > deadline:
                raise AssertionError(f"server {server_id} is {server['status']} "
                                     f"({server['OS-EXT-STS:task_state']}), not {status}")
            time.sleep(0.05)

    def act(self, token: str, server_id: str, action: str, payload: Any = None) -> httpx.Response:
        return self.call("POST", f"/servers/{server_id}/action", token,
                         json={action: payload})  # fmt: skip

    def member(self, name: str, role: str = "member",
               project_id: str | None = None) -> tuple[str, str]:
        """A new user holding `role` in a new project named `name` (or in `project_id`):
        (token, project id)."""
        token, project, _user = self.api.member(self.admin, name, role, project_id)
        return token, project


@contextlib.contextmanager
def running_compute(request: pytest.FixtureRequest, tmp_path: Path, disk_image: Path,
                    **settings: Any) -> Iterator[Compute]:
    """A cloud (on the fixture's backend) with flavors, an image and a fake-driver agent."""
    cloud = backend_cloud(request, tmp_path, compute_driver="fake", compute_host=HOST,
                          **settings)
    api = Api(cloud)
    try:
        with cloud.session() as db:
            seed_flavors(db)
            db.commit()
        image = register_file(cloud, disk_image)
        agent = cloud.start_agent()
        yield Compute(cloud, api, agent, image.id, api.token())
    finally:
        api.client.close()
        cloud.close()


@pytest.fixture(params=BACKENDS)
def compute(request: pytest.FixtureRequest, tmp_path: Path, disk_image: Path) -> Iterator[Compute]:
    with running_compute(request, tmp_path, disk_image) as c:
        yield c


# -- create, show, list ------------------------------------------------------------------------
def test_create_show_and_list_match_tempest(compute: Compute) -> None:
    c = compute
    r = c.create(c.admin, "first", metadata={"purpose": "test"})
    body = valid(servers21.create_server, r)["server"]
    assert set(body) == {"id", "links", "OS-DCF:diskConfig", "security_groups"}
    assert r.headers["location"] == body["links"][0]["href"]
    assert r.headers["location"].endswith(f"/compute/v2.1/servers/{body['id']}")
    assert r.headers["openstack-api-version"] == "compute 2.37"
    server = c.wait(c.admin, body["id"], "ACTIVE")
    assert server["name"] == "first" and server["metadata"] == {"purpose": "test"}
    assert server["image"]["id"] == c.image_id and server["flavor"]["id"] == TINY
    assert server["OS-EXT-STS:vm_state"] == "active"
    assert server["OS-EXT-STS:power_state"] == PowerState.RUNNING
    assert server["OS-EXT-SRV-ATTR:host"] == HOST  # admins see the host
    assert server["OS-SRV-USG:launched_at"] and server["progress"] == 100
    assert c.driver.state(body["id"]) == PowerState.RUNNING
    index = valid(servers226.list_servers, c.call("GET", "/servers", c.admin))["servers"]
    assert [s["id"] for s in index] == [body["id"]]
    detail = valid(servers226.list_servers_detail, c.call("GET", "/servers/detail", c.admin))
    assert [s["status"] for s in detail["servers"]] == ["ACTIVE"]
    # Each microversion's own schema: 2.1 (no header) and 2.9 (adds `locked`).
    old = c.api.get(f"{C}/servers/{body['id']}", c.admin)
    assert "locked" not in valid(servers21.get_server, old)["server"]
    v29 = c.call("GET", f"/servers/{body['id']}", c.admin,
                 headers={"OpenStack-API-Version": "compute 2.9"})  # fmt: skip
    assert valid(servers29.get_server, v29)["server"]["locked"] is False
    # A member sees the extended status, not the host.
    token, _ = c.member("viewer-proj")
    mine = c.show(token, c.boot(token))
    assert mine["OS-EXT-STS:vm_state"] == "active" and "OS-EXT-SRV-ATTR:host" not in mine


def test_create_validation(compute: Compute) -> None:
    c = compute
    image, network = c.image_id, {"networks": "none"}
    old = c.api.post(f"{C}/servers", c.admin, json={"server": {
        "name": "x", "imageRef": image, "flavorRef": TINY, **network}})  # fmt: skip
    assert "2.37" in fault(old, 400, "badRequest")  # "none" needs 2.37
    no_net = c.call("POST", "/servers", c.admin, json={"server": {
        "name": "x", "imageRef": image, "flavorRef": TINY}})  # fmt: skip
    fault(no_net, 400, "badRequest")  # and from 2.37 `networks` is required
    fault(c.create(c.admin, flavor="999"), 400, "badRequest")
    fault(c.create(c.admin, imageRef=str(uuid.uuid4())), 400, "badRequest")
    fault(c.create(c.admin, name=""), 400, "badRequest")
    fault(c.create(c.admin, min_count=3, max_count=2), 400, "badRequest")
    fault(c.create(c.admin, user_data="not base64!"), 400, "badRequest")
    assert valid(servers226.list_servers, c.call("GET", "/servers", c.admin))["servers"] == []


def test_list_filters(compute: Compute) -> None:
    c = compute
    before = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    web1, web2 = c.boot(c.admin, "web-1"), c.boot(c.admin, "web-2")
    db = c.boot(c.admin, "db", flavor=SMALL)
    valid(servers21.server_actions_common_schema, c.act(c.admin, db, "os-stop"))
    c.wait(c.admin, db, "SHUTOFF")

    def ids(query: str, token: str | None = None) -> set[str]:
        r = c.call("GET", f"/servers/detail?{query}", token or c.admin)
        return {s["id"] for s in valid(servers226.list_servers_detail, r)["servers"]}

    assert ids("name=^web") == {web1, web2}
    assert ids("name=b-2$") == {web2}
    assert ids("name=nomatch") == set()
    assert ids("status=SHUTOFF") == {db}
    assert ids("status=ACTIVE") == {web1, web2}
    assert ids("status=ACTIVE&status=SHUTOFF") == {web1, web2, db}
    assert ids(f"flavor={SMALL}") == {db}
    assert ids(f"image={c.image_id}") == {web1, web2, db}
    assert ids(f"changes-since={before}") == {web1, web2, db}
    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ids(f"changes-since={future}") == set()
    fault(c.call("GET", "/servers/detail?changes-since=yesterday", c.admin), 400, "badRequest")
    # Paging: limit and marker, with a `next` link while more remain.
    page = valid(servers226.list_servers, c.call("GET", "/servers?limit=2", c.admin))
    assert len(page["servers"]) == 2 and page["servers_links"][0]["rel"] == "next"
    rest = c.call("GET", f"/servers?limit=2&marker={page['servers'][-1]['id']}", c.admin)
    last = valid(servers226.list_servers, rest)
    assert len(last["servers"]) == 1 and "servers_links" not in last
    # Another project's server: only an admin's all_tenants listing shows it.
    token, project = c.member("tenant-b")
    theirs = c.boot(token, "web-theirs")
    assert ids("name=^web", token) == {theirs}
    assert ids("name=^web") == {web1, web2}
    assert ids("all_tenants=1&name=^web") == {web1, web2, theirs}
    assert ids(f"all_tenants=1&project_id={project}") == {theirs}
    denied = c.call("GET", "/servers/detail?all_tenants=1", token)
    fault(denied, 403, "forbidden")


def test_show_update_and_console(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin, "before")
    r = c.call("PUT", f"/servers/{server_id}", c.admin, json={"server": {"name": "after"}})
    assert r.status_code == 200, r.text
    assert r.json()["server"]["name"] == "after"
    assert c.show(c.admin, server_id)["name"] == "after"
    bad = c.call("PUT", f"/servers/{server_id}", c.admin, json={"server": {"flavor": "x"}})
    fault(bad, 400, "badRequest")
    fault(c.call("PUT", f"/servers/{server_id}", c.admin, json={"server": {"name": ""}}),
          400, "badRequest")  # fmt: skip
    out = valid(servers21.get_console_output,
                c.act(c.admin, server_id, "os-getConsoleOutput", {}))["output"]  # fmt: skip
    assert "picocloud-guest ready hostname=tiny ip=none metadata=none" in out
    # `length` as Nova slices it: the last pieces of the text split on "\n" (so the empty
    # piece after the final newline is one of them).
    two = c.act(c.admin, server_id, "os-getConsoleOutput", {"length": 2})
    assert valid(servers21.get_console_output, two)["output"] == (
        "picocloud-guest ready hostname=tiny ip=none metadata=none\n"
    )
    one = c.act(c.admin, server_id, "os-getConsoleOutput", {"length": 1})
    assert valid(servers21.get_console_output, one)["output"] == ""
    fault(c.call("GET", f"/servers/{uuid.uuid4()}", c.admin), 404, "itemNotFound")


def test_update_body_matches_tempest(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    update = c.call("PUT", f"/servers/{server_id}", c.admin, json={"server": {"name": "n"}})
    valid(servers226.update_server, update)


def test_description_from_2_19(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin, description="lab machine")
    v219 = {"OpenStack-API-Version": "compute 2.19"}
    r = c.call("GET", f"/servers/{server_id}", c.admin, headers=v219)
    assert r.json()["server"]["description"] == "lab machine"
    r = c.call("PUT", f"/servers/{server_id}", c.admin, headers=v219,
               json={"server": {"description": None}})
    assert r.status_code == 200 and r.json()["server"]["description"] is None
    r = c.call("PUT", f"/servers/{server_id}", c.admin,
               headers={"OpenStack-API-Version": "compute 2.18"},
               json={"server": {"description": "x"}})
    assert r.status_code == 400


# -- actions -----------------------------------------------------------------------------------
def test_power_pause_suspend_round_trips(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    steps = [
        ("os-stop", None, "SHUTOFF", "stopped", PowerState.SHUTDOWN),
        ("os-start", None, "ACTIVE", "active", PowerState.RUNNING),
        ("reboot", {"type": "SOFT"}, "ACTIVE", "active", PowerState.RUNNING),
        ("reboot", {"type": "HARD"}, "ACTIVE", "active", PowerState.RUNNING),
        ("pause", None, "PAUSED", "paused", PowerState.PAUSED),
        ("unpause", None, "ACTIVE", "active", PowerState.RUNNING),
        ("suspend", None, "SUSPENDED", "suspended", PowerState.SUSPENDED),
        ("resume", None, "ACTIVE", "active", PowerState.RUNNING),
        ("os-stop", None, "SHUTOFF", "stopped", PowerState.SHUTDOWN),
        ("reboot", {"type": "HARD"}, "ACTIVE", "active", PowerState.RUNNING),  # boots it
    ]
    for action, payload, status, vm_state, power in steps:
        r = c.act(c.admin, server_id, action, payload)
        valid(servers21.server_actions_common_schema, r)
        server = c.wait(c.admin, server_id, status)
        assert server["OS-EXT-STS:vm_state"] == vm_state, action
        assert server["OS-EXT-STS:power_state"] == power, action
        assert c.driver.state(server_id) == power, action
    calls = [op for op, uuid_ in c.driver.calls if uuid_ == server_id]
    assert calls == ["spawn", "power_off", "power_on", "reboot", "reboot_hard", "pause",
                     "unpause", "suspend", "resume", "power_off", "reboot_hard"]
    boots = c.act(c.admin, server_id, "os-getConsoleOutput", {}).json()["output"]
    assert boots.count("picocloud-guest ready") == 5  # spawn, start, two reboots, hard reboot


def test_actions_from_the_wrong_state_are_409(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    for action, payload in [("os-start", None), ("unpause", None), ("resume", None),
                            ("confirmResize", None), ("revertResize", None)]:  # fmt: skip
        message = fault(c.act(c.admin, server_id, action, payload), 409, "conflictingRequest")
        assert "vm_state active" in message, action
    c.act(c.admin, server_id, "os-stop")
    c.wait(c.admin, server_id, "SHUTOFF")
    for action, payload in [("os-stop", None), ("pause", None), ("suspend", None),
                            ("reboot", {"type": "SOFT"})]:  # fmt: skip
        message = fault(c.act(c.admin, server_id, action, payload), 409, "conflictingRequest")
        assert "vm_state stopped" in message, action
    fault(c.act(c.admin, server_id, "reboot", {"type": "WARM"}), 400, "badRequest")
    fault(c.act(c.admin, server_id, "nosuchaction", {}), 400, "badRequest")
    assert c.show(c.admin, server_id)["status"] == "SHUTOFF"


def test_lock_unlock(compute: Compute) -> None:
    c = compute
    token, _ = c.member("locker")
    server_id = c.boot(token)
    valid(servers21.server_actions_common_schema, c.act(token, server_id, "lock"))
    v29 = {"OpenStack-API-Version": "compute 2.9"}
    show = c.call("GET", f"/servers/{server_id}", token, headers=v29)
    assert valid(servers29.get_server, show)["server"]["locked"] is True
    assert "locked" in fault(c.act(token, server_id, "os-stop"), 409, "conflictingRequest")
    locked_delete = c.call("DELETE", f"/servers/{server_id}", token)
    assert "locked" in fault(locked_delete, 409, "conflictingRequest")
    valid(servers21.server_actions_common_schema, c.act(c.admin, server_id, "os-stop"))
    c.wait(token, server_id, "SHUTOFF")  # an admin may act on a locked server
    valid(servers21.server_actions_common_schema, c.act(token, server_id, "unlock"))
    valid(servers21.server_actions_common_schema, c.act(token, server_id, "os-start"))
    c.wait(token, server_id, "ACTIVE")


def test_unlock_of_an_admin_lock_is_403(compute: Compute) -> None:
    c = compute
    token, _ = c.member("locked-by-admin")
    server_id = c.boot(token)
    c.act(c.admin, server_id, "lock")
    fault(c.act(token, server_id, "unlock"), 403, "forbidden")


def test_rebuild(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin, "old-name")
    r = c.act(c.admin, server_id, "rebuild",
              {"imageRef": c.image_id, "name": "new-name", "metadata": {"k": "v"}})  # fmt: skip
    body = valid(servers226.rebuild_server, r)["server"]
    assert body["id"] == server_id and body["status"] == "REBUILD"
    server = c.wait(c.admin, server_id, "ACTIVE")
    assert server["name"] == "new-name" and server["metadata"] == {"k": "v"}
    assert ("rebuild", server_id) in c.driver.calls
    fault(c.act(c.admin, server_id, "rebuild", {}), 400, "badRequest")
    gone = c.act(c.admin, server_id, "rebuild", {"imageRef": str(uuid.uuid4())})
    fault(gone, 400, "badRequest")
    # A stopped server is rebuilt without being started, as in Nova.
    c.act(c.admin, server_id, "os-stop")
    c.wait(c.admin, server_id, "SHUTOFF")
    c.act(c.admin, server_id, "rebuild", {"imageRef": c.image_id})
    server = c.wait(c.admin, server_id, "SHUTOFF")
    assert server["OS-EXT-STS:power_state"] == PowerState.SHUTDOWN
    assert c.driver.guests_[server_id].power == PowerState.SHUTDOWN


def test_resize_confirm_and_revert(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    valid(servers21.server_actions_common_schema,
          c.act(c.admin, server_id, "resize", {"flavorRef": SMALL}))  # fmt: skip
    server = c.wait(c.admin, server_id, "VERIFY_RESIZE")
    assert server["flavor"]["id"] == SMALL and server["OS-EXT-STS:vm_state"] == "resized"
    assert c.driver.guests_[server_id].spec.memory_mb == 256
    confirm = c.act(c.admin, server_id, "confirmResize")
    valid(servers21.server_actions_confirm_resize, confirm)
    server = c.wait(c.admin, server_id, "ACTIVE")
    assert server["flavor"]["id"] == SMALL
    assert ("confirm_resize", server_id) in c.driver.calls
    # Resize again, then revert: back to the flavor before.
    c.act(c.admin, server_id, "resize", {"flavorRef": M1_SMALL})
    c.wait(c.admin, server_id, "VERIFY_RESIZE")
    valid(servers21.server_actions_common_schema, c.act(c.admin, server_id, "revertResize"))
    server = c.wait(c.admin, server_id, "ACTIVE")
    assert server["flavor"]["id"] == SMALL
    assert server["OS-EXT-STS:power_state"] == PowerState.RUNNING
    assert ("revert_resize", server_id) in c.driver.calls
    assert c.driver.guests_[server_id].spec.memory_mb == 256
    same = c.act(c.admin, server_id, "resize", {"flavorRef": SMALL})
    fault(same, 400, "badRequest")


def test_resize_to_an_unknown_flavor_is_400(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    fault(c.act(c.admin, server_id, "resize", {"flavorRef": "999"}), 400, "badRequest")


def test_revert_resize_gives_the_guest_its_old_size(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    c.act(c.admin, server_id, "resize", {"flavorRef": M1_SMALL})
    c.wait(c.admin, server_id, "VERIFY_RESIZE")
    assert c.driver.guests_[server_id].spec.memory_mb == 2048
    c.act(c.admin, server_id, "revertResize")
    c.wait(c.admin, server_id, "ACTIVE")
    assert c.driver.guests_[server_id].spec.memory_mb == 128


def test_resize_of_a_stopped_server_keeps_it_stopped(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    c.act(c.admin, server_id, "os-stop")
    c.wait(c.admin, server_id, "SHUTOFF")
    c.act(c.admin, server_id, "resize", {"flavorRef": SMALL})
    c.settle(c.admin, server_id)
    c.cloud.wake_agents()  # one more reconcile pass must not change it
    time.sleep(0.3)
    server = c.show(c.admin, server_id)
    assert (server["status"], server["OS-EXT-STS:power_state"]) == (
        "VERIFY_RESIZE", PowerState.SHUTDOWN)
    valid(servers21.server_actions_confirm_resize, c.act(c.admin, server_id, "confirmResize"))
    assert c.wait(c.admin, server_id, "SHUTOFF")["flavor"]["id"] == SMALL


def test_create_image(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    r = c.act(c.admin, server_id, "createImage", {"name": "snap", "metadata": {"kind": "x"}})
    valid(servers21.create_backup, r)  # 2.1-2.44: 202, no body, the image in Location
    image_id = r.headers["location"].rsplit("/", 1)[-1]
    assert r.headers["location"].endswith(f"/image/v2/images/{image_id}")
    deadline = time.monotonic() + WAIT
    while (image := c.api.get(f"/image/v2/images/{image_id}", c.admin).json())["status"] != (
        "active"
    ):
        assert time.monotonic() < deadline, image
        time.sleep(0.05)
    assert image["name"] == "snap" and image["kind"] == "x"
    assert image["image_type"] == "snapshot" and image["instance_uuid"] == server_id
    assert image["disk_format"] == "qcow2" and image["size"] > 0
    assert c.wait(c.admin, server_id, "ACTIVE")["OS-EXT-STS:task_state"] is None
    fault(c.act(c.admin, server_id, "createImage", {}), 400, "badRequest")
    # The snapshot boots a new server.
    assert c.show(c.admin, c.boot(c.admin, "from-snap", imageRef=image_id))["image"]["id"] == (
        image_id
    )


# -- quotas, scheduling, failures --------------------------------------------------------------
def test_quota_exceeded_is_403_in_novas_format(compute: Compute) -> None:
    c = compute
    token, project = c.member("quota-proj")
    r = c.call("PUT", f"/os-quota-sets/{project}", c.admin,
               json={"quota_set": {"instances": 2, "cores": 2}})  # fmt: skip
    assert r.status_code == 200, r.text
    too_many = c.create(token, min_count=3, max_count=3)
    assert fault(too_many, 403, "forbidden") == (
        "Quota exceeded for cores, instances: Requested 3, 3, but already used 0, 0 of 2, 2 "
        "cores, instances"
    )
    c.boot(token, "one")
    big = c.create(token, flavor="3")  # m1.medium: 2 vCPUs, 1 + 2 > 2
    assert fault(big, 403, "forbidden") == (
        "Quota exceeded for cores: Requested 2, but already used 1 of 2 cores"
    )
    c.boot(token, "two")
    third = c.create(token)
    assert fault(third, 403, "forbidden") == (
        "Quota exceeded for cores, instances: Requested 1, 1, but already used 2, 2 of 2, 2 "
        "cores, instances"
    )
    assert len(c.call("GET", "/servers", token).json()["servers"]) == 2


def test_no_valid_host_is_error_with_fault(compute: Compute) -> None:
    c = compute
    r = c.call("POST", "/flavors", c.admin, json={"flavor": {
        "name": "huge", "vcpus": 1, "ram": 40000, "disk": 1, "id": "huge"}})  # fmt: skip
    assert r.status_code == 200, r.text
    server_id = valid(servers21.create_server, c.create(c.admin, flavor="huge"))["server"]["id"]
    server = c.show(c.admin, server_id)
    assert server["status"] == "ERROR" and server["OS-EXT-STS:vm_state"] == "error"
    assert server["fault"]["code"] == 500
    assert server["fault"]["message"].startswith("No valid host was found.")
    assert "RamFilter" in server["fault"]["message"]
    assert server["OS-EXT-SRV-ATTR:host"] is None
    assert ("spawn", server_id) not in c.driver.calls
    # It can still be deleted; it was never on a host.
    assert c.call("DELETE", f"/servers/{server_id}", c.admin).status_code == 204
    fault(c.call("GET", f"/servers/{server_id}", c.admin), 404, "itemNotFound")


def test_failed_spawn_is_error_with_fault(compute: Compute) -> None:
    c = compute
    token, _ = c.member("fault-proj")
    c.driver.fail["spawn"] = HypervisorError("disk full on the host")
    server_id = valid(servers21.create_server, c.create(token))["server"]["id"]
    server = c.wait(token, server_id, "ERROR")
    assert server["fault"]["code"] == 500
    assert server["fault"]["message"] == "disk full on the host"
    assert "details" not in server["fault"]  # the traceback is for admins
    assert "HypervisorError" in c.show(c.admin, server_id)["fault"]["details"]
    assert server_id not in c.driver.guests_
    # From ERROR a hard reboot is accepted, as in Nova.
    valid(servers21.server_actions_common_schema,
          c.act(token, server_id, "reboot", {"type": "HARD"}))  # fmt: skip


def test_multi_create(compute: Compute) -> None:
    c = compute
    r = c.create(c.admin, "batch", min_count=2, max_count=3, return_reservation_id=True)
    assert r.status_code == 202, r.text
    reservation = r.json()["reservation_id"]
    assert set(r.json()) == {"reservation_id"}
    listing = c.call("GET", f"/servers/detail?reservation_id={reservation}", c.admin)
    servers = valid(servers226.list_servers_detail, listing)["servers"]
    assert sorted(s["name"] for s in servers) == ["batch-1", "batch-2", "batch-3"]
    for s in servers:
        server = c.wait(c.admin, s["id"], "ACTIVE")
        assert server["OS-EXT-SRV-ATTR:reservation_id"] == reservation
    assert sorted(c.show(c.admin, s["id"])["OS-EXT-SRV-ATTR:launch_index"]
                  for s in servers) == [0, 1, 2]  # fmt: skip
    # Without return_reservation_id: the first server, as a single create answers.
    first = valid(servers21.create_server, c.create(c.admin, "pair", min_count=2, max_count=2))
    assert c.wait(c.admin, first["server"]["id"], "ACTIVE")["name"] == "pair-1"
    # Quota lets fewer than max_count through, down to min_count.
    token, project = c.member("multi-proj")
    c.call("PUT", f"/os-quota-sets/{project}", c.admin, json={"quota_set": {"instances": 2}})
    fault(c.create(token, "x", min_count=3, max_count=4), 403, "forbidden")
    some = c.create(token, "y", min_count=1, max_count=4, return_reservation_id=True)
    assert some.status_code == 202, some.text
    assert len(c.call("GET", "/servers", token).json()["servers"]) == 2


# -- metadata, instance actions ----------------------------------------------------------------
def test_metadata_crud(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin, metadata={"a": "1"})
    meta = f"/servers/{server_id}/metadata"
    assert valid(servers21.list_server_metadata, c.call("GET", meta, c.admin)) == {
        "metadata": {"a": "1"}}
    merged = c.call("POST", meta, c.admin, json={"metadata": {"b": "2", "a": "one"}})
    assert valid(servers21.update_server_metadata, merged)["metadata"] == {"a": "one", "b": "2"}
    replaced = c.call("PUT", meta, c.admin, json={"metadata": {"c": "3"}})
    assert valid(servers21.set_server_metadata, replaced)["metadata"] == {"c": "3"}
    item = c.call("PUT", f"{meta}/d", c.admin, json={"meta": {"d": "4"}})
    assert valid(servers21.set_show_server_metadata_item, item) == {"meta": {"d": "4"}}
    shown = c.call("GET", f"{meta}/c", c.admin)
    assert valid(servers21.set_show_server_metadata_item, shown) == {"meta": {"c": "3"}}
    valid(servers21.delete_server_metadata_item, c.call("DELETE", f"{meta}/c", c.admin))
    fault(c.call("GET", f"{meta}/c", c.admin), 404, "itemNotFound")
    fault(c.call("DELETE", f"{meta}/c", c.admin), 404, "itemNotFound")
    mismatch = c.call("PUT", f"{meta}/e", c.admin, json={"meta": {"f": "5"}})
    fault(mismatch, 400, "badRequest")
    fault(c.call("POST", meta, c.admin, json={"metadata": {"k": 1}}), 400, "badRequest")
    assert c.show(c.admin, server_id)["metadata"] == {"d": "4"}


def test_instance_actions(compute: Compute) -> None:
    c = compute
    r = c.create(c.admin)
    server_id = r.json()["server"]["id"]
    create_request = r.headers["x-openstack-request-id"]
    c.wait(c.admin, server_id, "ACTIVE")
    stop = c.act(c.admin, server_id, "os-stop")
    c.wait(c.admin, server_id, "SHUTOFF")
    path = f"/servers/{server_id}/os-instance-actions"
    actions = valid(servers226.list_instance_actions, c.call("GET", path, c.admin))
    assert [a["action"] for a in actions["instanceActions"]] == ["stop", "create"]
    assert actions["instanceActions"][1]["request_id"] == create_request
    shown = c.call("GET", f"{path}/{create_request}", c.admin)
    action = valid(servers226.show_instance_action, shown)["instanceAction"]
    assert action["action"] == "create" and action["instance_uuid"] == server_id
    assert [(e["event"], e["result"]) for e in action["events"]] == [
        ("compute_spawning", "Success")]
    stopped = c.call("GET", f"{path}/{stop.headers['x-openstack-request-id']}", c.admin)
    assert valid(servers226.show_instance_action, stopped)["instanceAction"]["action"] == "stop"
    fault(c.call("GET", f"{path}/req-{uuid.uuid4()}", c.admin), 404, "itemNotFound")
    # A member sees its own server's actions, without the events (admin only).
    token, _ = c.member("actions-proj")
    own = c.create(token)
    own_id, own_request = own.json()["server"]["id"], own.headers["x-openstack-request-id"]
    c.wait(token, own_id, "ACTIVE")
    mine = c.call("GET", f"/servers/{own_id}/os-instance-actions/{own_request}", token)
    assert "events" not in valid(servers226.show_instance_action, mine)["instanceAction"]


# -- delete, isolation -------------------------------------------------------------------------
def test_delete(compute: Compute) -> None:
    c = compute
    before = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    server_id = c.boot(c.admin, "doomed")
    keep = c.boot(c.admin, "kept")
    valid(servers21.delete_server, c.call("DELETE", f"/servers/{server_id}", c.admin))
    deadline = time.monotonic() + WAIT
    while (r := c.call("GET", f"/servers/{server_id}", c.admin)).status_code != 404:
        assert r.status_code == 200 and time.monotonic() < deadline, r.text
        time.sleep(0.05)
    assert server_id in fault(r, 404, "itemNotFound")
    assert server_id not in c.driver.guests_
    assert ("destroy", server_id) in c.driver.calls
    listed = valid(servers226.list_servers_detail, c.call("GET", "/servers/detail", c.admin))
    assert [s["id"] for s in listed["servers"]] == [keep]
    since = c.call("GET", f"/servers/detail?changes-since={before}", c.admin)
    by_id = {s["id"]: s for s in valid(servers226.list_servers_detail, since)["servers"]}
    assert by_id[server_id]["status"] == "DELETED"
    assert by_id[server_id]["OS-SRV-USG:terminated_at"]
    assert by_id[keep]["status"] == "ACTIVE"
    actions = c.call("GET", f"/servers/{server_id}/os-instance-actions", c.admin)
    assert [a["action"] for a in valid(servers226.list_instance_actions, actions)[
        "instanceActions"]] == ["delete", "create"]  # fmt: skip
    fault(c.act(c.admin, server_id, "os-stop"), 404, "itemNotFound")
    fault(c.call("DELETE", f"/servers/{server_id}", c.admin), 404, "itemNotFound")


def test_another_project_gets_404(compute: Compute) -> None:
    c = compute
    owner, _ = c.member("owner-proj")
    other, _ = c.member("other-proj")
    server_id = c.boot(owner, metadata={"a": "1"})
    fault(c.call("GET", f"/servers/{server_id}", other), 404, "itemNotFound")
    fault(c.call("PUT", f"/servers/{server_id}", other, json={"server": {"name": "x"}}),
          404, "itemNotFound")  # fmt: skip
    fault(c.act(other, server_id, "os-stop"), 404, "itemNotFound")
    fault(c.act(other, server_id, "os-getConsoleOutput", {}), 404, "itemNotFound")
    fault(c.call("GET", f"/servers/{server_id}/metadata", other), 404, "itemNotFound")
    fault(c.call("PUT", f"/servers/{server_id}/metadata/a", other, json={"meta": {"a": "2"}}),
          404, "itemNotFound")  # fmt: skip
    fault(c.call("GET", f"/servers/{server_id}/os-instance-actions", other), 404,
          "itemNotFound")  # fmt: skip
    fault(c.call("DELETE", f"/servers/{server_id}", other), 404, "itemNotFound")
    assert c.call("GET", "/servers", other).json()["servers"] == []
    assert c.show(owner, server_id)["status"] == "ACTIVE"
    assert c.show(owner, server_id)["metadata"] == {"a": "1"}


def test_a_delete_during_a_snapshot_wins(compute: Compute) -> None:
    """The snapshot that was running when the delete came must not undo the delete."""
    c = compute
    server_id = c.boot(c.admin, "snapped-then-deleted")
    entered, release = threading.Event(), threading.Event()
    snapshot = c.driver.snapshot

    def slow_snapshot(uuid: str, dest: Path) -> None:
        entered.set()
        release.wait(WAIT)
        snapshot(uuid, dest)

    c.driver.snapshot = slow_snapshot  # type: ignore[method-assign]
    assert c.act(c.admin, server_id, "createImage", {"name": "late-snap"}).status_code == 202
    assert entered.wait(WAIT)
    assert c.call("DELETE", f"/servers/{server_id}", c.admin).status_code == 204
    release.set()
    deadline = time.monotonic() + WAIT
    while (r := c.call("GET", f"/servers/{server_id}", c.admin)).status_code != 404:
        assert r.status_code == 200 and time.monotonic() < deadline, r.text
        time.sleep(0.05)
    assert server_id not in c.driver.guests_
