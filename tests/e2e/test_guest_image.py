"""The tiny guest image boots in real QEMU (TCG) and prints its ready marker: without a NIC,
with a config drive, and with a NIC whose metadata service and SSH run over QEMU's user-mode
network (loopback only). QMP `system_powerdown` powers it off cleanly."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from picocloud.guest import cached_tiny

pytestmark = pytest.mark.e2e

QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = 120.0  # TCG boots take ~7 s on a quiet machine; far longer on a loaded one
POWERDOWN_TIMEOUT = 20.0
MARKER = re.compile(rb"picocloud-guest ready hostname=(\S*) ip=(\S*) metadata=(\S*)")

# A one-shot HTTP responder run by QEMU's guestfwd for each guest connection to the metadata
# address: stdin/stdout are the connection, argv[1] the directory it serves.
METADATA_RESPONDER = """\
import os, sys
request = sys.stdin.buffer.readline().split()
while sys.stdin.buffer.readline() not in (b"\\r\\n", b"\\n", b""):
    pass
path = os.path.join(sys.argv[1], *request[1].decode().strip("/").split("/"))
if os.path.isfile(path):
    body, status = open(path, "rb").read(), b"200 OK"
else:
    body, status = b"not found", b"404 Not Found"
sys.stdout.buffer.write(b"HTTP/1.0 " + status + b"\\r\\nContent-Length: "
                        + str(len(body)).encode() + b"\\r\\nConnection: close\\r\\n\\r\\n" + body)
