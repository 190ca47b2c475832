"""Compute end to end: the real `openstack` CLI against a real `picocloud up` that boots real
QEMU guests (TCG on these machines) from the built-in `tiny` image, with no NIC; what a guest
does is read on its serial console, where it prints "picocloud-guest ready" when it is up.

The actions under test go through the CLI. Waiting for a state polls the compute API over HTTP
(a CLI call costs about a second of CPU, which the guests' boots need more), and the state
reached is then read once more with `openstack server show`. One cloud serves the module, so
tests reuse servers where they can: booting is what takes the time."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING:
    from .conftest import HttpReply, Picocloud, PicocloudFactory

pytestmark = pytest.mark.e2e

WAIT = 180.0  # TCG boots take 5-15 s, far longer on a loaded machine
IMAGE_WAIT = 600.0  # a first start may build the tiny image (downloads and all)
KILL_NOTICED = 10.0  # a dead QEMU must show as SHUTOFF this fast
MARKER = "picocloud-guest ready"
COMPUTE = "/compute/v2.1"
POWER_STATE = {"ACTIVE": 1, "PAUSED": 3, "SHUTOFF": 4, "SUSPENDED": 7}  # Nova's numbers
FLEET = [f"class-{i}" for i in range(1, 6)]


def _processes() -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if raw:  # a zombie has no command line
                yield int(entry.name), raw.decode(errors="replace").split("\0")


def qemu_pids(uuid: str) -> list[int]:
    """The QEMUs (not their Python supervisors) running the guest of server `uuid`."""
    tag = f"guest=picocloud-{uuid}"
    return [pid for pid, argv in _processes()
            if Path(argv[0]).name.startswith("qemu-system") and any(tag in a for a in argv)]


def guest_processes(uuid: str) -> list[int]:
    """Every process of server `uuid`'s guest: its QEMU and its console supervisor."""
    return [pid for pid, argv in _processes()
            if any(f"guest=picocloud-{uuid}" in a or f"/guests/{uuid}" in a for a in argv)]


def qemu_pid(uuid: str) -> int:
    pids = qemu_pids(uuid)
    assert len(pids) == 1, f"server {uuid} should have one QEMU, has {pids}"
    return pids[0]


def qemu_memory_mb(uuid: str) -> int:
    argv = Path(f"/proc/{qemu_pid(uuid)}/cmdline").read_bytes().decode().split("\0")
    return int(argv[argv.index("-m") + 1])


