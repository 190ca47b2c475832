"""The QEMU driver runs real guests (TCG) from the tiny image: every power operation round-trips
to the state a user expects, snapshots boot, config drives name the guest, a killed QEMU reads
as SHUTDOWN, a new driver (a restarted picocloud) re-adopts running guests, and destroy leaves
no process and no file. No network traffic: guests have no NIC."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from picocloud.compute.virt.base import GuestSpec, PowerState
from picocloud.compute.virt.qemu.driver import QemuDriver
from picocloud.guest import cached_tiny

pytestmark = pytest.mark.e2e

BOOT_TIMEOUT = 120.0  # ~6-10 s under TCG on a quiet machine; far longer on a loaded one
STOP_TIMEOUT = 60.0
MARKER = re.compile(r"picocloud-guest ready hostname=(\S*) ip=(\S*) metadata=(\S*)")
FIRST = "0c0ffee0-0000-4000-8000-000000000001"
SNAPPED = "0c0ffee0-0000-4000-8000-000000000002"
NAMED = "0c0ffee0-0000-4000-8000-000000000003"


@pytest.fixture(scope="module")
def tiny_image() -> Path:
    if shutil.which("qemu-system-x86_64") is None or shutil.which("qemu-img") is None:
        pytest.skip("QEMU is not installed (see scripts/debian-packages.txt)")
    if shutil.which("genisoimage") is None and shutil.which("xorriso") is None:
        pytest.skip("genisoimage is not installed (see scripts/debian-packages.txt)")
    if os.geteuid() != 0:
        pytest.skip("building the tiny image needs root (loop device and mount for extlinux)")
    return cached_tiny()


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="picocloud-test-qemu-driver-"))
    try:
        yield path
    finally:
        _kill_leftovers(path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def driver(workdir: Path) -> Iterator[QemuDriver]:
    qemu = QemuDriver(workdir / "guests", workdir / "base", shutdown_timeout=STOP_TIMEOUT)
    try:
        yield qemu
    finally:
        for uuid in (FIRST, SNAPPED, NAMED):
            qemu.destroy(uuid)


def _processes_under(path: Path) -> dict[int, str]:
    """Our QEMUs and supervisors: every process whose command line names `path`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(str(path).encode() in a for a in argv):
                found[int(entry.name)] = argv[0].decode(errors="replace")
    return found


