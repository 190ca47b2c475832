"""Images end to end: the real `openstack image ...` CLI against a real `picocloud up`.

The tour of issue 3 command by command, a 1 GiB round trip through the CLI while the server's
memory is watched, and the refusals: what the CLI hides (exact status codes) is asked over
HTTP with a token."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .conftest import OPENSTACK

if TYPE_CHECKING:
    from .conftest import HttpReply, Picocloud, PicocloudFactory

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("qemu-img") is None,
                       reason="qemu-img is not installed (package qemu-utils)"),
]

# The built-in `tiny` image is another piece of work; these servers must not wait for it.
SERVER_ENV = {"PICOCLOUD_IMAGE_BUILTIN_TINY": "0"}
MiB = 1 << 20
GiB = 1 << 30
RSS_GROWTH_LIMIT = 64 * 1000 * 1000  # "less than 64 MB", read strictly
BIG_CLI_TIMEOUT = 600.0  # a 1 GiB transfer through the CLI on a busy shared machine


@dataclass(frozen=True)
class User:
    name: str
    password: str
    project: str
    project_id: str
    token: str

    def auth(self) -> tuple[str, ...]:
        """Global CLI options that authenticate as this user on their project."""
        return ("--os-username", self.name, "--os-password", self.password,
                "--os-project-name", self.project)


def make_project_member(cloud: Picocloud, project: str, user: str) -> User:
    """A new project with one user holding `member` on it, and a token of theirs."""
    project_id = cloud.api("POST", "/projects", {"project": {"name": project}})["project"]["id"]
    password = f"pw-{user}"
    user_id = cloud.api("POST", "/users", {"user": {
        "name": user, "password": password, "default_project_id": project_id}})["user"]["id"]
    role_id = cloud.api("GET", "/roles?name=member")["roles"][0]["id"]
    cloud.api("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}")
    auth = {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"id": project_id}}}
    reply = cloud.http("POST", "/identity/v3/auth/tokens", body=json.dumps({"auth": auth}).encode())
    assert reply.status == 201, reply.body
    return User(user, password, project, project_id, reply.headers["x-subject-token"])


def image_api(cloud: Picocloud, method: str, path: str, token: str | None = None,
              body: Any = None, data: bytes | None = None,
              headers: dict[str, str] | None = None) -> HttpReply:
    """A raw Image API call (default: as the admin), JSON `body` or octet-stream `data`."""
    hdrs = dict(headers or {})
    payload = data
    if body is not None:
        payload = json.dumps(body).encode()
    elif data is not None:
        hdrs.setdefault("Content-Type", "application/octet-stream")
    return cloud.http(method, "/image" + path, token=token or cloud.admin_token(), body=payload,
                      headers=hdrs, timeout=60)


def create_queued(cloud: Picocloud, name: str, disk_format: str, token: str | None = None,
                  **extra: Any) -> str:
    body = {"name": name, "disk_format": disk_format, "container_format": "bare", **extra}
    reply = image_api(cloud, "POST", "/v2/images", token, body=body)
    assert reply.status == 201, reply.body
    assert reply.json()["status"] == "queued"
    return str(reply.json()["id"])


def stored_files(cloud: Picocloud) -> list[str]:
    """Every file and directory under the data dir's image store, relative to it."""
    root = cloud.data_dir / "images"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def digests(path: Path) -> dict[str, str]:
    md5, sha256, sha512 = (hashlib.md5(usedforsecurity=False), hashlib.sha256(),
                           hashlib.sha512())
    with path.open("rb") as fh:
        while chunk := fh.read(4 * MiB):
            for h in (md5, sha256, sha512):
                h.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest(), "sha512": sha512.hexdigest()}


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, timeout=60)