def host_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def md5_fingerprint(public_key: str) -> str:
    """Nova's keypair fingerprint: the MD5 of the key blob, as colon-separated hex."""
    digest = hashlib.md5(base64.b64decode(public_key.split()[1]), usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


class Compute:
    """The module's cloud, with what its tests need to see of servers and of their QEMUs."""

    def __init__(self, cloud: Picocloud) -> None:
        self.cloud = cloud
        self.seen: set[str] = set()  # every server a test made: none may leave a trace

    @property
    def guests_dir(self) -> Path:
        return self.cloud.data_dir / "compute" / "guests"

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> HttpReply:
        data = None if body is None else json.dumps(body).encode()
        return self.cloud.http(method, COMPUTE + path, token=self.cloud.admin_token(), body=data)

    def get(self, server_id: str) -> dict[str, Any]:
        reply = self.api("GET", f"/servers/{server_id}")
        assert reply.status == 200, f"GET server {server_id}: {reply.status} {reply.body!r}"
        server: dict[str, Any] = reply.json()["server"]
        return server

    def servers(self) -> list[dict[str, Any]]:
        """Every server of every project, from the API."""
        reply = self.api("GET", "/servers/detail?all_tenants=1")
        assert reply.status == 200, reply.body
        servers: list[dict[str, Any]] = reply.json()["servers"]
        self.seen.update(s["id"] for s in servers)
        return servers

    def show(self, ref: str) -> dict[str, Any]:
        server: dict[str, Any] = self.cloud.run("server", "show", ref)
        self.seen.add(server["id"])
        return server

    def wait(self, server_id: str, status: str, timeout: float = WAIT) -> dict[str, Any]:
        """Wait until the server is in `status` with no task under way; returns it as
        `openstack server show` shows it then."""
        self.seen.add(server_id)
        deadline = time.monotonic() + timeout
        while True:
            server = self.get(server_id)
            task = server["OS-EXT-STS:task_state"]
            if server["status"] == status and task is None:
                break
            if server["status"] == "ERROR" and status != "ERROR":
                pytest.fail(f"server {server['name']} went to ERROR: {server.get('fault')}\n"
                            f"{self.cloud.log()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"server {server['name']} is still {server['status']} (task {task}) "
                            f"after {timeout:.0f} s, not {status}\n{self.cloud.log()[-4000:]}")
            time.sleep(0.5)
        shown = self.show(server_id)
        assert shown["status"] == status, shown
        if status in POWER_STATE:
            assert shown["OS-EXT-STS:power_state"] == POWER_STATE[status], shown
        return shown

    def console(self, ref: str, lines: int | None = None) -> str:
        more = ["--lines", str(lines)] if lines is not None else []
        return self.cloud.run_text("console", "log", "show", *more, ref)

    def markers(self, server_id: str) -> int:
        reply = self.api("POST", f"/servers/{server_id}/action", {"os-getConsoleOutput": {}})
        assert reply.status == 200, f"console of {server_id}: {reply.status} {reply.body!r}"
        return int(reply.json()["output"].count(MARKER))

    def wait_ready(self, server_id: str, boots: int) -> str:
        """Wait for the guest's `boots`-th ready marker (its console log keeps every boot);
        returns the log as `openstack console log show` prints it."""
        deadline = time.monotonic() + WAIT
        while self.markers(server_id) < boots:
            if time.monotonic() > deadline:
                pytest.fail(f"no ready marker #{boots} on {server_id} within {WAIT:.0f} s:\n"
                            f"{self.console(server_id, lines=40)}")
            time.sleep(0.5)
        log = self.console(server_id)
        assert log.count(MARKER) == boots, log
        return log

    def wait_image(self, name: str, timeout: float = WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            reply = self.cloud.http("GET", f"/image/v2/images?name={name}",
                                    token=self.cloud.admin_token())
            assert reply.status == 200, reply.body
            images = reply.json()["images"]
            if images and images[0]["status"] == "active":
                image: dict[str, Any] = self.cloud.run("image", "show", name)
                assert image["status"] == "active", image
                return image
            if images and images[0]["status"] in ("killed", "deleted"):
                pytest.fail(f"image {name} is {images[0]['status']}:\n{self.cloud.log()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"image {name} not active within {timeout:.0f} s: {images}\n"
                            f"{self.cloud.log()[-4000:]}")
            time.sleep(1)

    def ensure_flavor(self, name: str, ram_mb: int) -> None:
        """A 1-vCPU, 1 GiB flavor made with the CLI unless an earlier test made it."""
        if not isinstance(self.cloud.run("flavor", "show", name, check=False), dict):
            self.cloud.run("flavor", "create", "--vcpus", "1", "--ram", str(ram_mb),
                           "--disk", "1", name)

    def clean_up(self) -> None:
        """Delete every server left (while picocloud runs), then kill whatever QEMU or
        supervisor still runs from this cloud's data dir: no guest outlives the module, even
        after a failure. (Guests are detached: stopping picocloud leaves them running.)"""
        if self.cloud.proc is not None:
            with contextlib.suppress(Exception):
                for server in self.servers():
                    self.api("DELETE", f"/servers/{server['id']}")
                deadline = time.monotonic() + 60
                while self.servers() and time.monotonic() < deadline:
                    time.sleep(1)
        ours = str(self.guests_dir)
        for pid, argv in _processes():
            if any(ours in arg for arg in argv) or any(
                    f"guest=picocloud-{uuid}" in arg for arg in argv for uuid in self.seen):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def compute(picocloud_factory: PicocloudFactory) -> Iterator[Compute]:
    """The module's picocloud, with the built-in tiny image registered and active."""
    if shutil.which("qemu-system-x86_64") is None or shutil.which("qemu-img") is None:
        pytest.skip("QEMU is not installed (see scripts/debian-packages.txt)")
    cloud = picocloud_factory("compute", env={"PICOCLOUD_IMAGE_BUILTIN_TINY": "1"})
    compute = Compute(cloud)
    try:
        cloud.start()
        compute.wait_image("tiny", timeout=IMAGE_WAIT)
        yield compute
    finally:
        compute.clean_up()


@pytest.fixture(scope="module")
def fleet(compute: Compute) -> list[str]:
    """The ids of `class-1`..`class-5`, made by one multi-create, all booted."""
    compute.ensure_flavor("m1.nano", 128)
    compute.cloud.run("server", "create", "--flavor", "m1.nano", "--image", "tiny",
                      "--nic", "none", "--min", "5", "--max", "5", "class")
    servers = sorted((s for s in compute.servers() if s["name"].startswith("class-")),
                     key=lambda s: str(s["name"]))
    assert [s["name"] for s in servers] == FLEET
    ids = [str(s["id"]) for s in servers]
    for server_id in ids:
        compute.wait(server_id, "ACTIVE")
    for server_id in ids:
        compute.wait_ready(server_id, 1)
    return ids


def test_tour(compute: Compute, tmp_path: Path) -> None:
    """The issue's tour on one server, vm1, command by command: every action lands in the
    state Nova would show, and the guest really boots again where it should."""
    cloud = compute.cloud
    nano = cloud.run("flavor", "create", "--vcpus", "1", "--ram", "128", "--disk", "1", "m1.nano")
    assert (nano["name"], nano["vcpus"], nano["ram"], nano["disk"]) == ("m1.nano", 1, 128, 1)
    assert cloud.run("flavor", "set", "--property", "hw:cpu_policy=shared", "m1.nano") is None
    assert cloud.run("flavor", "show", "m1.nano")["properties"] == {"hw:cpu_policy": "shared"}

    public_key = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    (tmp_path / "id_ed25519.pub").write_text(f"{public_key} e2e@picocloud\n")
    key = cloud.run("keypair", "create", "--public-key", str(tmp_path / "id_ed25519.pub"),
                    "mykey")
    assert key["name"] == "mykey" and key["type"] == "ssh"
    assert key["fingerprint"] == md5_fingerprint(public_key)

    vm1 = cloud.run("server", "create", "--flavor", "m1.nano", "--image", "tiny",
                    "--nic", "none", "--key-name", "mykey", "--wait", "vm1")
    vm = vm1["id"]
    compute.seen.add(vm)
    assert vm1["status"] == "ACTIVE" and vm1["OS-EXT-STS:power_state"] == 1
    assert vm1["key_name"] == "mykey" and vm1["addresses"] == {}
    assert vm1["flavor"].startswith("m1.nano ") and vm1["image"].startswith("tiny ")
    assert (compute.guests_dir / vm).is_dir() and qemu_pid(vm)

    log = compute.wait_ready(vm, 1)
    assert log.count("SYSLINUX") == 1  # the whole boot log, from the boot loader's banner
    tail = compute.console(vm, lines=3)  # the last three lines: the marker and the login
    assert MARKER in tail and "SYSLINUX" not in tail and compute.console(vm).endswith(tail)

    cloud.run("server", "stop", "vm1")
    compute.wait(vm, "SHUTOFF")
    assert guest_processes(vm) == []
    cloud.run("server", "start", "vm1")
    compute.wait(vm, "ACTIVE")
    compute.wait_ready(vm, 2)
    cloud.run("server", "reboot", "--hard", "vm1")
    compute.wait(vm, "ACTIVE")
    compute.wait_ready(vm, 3)

    cloud.run("server", "pause", "vm1")
    compute.wait(vm, "PAUSED")
    assert qemu_pid(vm)  # paused, not gone
    cloud.run("server", "unpause", "vm1")
    compute.wait(vm, "ACTIVE")
    cloud.run("server", "suspend", "vm1")
    compute.wait(vm, "SUSPENDED")
    cloud.run("server", "resume", "vm1")
    compute.wait(vm, "ACTIVE")

    cloud.run("server", "rebuild", "--image", "tiny", "vm1")
    compute.wait(vm, "ACTIVE")
    compute.wait_ready(vm, 4)  # a rebuild boots the image afresh
    # Resume continued the guest where it was: one boot each for start, reboot and rebuild.
    assert compute.console(vm).count("SYSLINUX") == 4

    compute.ensure_flavor("m1.nano2", 192)
    cloud.run("server", "resize", "--flavor", "m1.nano2", "vm1")
    resized = compute.wait(vm, "VERIFY_RESIZE")
    assert resized["flavor"].startswith("m1.nano2 ")
    assert qemu_memory_mb(vm) == 192  # the guest really got the new flavor's RAM
    compute.wait_ready(vm, 5)
    cloud.run("server", "resize", "confirm", "vm1")
    assert compute.wait(vm, "ACTIVE")["flavor"].startswith("m1.nano2 ")

    snap = cloud.run("server", "image", "create", "--name", "vm1-snap", "vm1")
    assert snap["name"] == "vm1-snap"
    snap = compute.wait_image("vm1-snap")
    assert snap["properties"]["instance_uuid"] == vm
    assert snap["properties"]["image_type"] == "snapshot"
    compute.wait(vm, "ACTIVE")
    child = cloud.run("server", "create", "--flavor", "m1.nano", "--image", "vm1-snap",
                      "--nic", "none", "--wait", "from-snap")
    compute.seen.add(child["id"])
    assert child["status"] == "ACTIVE" and child["image"].startswith("vm1-snap ")
    compute.wait_ready(child["id"], 1)

    guest = compute.guests_dir / vm
    assert (guest / "console.log").exists()
    cloud.run("server", "delete", "--wait", "vm1", "from-snap")
    for gone in (vm, child["id"]):
        assert guest_processes(gone) == []
        assert not (compute.guests_dir / gone).exists()
    assert {"vm1", "from-snap"}.isdisjoint(s["Name"] for s in cloud.run("server", "list"))
    assert "no server found" in cloud.fail("server", "show", vm).message.lower()


def test_backups_tags_and_resize_revert(compute: Compute) -> None:
    """Rotated backups, server tags (2.26) and a resize revert that really goes back."""
    cloud = compute.cloud
    compute.ensure_flavor("m1.nano", 128)
    compute.ensure_flavor("m1.nano2", 192)
    vm = cloud.run("server", "create", "--flavor", "m1.nano", "--image", "tiny", "--nic",
                   "none", "--wait", "vm2")["id"]
    compute.seen.add(vm)
    compute.wait_ready(vm, 1)

    v226 = ("--os-compute-api-version", "2.26")
    cloud.run(*v226, "server", "set", "--tag", "lab", "--tag", "room-1", "vm2")
    assert sorted(cloud.run(*v226, "server", "show", "vm2")["tags"]) == ["lab", "room-1"]
    tagged = cloud.run(*v226, "server", "list", "--tags", "room-1")
    assert [row["ID"] for row in tagged] == [vm]

    made = []
    for n in (1, 2):  # rotation 1: the second backup replaces the first
        backup = cloud.run("server", "backup", "create", "--name", f"vm2-backup-{n}",
                           "--type", "daily", "--rotate", "1", "--wait", "vm2")
        made.append(backup["id"])
        compute.wait(vm, "ACTIVE")
    backups = [i for i in cloud.run("image", "list") if i["Name"].startswith("vm2-backup")]
    assert [i["ID"] for i in backups] == [made[1]]
    props = cloud.run("image", "show", made[1])["properties"]
    assert (props["image_type"], props["backup_type"], props["instance_uuid"]) == (
        "backup", "daily", vm)

    cloud.run("server", "resize", "--flavor", "m1.nano2", "vm2")
    compute.wait(vm, "VERIFY_RESIZE")
    assert qemu_memory_mb(vm) == 192
    assert (compute.guests_dir / vm / "before-resize" / "disk").exists()
    cloud.run("server", "resize", "revert", "vm2")
    reverted = compute.wait(vm, "ACTIVE")
    assert reverted["flavor"].startswith("m1.nano ")
    assert qemu_memory_mb(vm) == 128  # the guest runs with the old flavor's RAM again
    assert not (compute.guests_dir / vm / "before-resize").exists()
    compute.wait_ready(vm, 3)

    cloud.run("server", "delete", "--wait", "vm2")
    cloud.run("image", "delete", made[1])
    assert guest_processes(vm) == [] and not (compute.guests_dir / vm).exists()


def test_quota_exceeded_is_403(compute: Compute) -> None:
    cloud = compute.cloud
    compute.ensure_flavor("m1.nano", 128)
    project = cloud.api("POST", "/projects", {"project": {"name": "quota-lab"}})["project"]
    user = cloud.api("POST", "/users", {"user": {
        "name": "quota-user", "password": "pw-quota", "default_project_id": project["id"]}})
    member = cloud.api("GET", "/roles?name=member")["roles"][0]["id"]
    cloud.api("PUT", f"/projects/{project['id']}/users/{user['user']['id']}/roles/{member}")
    auth = ("--os-username", "quota-user", "--os-password", "pw-quota",
            "--os-project-name", "quota-lab")
    create = ("server", "create", "--flavor", "m1.nano", "--image", "tiny", "--nic", "none")

    assert cloud.run("quota", "set", "--instances", "2", "quota-lab") is None
    limits = {row["Resource"]: row["Limit"] for row in cloud.run("quota", "show", "quota-lab")}
    assert limits["instances"] == 2

    failure = cloud.fail(*auth, *create, "--min", "3", "--max", "3", "lab")
    assert "403" in failure.message
    assert "Quota exceeded for instances: Requested 3, but already used 0 of 2" in failure.message
    assert cloud.run(*auth, "server", "list") == []

    # As in Nova, a multi-create gets as many servers as the quota allows, down to --min...
    cloud.run(*auth, *create, "--min", "1", "--max", "3", "lab")
    compute.servers()  # (remembered, so that the end can check they left no trace)
    made = sorted(s["Name"] for s in cloud.run(*auth, "server", "list"))
    assert made == ["lab-1", "lab-2"]
    # ...and then the project is full.
    failure = cloud.fail(*auth, *create, "one-more")
    assert "403" in failure.message
    assert "Quota exceeded for instances: Requested 1, but already used 2 of 2" in failure.message

    cloud.run(*auth, "server", "delete", "--wait", "lab-1", "lab-2")
    assert cloud.run(*auth, "server", "list") == []


def test_oversized_flavor_finds_no_valid_host(compute: Compute) -> None:
    cloud = compute.cloud
    ram = max(40000, 2 * host_memory_mb())  # more than this host has, whatever it is
    cloud.run("flavor", "create", "--vcpus", "1", "--ram", str(ram), "--disk", "1", "m1.huge")
    cloud.run("quota", "set", "--ram", str(2 * ram), "admin")  # the quota is not what refuses
    server = cloud.run("server", "create", "--flavor", "m1.huge", "--image", "tiny",
                       "--nic", "none", "huge")
    shown = compute.wait(server["id"], "ERROR")
    assert "No valid host" in shown["fault"]["message"], shown["fault"]
    assert guest_processes(server["id"]) == [] and not (compute.guests_dir / server["id"]).exists()
    cloud.run("server", "delete", "--wait", "huge")


def test_quotas_hypervisors_and_services(compute: Compute) -> None:
    cloud = compute.cloud
    limits = {row["Resource"]: row["Limit"] for row in cloud.run("quota", "show")}
    assert limits["instances"] == 10 and limits["cores"] == 20 and limits["key-pairs"] == 100

    hypervisors = cloud.run("hypervisor", "list")
    assert len(hypervisors) == 1
    hypervisor = hypervisors[0]
    assert hypervisor["Hypervisor Type"] == "QEMU" and hypervisor["State"] == "up"

    services = cloud.run("compute", "service", "list")
    agents = [s for s in services if s["Binary"] == "nova-compute"]
    assert len(agents) == 1
    assert agents[0]["Host"] == hypervisor["Hypervisor Hostname"]
    assert (agents[0]["Status"], agents[0]["State"], agents[0]["Zone"]) == (
        "enabled", "up", "nova")


def test_multi_create_boots_five(compute: Compute, fleet: list[str]) -> None:
    rows = compute.cloud.run("server", "list", "--long", "--name", "^class-")
    assert sorted((r["Name"], r["Status"], r["Power State"]) for r in rows) == [
        (name, "ACTIVE", POWER_STATE["ACTIVE"]) for name in FLEET]
    reservations = {compute.show(s)["OS-EXT-SRV-ATTR:reservation_id"] for s in fleet}
    assert len(reservations) == 1  # one request, one reservation
    assert len({qemu_pid(server_id) for server_id in fleet}) == 5  # one QEMU each


def _states(compute: Compute) -> dict[str, tuple[Any, ...]]:
    """Each fleet server's status, task and power state, as `openstack server list` shows."""
    rows = compute.cloud.run("server", "list", "--long", "--name", "^class-")
    return {r["ID"]: (r["Status"], r["Task State"], r["Power State"]) for r in rows}


def test_restart_keeps_guests_running(compute: Compute, fleet: list[str]) -> None:
    """Guests are detached: a restart of `picocloud up` re-adopts them as they are."""
    cloud = compute.cloud
    running, paused, stopped = fleet[:3], fleet[3], fleet[4]
    for server_id in running:
        compute.wait(server_id, "ACTIVE")
    cloud.run("server", "pause", paused)
    cloud.run("server", "stop", stopped)
    compute.wait(paused, "PAUSED")
    compute.wait(stopped, "SHUTOFF")
    before = _states(compute)
    pids = {server_id: qemu_pid(server_id) for server_id in [*running, paused]}

    cloud.restart()
    # Right after the start, and again once the agent has looked at every guest a few times.
    for _ in range(2):
        assert _states(compute) == before
        assert {server_id: qemu_pid(server_id) for server_id in pids} == pids
        assert guest_processes(stopped) == []
        time.sleep(6)

    # The re-adopted guests still obey, and their consoles are still recorded.
    cloud.run("server", "unpause", paused)
    compute.wait(paused, "ACTIVE")
    assert qemu_pid(paused) == pids[paused]
    cloud.run("server", "reboot", "--hard", running[1])
    compute.wait(running[1], "ACTIVE")
    compute.wait_ready(running[1], 2)


def test_killed_qemu_shows_shutoff(compute: Compute, fleet: list[str]) -> None:
    """`kill -9` of a guest's QEMU (not of its supervisor) is noticed within seconds."""
    victim = fleet[0]
    compute.wait(victim, "ACTIVE")
    pid = qemu_pid(victim)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    while compute.get(victim)["status"] != "SHUTOFF":
        if time.monotonic() - killed > KILL_NOTICED:
            pytest.fail(f"server still {compute.get(victim)['status']} {KILL_NOTICED:.0f} s "
                        f"after its QEMU was killed\n{compute.cloud.log()[-4000:]}")
        time.sleep(0.2)
    compute.wait(victim, "SHUTOFF")
    assert qemu_pids(victim) == []
    # Its supervisor, which kept the console, is gone with it.
    deadline = time.monotonic() + 5
    while guest_processes(victim) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert guest_processes(victim) == []

    # The user can start it again.
    compute.cloud.run("server", "start", victim)
    compute.wait(victim, "ACTIVE")
    compute.wait_ready(victim, 2)
    assert qemu_pid(victim) != pid


def test_delete_leaves_no_trace(compute: Compute, fleet: list[str]) -> None:
    """Last: every server goes, and with it every QEMU, overlay, console log and directory."""
    cloud = compute.cloud
    left = [s["id"] for s in compute.servers()]
    assert set(fleet) <= set(left)
    cloud.run("server", "delete", "--wait", *left)
    assert cloud.run("server", "list", "--all-projects") == []
    assert compute.seen >= set(fleet)
    for server_id in compute.seen:
        assert guest_processes(server_id) == [], server_id
        assert not (compute.guests_dir / server_id).exists(), server_id
        assert not list((compute.guests_dir / ".locks").glob(f"{server_id}*")), server_id
    assert [p.name for p in compute.guests_dir.iterdir()] in ([], [".locks"])
    if cloud.run("image", "list", "--name", "vm1-snap"):
        cloud.run("image", "delete", "vm1-snap")
        assert cloud.run("image", "list", "--name", "vm1-snap") == []