sys.stdout.flush()
"""


def _missing_host_support() -> str:
    if os.geteuid() != 0:
        return "building the tiny image needs root (loop device and mount for extlinux)"
    for tool in (QEMU, "qemu-img", "apt-get", "mke2fs", "genisoimage", "ssh"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (see scripts/debian-packages.txt)"
    return ""


@pytest.fixture(scope="session")
def tiny_image() -> Path:
    reason = _missing_host_support()
    if reason:
        pytest.skip(reason)
    return cached_tiny()  # the default cache, so later runs (and CI) reuse the build


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="picocloud-test-guest-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Guest:
    """One QEMU process (TCG, 128 MiB) on a copy-on-write overlay of the tiny image."""

    def __init__(self, image: Path, workdir: Path, name: str, extra: list[str]) -> None:
        self.log = workdir / f"{name}.serial.log"
        self.qmp_path = workdir / f"{name}.qmp"
        overlay = workdir / f"{name}.qcow2"
        if not overlay.exists():
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image, overlay],
                check=True,
            )
        self.log.unlink(missing_ok=True)
        argv = [
            QEMU, "-name", f"picocloud-test-{name}", "-accel", "tcg", "-m", "128",
            "-nographic", "-monitor", "none", "-serial", f"file:{self.log}",
            "-qmp", f"unix:{self.qmp_path},server,nowait", "-no-reboot",
            "-drive", f"file={overlay},if=virtio,format=qcow2", *extra,
        ]  # fmt: skip
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def serial(self) -> bytes:
        return self.log.read_bytes() if self.log.exists() else b""

    def wait_ready(self) -> dict[str, str]:
        deadline = self.started + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            found = MARKER.search(self.serial())
            if found:
                keys = ("hostname", "ip", "metadata")
                return {k: v.decode() for k, v in zip(keys, found.groups(), strict=True)}
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        tail = self.serial()[-3000:].decode(errors="replace")
        pytest.fail(f"no ready marker within {BOOT_TIMEOUT:.0f} s; serial console:\n{tail}")

    def qmp(self, command: str) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.qmp_path))
            reader = sock.makefile("rb")
            json.loads(reader.readline())  # the greeting
            for execute in ("qmp_capabilities", command):
                sock.sendall(json.dumps({"execute": execute}).encode() + b"\n")
                while True:
                    reply = json.loads(reader.readline())
                    if "return" in reply or "error" in reply:
                        break
                assert "error" not in reply, reply

    def powerdown(self) -> float:
        """Ask the guest to power off over QMP; the seconds until QEMU exited."""
        start = time.monotonic()
        self.qmp("system_powerdown")
        try:
            self.proc.wait(timeout=POWERDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"QEMU still runs {POWERDOWN_TIMEOUT:.0f} s after system_powerdown")
        return time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


Boot = Callable[..., Guest]


@pytest.fixture
def boot(tiny_image: Path, workdir: Path) -> Iterator[Boot]:
    guests: list[Guest] = []

    def start(name: str, *extra: str) -> Guest:
        guest = Guest(tiny_image, workdir, name, list(extra))
        guests.append(guest)
        return guest

    try:
        yield start
    finally:
        for guest in guests:
            guest.kill()


def _config_drive(workdir: Path, meta: dict[str, object], user_data: str = "") -> Path:
    tree = workdir / "config-drive"
    latest = tree / "openstack" / "latest"
    latest.mkdir(parents=True)
    (latest / "meta_data.json").write_text(json.dumps(meta))
    if user_data:
        (latest / "user_data").write_text(user_data)
    iso = workdir / "picocloud-config-2.iso"
    subprocess.run(
        ["genisoimage", "-quiet", "-o", iso, "-V", "config-2", "-r", "-J", "-l", tree], check=True
    )
    return iso


def test_boots_without_a_nic_and_says_ip_none(boot: Boot) -> None:
    guest = boot("picocloud-no-nic", "-nic", "none")
    ready = guest.wait_ready()
    assert ready == {"hostname": "tiny", "ip": "none", "metadata": "none"}


def test_config_drive_names_the_guest_and_powerdown_stops_it(boot: Boot, workdir: Path) -> None:
    iso = _config_drive(
        workdir,
        {"uuid": "9d3c6c33-0000-4000-8000-000000000001", "hostname": "picocloud-cd.novalocal",
         "name": "picocloud-cd"},
        user_data="#!/bin/sh\necho from-user-data > /root/user-data-ran\n",
    )  # fmt: skip
    guest = boot(
        "picocloud-config-drive", "-nic", "none",
        "-drive", f"file={iso},media=cdrom,format=raw,readonly=on",
    )  # fmt: skip
    ready = guest.wait_ready()
    assert ready == {"hostname": "picocloud-cd", "ip": "none", "metadata": "configdrive"}
    assert b"running user_data" in guest.serial()
    seconds = guest.powerdown()
    assert seconds < POWERDOWN_TIMEOUT
    assert b"reboot: Power down" in guest.serial()  # the kernel powered off, it was not killed


def test_network_metadata_keys_user_data_and_ssh(boot: Boot, workdir: Path) -> None:
    key = workdir / "picocloud-test-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    public_key = key.with_suffix(".pub").read_text().strip()
    served = workdir / "metadata"
    latest = served / "openstack" / "latest"
    latest.mkdir(parents=True)
    meta = {
        "uuid": "9d3c6c33-0000-4000-8000-000000000002",
        "hostname": "picocloud-net.novalocal",
        "public_keys": {"picocloud-test": public_key + "\n"},
    }
    (latest / "meta_data.json").write_text(json.dumps(meta))
    (latest / "user_data").write_text("#!/bin/sh\nhostname > /root/user-data-ran\n")
    responder = workdir / "picocloud-metadata.py"
    responder.write_text(METADATA_RESPONDER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        ssh_port = s.getsockname()[1]
    # restrict=on: the guest reaches nothing but the forwards below (all on this host).
    nic = (
        "user,model=virtio-net-pci,restrict=on,net=169.254.169.0/24,"
        f"hostfwd=tcp:127.0.0.1:{ssh_port}-:22,"
        f"guestfwd=tcp:169.254.169.254:80-cmd:{sys.executable} {responder} {served}"
    )
    guest = boot("picocloud-net", "-nic", nic)
    ready = guest.wait_ready()
    assert ready["metadata"] == "network"
    assert ready["hostname"] == "picocloud-net"
    assert ready["ip"].startswith("169.254.169.")
    ssh = [
        "ssh", "-i", str(key), "-p", str(ssh_port), "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "ConnectTimeout=30", "root@127.0.0.1", "cat /root/user-data-ran",
    ]  # fmt: skip
    result = subprocess.run(ssh, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "picocloud-net"
    guest.powerdown()

    # The root disk persists: booted again without a NIC, it keeps its name and its key, and
    # the user_data script (once per instance) does not run again.
    again = boot("picocloud-net", "-nic", "none")
    ready = again.wait_ready()
    assert ready == {"hostname": "picocloud-net", "ip": "none", "metadata": "none"}
    assert b"running user_data" not in again.serial()