def real_qcow2(path: Path, virtual: int = 16 * MiB, random_head: int = 4 * MiB) -> Path:
    """A genuine qcow2: converted by qemu-img from a raw disk whose first `random_head` bytes are
    random (the rest a hole), so the file is smaller than the disk it describes."""
    raw = path.with_suffix(".raw")
    with raw.open("wb") as fh:
        fh.write(os.urandom(random_head))
        fh.truncate(virtual)
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(path))
    raw.unlink()
    info = json.loads(subprocess.run(["qemu-img", "info", "--output", "json", str(path)],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == virtual
    return path


@pytest.fixture(scope="module")
def cloud(picocloud_factory: PicocloudFactory) -> Iterator[Picocloud]:
    """The module's picocloud, without the built-in tiny image."""
    pc = picocloud_factory("images", env=SERVER_ENV)
    pc.start()
    yield pc
    pc.stop()


@pytest.fixture(scope="module")
def partner(cloud: Picocloud) -> User:
    """A member of another project than the admin's."""
    return make_project_member(cloud, "partner", "pat")


def test_tour(cloud: Picocloud, partner: User, tmp_path: Path) -> None:
    """The commands of issue 3, as a user types them."""
    tiny = real_qcow2(tmp_path / "tiny.qcow2")
    sums = digests(tiny)

    created = cloud.run("image", "create", "--file", str(tiny), "--disk-format", "qcow2",
                        "--container-format", "bare", "--public", "cirros-like")
    image_id = created["id"]
    assert created["name"] == "cirros-like" and created["status"] == "active"
    assert created["visibility"] == "public"
    assert [i["Name"] for i in cloud.run(*partner.auth(), "image", "list")] == ["cirros-like"]

    assert cloud.run("image", "set", "--property", "architecture=x86_64",
                     "--property", "hypervisor_type=qemu", "cirros-like") is None

    assert {"ID": image_id, "Name": "cirros-like", "Status": "active"} in cloud.run("image", "list")

    shown = cloud.run("image", "show", "cirros-like")
    assert shown["checksum"] == sums["md5"]
    assert shown["properties"]["os_hash_algo"] == "sha512"
    assert shown["properties"]["os_hash_value"] == sums["sha512"]
    assert shown["size"] == tiny.stat().st_size
    assert shown["virtual_size"] == 16 * MiB
    assert shown["disk_format"] == "qcow2" and shown["container_format"] == "bare"
    assert shown["properties"]["architecture"] == "x86_64"
    assert shown["properties"]["hypervisor_type"] == "qemu"

    back = tmp_path / "back.qcow2"
    assert cloud.run("image", "save", "--file", str(back), "cirros-like") is None
    assert back.read_bytes() == tiny.read_bytes()

    # Only shared images have members: a public one must first become shared.
    failure = cloud.fail("image", "add", "project", "cirros-like", partner.project)
    assert "403" in failure.message and "shared" in failure.message
    cloud.run("image", "set", "--shared", "cirros-like")
    assert cloud.run(*partner.auth(), "image", "list") == []
    member = cloud.run("image", "add", "project", "cirros-like", partner.project, "-f", "json")
    assert member["member_id"] == partner.project_id and member["status"] == "pending"
    # A pending member does not list the image (as Glance: member_status defaults to accepted),
    # so it accepts by id; name lookups go through that listing.
    assert cloud.run(*partner.auth(), "image", "list") == []
    assert cloud.run(*partner.auth(), "image", "set", "--accept", image_id) is None
    assert cloud.run(*partner.auth(), "image", "list") == [
        {"ID": image_id, "Name": "cirros-like", "Status": "active"}]
    assert cloud.run("image", "member", "list", "cirros-like") == [
        {"Image ID": image_id, "Member ID": partner.project_id, "Status": "accepted"}]
    partner_copy = tmp_path / "partner.qcow2"
    cloud.run(*partner.auth(), "image", "save", "--file", str(partner_copy), "cirros-like")
    assert partner_copy.read_bytes() == tiny.read_bytes()

    assert image_id in stored_files(cloud)
    assert cloud.run("image", "delete", "cirros-like") is None
    failure = cloud.fail("image", "show", "cirros-like")
    assert "No Image found for cirros-like" in failure.message
    assert image_api(cloud, "GET", f"/v2/images/{image_id}").status == 404
    assert image_id not in stored_files(cloud)


class RssWatch:
    """The peak VmRSS of a process while a block runs, sampled every 0.1 s, and also read from
    VmHWM after resetting it (clear_refs 5), which catches peaks between two samples."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = self.peak = self.hwm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise LookupError(field)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.peak = max(self.peak, self._status("VmRSS"))
            except OSError:  # the process is gone: the test will say so
                return

    def __enter__(self) -> RssWatch:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self._reset_hwm = True
        except OSError:
            self._reset_hwm = False
        self.baseline = self.peak = self._status("VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._status("VmRSS"))
        if self._reset_hwm:
            self.hwm = self._status("VmHWM")

    @property
    def growth(self) -> int:
        return max(self.peak, self.hwm) - self.baseline

    def __str__(self) -> str:
        mib = 1 / MiB
        return (f"RSS {self.baseline * mib:.1f} MiB before, peak {self.peak * mib:.1f} MiB "
                f"sampled, {self.hwm * mib:.1f} MiB VmHWM: grew {self.growth * mib:.1f} MiB")


def write_big_file(path: Path, size: int) -> dict[str, str]:
    """`size` bytes no compressor or deduplicator can shrink, written fast: one random MiB,
    rotated by a different odd offset in each MiB, so no two MiB are alike (a misplaced chunk
    changes the digest). Returns its md5 and sha256."""
    block = os.urandom(MiB)
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("wb") as fh:
        for i in range(size // MiB):
            k = (i * 4099) % MiB
            chunk = block[k:] + block[:k]
            fh.write(chunk)
            md5.update(chunk)
            sha256.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def run_long(cloud: Picocloud, *args: str) -> str:
    """The CLI for a transfer that may outlast `Picocloud.run`'s timeout."""
    proc = subprocess.run([str(OPENSTACK), *args], env=cloud.cli_env(), capture_output=True,
                          text=True, timeout=BIG_CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"openstack {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc.stdout


def test_one_gib_round_trip_in_bounded_memory(cloud: Picocloud, tmp_path: Path) -> None:
    """1 GiB up and down through the CLI: the server's RSS grows by less than 64 MB each way
    and the bytes come back identical."""
    big, back = tmp_path / "big.raw", tmp_path / "big.back"
    image_id = None
    try:
        sums = write_big_file(big, GiB)

        started = time.monotonic()
        with RssWatch(cloud.pid) as upload:
            out = run_long(cloud, "image", "create", "--file", str(big), "--disk-format", "raw",
                           "--container-format", "bare", "-f", "json", "big")
        upload_s = time.monotonic() - started
        created = json.loads(out)
        image_id = created["id"]
        assert created["status"] == "active" and created["size"] == GiB
        assert created["checksum"] == sums["md5"]

        started = time.monotonic()
        with RssWatch(cloud.pid) as download:
            run_long(cloud, "image", "save", "--file", str(back), image_id)
        download_s = time.monotonic() - started
        print(f"\n1 GiB upload {upload_s:.1f} s, {upload}\n"
              f"1 GiB download {download_s:.1f} s, {download}")

        assert back.stat().st_size == GiB
        assert digests(back)["sha256"] == sums["sha256"]
        assert upload.growth < RSS_GROWTH_LIMIT, f"upload: {upload}"
        assert download.growth < RSS_GROWTH_LIMIT, f"download: {download}"
    finally:
        big.unlink(missing_ok=True)
        back.unlink(missing_ok=True)
        if image_id is not None:
            image_api(cloud, "DELETE", f"/v2/images/{image_id}")


def test_unknown_disk_format_is_400(cloud: Picocloud) -> None:
    for field, value in (("disk_format", "floppy"), ("container_format", "crate")):
        body = {"name": "odd-format", "disk_format": "raw", "container_format": "bare",
                field: value}
        reply = image_api(cloud, "POST", "/v2/images", body=body)
        assert reply.status == 400, reply.body
        assert field in reply.json()["message"] and value in reply.json()["message"]
    assert image_api(cloud, "GET", "/v2/images?name=odd-format").json()["images"] == []


@pytest.fixture(scope="module")
def small_raw(cloud: Picocloud) -> tuple[str, bytes]:
    """An active raw image of the admin's project, private, and its bytes."""
    data = os.urandom(3 * MiB + 17)
    image_id = create_queued(cloud, "small-raw", "raw", visibility="private")
    assert image_api(cloud, "PUT", f"/v2/images/{image_id}/file", data=data).status == 204
    return image_id, data


def test_upload_to_an_active_image_is_409(cloud: Picocloud, small_raw: tuple[str, bytes]
                                          ) -> None:
    image_id, data = small_raw
    reply = image_api(cloud, "PUT", f"/v2/images/{image_id}/file", data=b"\0" * MiB)
    assert reply.status == 409, reply.body
    image = image_api(cloud, "GET", f"/v2/images/{image_id}").json()
    assert image["status"] == "active" and image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert image_api(cloud, "GET", f"/v2/images/{image_id}/file").body == data


def test_ranged_download(cloud: Picocloud, small_raw: tuple[str, bytes]) -> None:
    image_id, data = small_raw
    reply = image_api(cloud, "GET", f"/v2/images/{image_id}/file",
                      headers={"Range": f"bytes={MiB}-{2 * MiB + 9}"})
    assert reply.status == 206
    assert reply.body == data[MiB:2 * MiB + 10]
    assert reply.headers["content-range"] == f"bytes {MiB}-{2 * MiB + 9}/{len(data)}"


def test_private_image_of_another_project_is_404(cloud: Picocloud, partner: User,
                                                 small_raw: tuple[str, bytes]) -> None:
    image_id, _ = small_raw
    as_partner = partner.token
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/v2/images/{image_id}", {}),
        ("GET", f"/v2/images/{image_id}/file", {}),
        ("PUT", f"/v2/images/{image_id}/file", {"data": b"x" * 10}),
        ("DELETE", f"/v2/images/{image_id}", {}),
        ("GET", f"/v2/images/{image_id}/members", {}),
        ("POST", f"/v2/images/{image_id}/members", {"body": {"member": partner.project_id}}),
    ]
    for method, path, kwargs in requests:
        reply = image_api(cloud, method, path, as_partner, **kwargs)
        assert reply.status == 404, f"{method} {path}: {reply.status} {reply.body!r}"
    patch = image_api(cloud, "PATCH", f"/v2/images/{image_id}", as_partner,
                      data=b'[{"op": "replace", "path": "/name", "value": "mine"}]',
                      headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert patch.status == 404, patch.body
    listed = image_api(cloud, "GET", "/v2/images", as_partner).json()["images"]
    assert image_id not in {i["id"] for i in listed}

    failure = cloud.fail(*partner.auth(), "image", "show", image_id)
    assert f"No Image found for {image_id}" in failure.message
    # Untouched for its owner.
    image = image_api(cloud, "GET", f"/v2/images/{image_id}").json()
    assert image["name"] == "small-raw" and image["status"] == "active"


# -- data that must be refused, on a cloud that holds no image data at all -------------------


@pytest.fixture(scope="module")
def empty_cloud(picocloud_factory: PicocloudFactory) -> Iterator[Picocloud]:
    """A second picocloud that only ever receives refused uploads, so its store must stay
    exactly as at start: the empty staging directory."""
    pc = picocloud_factory("refusals", env=SERVER_ENV)
    pc.start()
    assert stored_files(pc) == ["staging"]
    yield pc
    pc.stop()


def _backing_file(path: Path) -> Path:
    qemu_img("create", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", str(path), "1M")
    return path


def _data_file(path: Path) -> Path:
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={path.with_name('picocloud-dat')}",
             str(path), "1M")
    return path


def _random_bytes(path: Path) -> Path:
    path.write_bytes(os.urandom(MiB))
    return path


def _huge_disk(path: Path) -> Path:
    qemu_img("create", "-f", "qcow2", str(path), "2T")  # the default limit is 1 TiB
    return path


REFUSED = {
    # case: (declared disk_format, how to make the file, words the refusal must contain)
    "qcow2-backing-file-etc-passwd": ("qcow2", _backing_file, "backing file ('/etc/passwd')"),
    "qcow2-external-data-file": ("qcow2", _data_file, "external file"),
    "raw-bytes-declared-qcow2": ("qcow2", _random_bytes, "not a qcow2 image"),
    "qcow2-bytes-declared-raw": ("raw", real_qcow2, "in qcow2 format but disk_format is 'raw'"),
    "qcow2-virtual-size-over-limit": ("qcow2", _huge_disk, "more than the limit"),
}


def assert_nothing_stored(cloud: Picocloud, image_id: str) -> None:
    image = image_api(cloud, "GET", f"/v2/images/{image_id}").json()
    assert (image["status"], image["size"], image["checksum"], image["os_hash_value"],
            image["virtual_size"]) == ("queued", None, None, None, None)
    assert stored_files(cloud) == ["staging"]
    assert image_api(cloud, "GET", f"/v2/images/{image_id}/file").status == 204


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unsafe_or_mismatched_data_is_refused(empty_cloud: Picocloud, tmp_path: Path,
                                              case: str) -> None:
    disk_format, make, reason = REFUSED[case]
    path = make(tmp_path / "upload.img")
    image_id = create_queued(empty_cloud, case, disk_format)

    reply = image_api(empty_cloud, "PUT", f"/v2/images/{image_id}/file", data=path.read_bytes())
    assert reply.status == 400, reply.body
    assert reason in reply.json()["message"]
    assert_nothing_stored(empty_cloud, image_id)
    # Refused data does not spoil the image: the right bytes are still welcome.
    if disk_format == "qcow2":
        good = real_qcow2(tmp_path / "good.qcow2", virtual=MiB, random_head=64 * 1024)
        ok = image_api(empty_cloud, "PUT", f"/v2/images/{image_id}/file", data=good.read_bytes())
        assert ok.status == 204, ok.body
        assert image_api(empty_cloud, "GET", f"/v2/images/{image_id}").json()["status"] == "active"
        assert image_api(empty_cloud, "DELETE", f"/v2/images/{image_id}").status == 204
        assert stored_files(empty_cloud) == ["staging"]


def test_cli_upload_with_a_backing_file_is_refused(empty_cloud: Picocloud,
                                                   tmp_path: Path) -> None:
    evil = _backing_file(tmp_path / "evil.qcow2")
    failure = empty_cloud.fail("image", "create", "--file", str(evil), "--disk-format", "qcow2",
                               "--container-format", "bare", "evil")
    assert "400" in failure.message and "backing file ('/etc/passwd')" in failure.message
    # The CLI deletes the image it created when the upload fails; no bytes stay behind.
    assert empty_cloud.run("image", "list", "--name", "evil") == []
    assert stored_files(empty_cloud) == ["staging"]


def test_upload_cut_short_leaves_nothing(empty_cloud: Picocloud) -> None:
    """A client that goes away mid-upload: the image is killed and the partial file removed."""
    image_id = create_queued(empty_cloud, "cut-short", "raw")
    with socket.create_connection(("127.0.0.1", empty_cloud.port), timeout=10) as sock:
        sock.sendall(f"PUT /image/v2/images/{image_id}/file HTTP/1.1\r\nHost: x\r\n"
                     f"X-Auth-Token: {empty_cloud.admin_token()}\r\n"
                     f"Content-Type: application/octet-stream\r\n"
                     f"Content-Length: {64 * MiB}\r\n\r\n".encode())
        chunk = os.urandom(MiB)
        for _ in range(8):
            sock.sendall(chunk)
        deadline = time.monotonic() + 10
        while not any(f.endswith(".part") for f in stored_files(empty_cloud)):
            assert time.monotonic() < deadline, "the upload never reached the store"
            time.sleep(0.05)
    deadline = time.monotonic() + 10
    while image_api(empty_cloud, "GET", f"/v2/images/{image_id}").json()["status"] == "saving":
        assert time.monotonic() < deadline, "still saving 10 s after the client left"
        time.sleep(0.05)
    image = image_api(empty_cloud, "GET", f"/v2/images/{image_id}").json()
    assert (image["status"], image["size"], image["checksum"]) == ("killed", None, None)
    assert stored_files(empty_cloud) == ["staging"]