def _kill_leftovers(path: Path) -> None:
    for pid in _processes_under(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _spec(image: Path, uuid: str = FIRST, **changes: object) -> GuestSpec:
    spec = GuestSpec(
        uuid=uuid, name="lab machine; $(halt)", vcpus=1, memory_mb=128, root_gb=1,
        base_image=image, base_format="qcow2",
    )  # fmt: skip
    return replace(spec, **changes)  # type: ignore[arg-type]


def _wait_ready(driver: QemuDriver, uuid: str, boots: int) -> dict[str, str]:
    """The guest's `boots`-th ready marker on its console (counting every boot so far)."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        found = MARKER.findall(driver.console_log(uuid))
        if len(found) >= boots:
            hostname, ip, metadata = found[boots - 1]
            return {"hostname": hostname, "ip": ip, "metadata": metadata}
        if driver.state(uuid) == PowerState.SHUTDOWN:
            break
        time.sleep(0.2)
    pytest.fail(f"no ready marker #{boots} within {BOOT_TIMEOUT:.0f} s; console:\n"
                f"{driver.console_log(uuid, 40)}")  # fmt: skip


def _qemu_pid(driver: QemuDriver, uuid: str) -> int:
    return int((driver.state_dir / uuid / "qemu.pid").read_text())


def _qemu_argv(driver: QemuDriver, uuid: str) -> list[str]:
    raw = Path(f"/proc/{_qemu_pid(driver, uuid)}/cmdline").read_bytes()
    return raw.decode().split("\0")


def _image_info(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", path], capture_output=True, check=True
    ).stdout
    info: dict[str, object] = json.loads(out)
    return info


def _timed(what: str, call: object, *args: object) -> float:
    start = time.monotonic()
    call(*args)  # type: ignore[operator]
    seconds = time.monotonic() - start
    print(f"{what}: {seconds:.2f} s")
    return seconds


def test_lifecycle_of_a_guest(driver: QemuDriver, tiny_image: Path, workdir: Path) -> None:
    spec = _spec(tiny_image, ephemeral_gb=1, swap_mb=64)
    started = time.monotonic()
    driver.spawn(spec)
    assert _wait_ready(driver, FIRST, 1) == {"hostname": "tiny", "ip": "none", "metadata": "none"}
    print(f"spawn -> ready marker: {time.monotonic() - started:.1f} s")
    assert driver.state(FIRST) == PowerState.RUNNING
    files = sorted(p.name for p in (driver.state_dir / FIRST).iterdir())
    assert {"disk", "disk.eph0", "disk.swap", "console.log", "qmp.sock", "qemu.pid"} <= set(files)
    assert "config.iso" not in files
    for path in (driver.state_dir / FIRST).iterdir():
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, path
    assert (driver.state_dir / FIRST).stat().st_mode & 0o777 == 0o700
    disk = _image_info(driver.state_dir / FIRST / "disk")
    assert disk["backing-filename"] == str(tiny_image) and disk["virtual-size"] == 1 << 30
    assert "lab machine" not in " ".join(_qemu_argv(driver, FIRST))

    driver.pause(FIRST)
    assert driver.state(FIRST) == PowerState.PAUSED
    driver.pause(FIRST)  # repeated: no change
    driver.unpause(FIRST)
    assert driver.state(FIRST) == PowerState.RUNNING

    pid = _qemu_pid(driver, FIRST)
    assert _timed("power_off (ACPI)", driver.power_off, FIRST, STOP_TIMEOUT) < STOP_TIMEOUT
    assert driver.state(FIRST) == PowerState.SHUTDOWN
    assert not Path(f"/proc/{pid}").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()
    assert "reboot: Power down" in driver.console_log(FIRST)  # the guest powered off itself

    guest_dir = driver.state_dir / FIRST
    driver.resize(replace(spec, memory_mb=192, root_gb=2))
    assert driver.state(FIRST) == PowerState.SHUTDOWN
    assert _image_info(guest_dir / "disk")["virtual-size"] == 2 << 30
    assert (guest_dir / "before-resize" / "disk").exists()
    driver.revert_resize(spec)  # the disks and sizes from before, as Nova's revert
    assert _image_info(guest_dir / "disk")["virtual-size"] == 1 << 30
    assert not (guest_dir / "before-resize").exists()
    driver.resize(replace(spec, memory_mb=192, root_gb=2))
    driver.confirm_resize(FIRST)
    assert not (guest_dir / "before-resize").exists()
    assert _image_info(guest_dir / "disk")["virtual-size"] == 2 << 30
    driver.revert_resize(replace(spec, memory_mb=160))  # nothing kept: sizes only, disks grow
    assert _image_info(guest_dir / "disk")["virtual-size"] == 2 << 30
    driver.resize(replace(spec, memory_mb=192, root_gb=2))
    driver.confirm_resize(FIRST)

    driver.power_on(FIRST)
    _wait_ready(driver, FIRST, 2)
    argv = _qemu_argv(driver, FIRST)
    assert argv[argv.index("-m") + 1] == "192"

    pid = _qemu_pid(driver, FIRST)
    driver.reboot(FIRST, hard=True)
    _wait_ready(driver, FIRST, 3)
    assert _qemu_pid(driver, FIRST) == pid  # system_reset: the same QEMU

    _timed("reboot (soft)", driver.reboot, FIRST, False)
    _wait_ready(driver, FIRST, 4)
    assert driver.console_log(FIRST).count("reboot: Power down") == 2

    _timed("suspend", driver.suspend, FIRST)
    assert driver.state(FIRST) == PowerState.SUSPENDED
    assert not any(n.startswith("qemu") for n in _processes_under(driver.state_dir).values())
    _timed("resume", driver.resume, FIRST)
    assert driver.state(FIRST) == PowerState.RUNNING
    assert not (driver.state_dir / FIRST / "memory.state").exists()
    time.sleep(2)
    assert len(MARKER.findall(driver.console_log(FIRST))) == 4  # it ran on: no new boot

    snapshot = workdir / "snapshot.qcow2"
    _timed("snapshot (running guest)", driver.snapshot, FIRST, snapshot)
    assert driver.state(FIRST) == PowerState.RUNNING
    info = _image_info(snapshot)
    assert info["format"] == "qcow2" and "backing-filename" not in info

    # The guest really runs after resume and snapshot: it answers the power button.
    assert _timed("power_off after resume", driver.power_off, FIRST, STOP_TIMEOUT) < STOP_TIMEOUT
    assert driver.console_log(FIRST).count("reboot: Power down") == 3

    driver.spawn(_spec(snapshot, SNAPPED))
    assert _wait_ready(driver, SNAPPED, 1)["hostname"] == "tiny"

    driver.rebuild(replace(spec, memory_mb=192, root_gb=2))
    _wait_ready(driver, FIRST, 5)
    assert _image_info(driver.state_dir / FIRST / "disk")["backing-filename"] == str(tiny_image)

    assert set(driver.guests()) == {FIRST, SNAPPED}
    driver.destroy(FIRST)
    driver.destroy(SNAPPED)
    driver.destroy(FIRST)  # repeated: nothing left to do
    assert _processes_under(workdir) == {}
    assert list((driver.state_dir).iterdir()) == [driver.state_dir / ".locks"]
    assert list((driver.state_dir / ".locks").iterdir()) == []
    assert driver.guests() == {}


SPAWN_ELSEWHERE = """
import sys
from pathlib import Path
from picocloud.compute.virt.base import ConfigDrive, GuestSpec
from picocloud.compute.virt.qemu.driver import QemuDriver
work, image, uuid = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
drive = ConfigDrive(
    meta_data={"uuid": uuid, "name": "pico-test", "hostname": "pico-test.novalocal"},
    user_data=b"#!/bin/sh\\necho picocloud-user-data-ran\\n",
)
spec = GuestSpec(uuid=uuid, name="pico-test", vcpus=1, memory_mb=128, root_gb=1,
                 base_image=image, base_format="qcow2", config_drive=drive)
QemuDriver(work / "guests", work / "base").spawn(spec)
"""


def test_config_drive_readoption_and_a_killed_qemu(
    driver: QemuDriver, tiny_image: Path, workdir: Path
) -> None:
    # Spawned by another picocloud process, in its own session, which then exits and whose
    # whole process group is killed (as Ctrl-C or a service stop would): the guest lives on.
    spawner = subprocess.Popen(
        [sys.executable, "-c", SPAWN_ELSEWHERE, str(workdir), str(tiny_image), NAMED],
        start_new_session=True,
    )
    assert spawner.wait(timeout=BOOT_TIMEOUT) == 0
    with contextlib.suppress(ProcessLookupError):
        os.killpg(spawner.pid, signal.SIGKILL)

    # This driver is the restarted picocloud: it finds the running guest and its console.
    assert driver.guests() == {NAMED: PowerState.RUNNING}
    ready = _wait_ready(driver, NAMED, 1)
    assert ready == {"hostname": "pico-test", "ip": "none", "metadata": "configdrive"}
    assert "running user_data" in driver.console_log(NAMED)
    assert "picocloud-user-data-ran" not in " ".join(_qemu_argv(driver, NAMED))

    # The console keeper dies: the guest runs on, and the next look brings the console back.
    supervisor_pid = int((driver.state_dir / NAMED / "supervisor.pid").read_text())
    os.kill(supervisor_pid, signal.SIGKILL)
    time.sleep(0.5)
    assert driver.guests() == {NAMED: PowerState.RUNNING}
    driver.reboot(NAMED, hard=True)
    assert _wait_ready(driver, NAMED, 2)["hostname"] == "pico-test"

    os.kill(_qemu_pid(driver, NAMED), signal.SIGKILL)  # no ACPI, no quit: gone
    deadline = time.monotonic() + 10
    while driver.state(NAMED) != PowerState.SHUTDOWN and time.monotonic() < deadline:
        time.sleep(0.2)
    assert driver.state(NAMED) == PowerState.SHUTDOWN
    # The (adopting) supervisor notices the exit by polling: give it a moment to log it.
    qemu_log = driver.state_dir / NAMED / "qemu.log"
    deadline = time.monotonic() + 10
    while "exited" not in qemu_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "exited" in qemu_log.read_text()

    driver.power_on(NAMED)
    assert _wait_ready(driver, NAMED, 3)["metadata"] == "configdrive"
    driver.destroy(NAMED)
    assert _processes_under(workdir) == {}
    assert not (workdir / "guests" / NAMED).exists()
