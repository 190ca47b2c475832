"""FakeDriver: guests in memory, for fast unit tests of the agent and the API. Never in production.

The behaviour below is the contract; the QEMU driver keeps it too (tests/e2e/test_qemu_driver):
- Every method except `destroy` raises GuestNotFound for an unknown uuid; `destroy` of an
  unknown guest does nothing. Failures are HypervisorError (InvalidGuestState when the
  operation does not apply to the current power state).
- spawn: the guest RUNNING. Spawning an existing guest only makes sure it runs (as power_on).
- power_on: SHUTDOWN -> RUNNING; SUSPENDED -> RUNNING with its saved state (as resume);
  RUNNING or PAUSED: unchanged.
- power_off: -> SHUTDOWN from any state (a suspended guest's saved state is discarded).
- reboot (soft or hard): -> RUNNING from any state (a stopped or suspended guest boots afresh).
- pause: RUNNING -> PAUSED; PAUSED unchanged; SHUTDOWN or SUSPENDED: InvalidGuestState.
- unpause: PAUSED -> RUNNING; RUNNING unchanged; SHUTDOWN or SUSPENDED: InvalidGuestState.
- suspend: RUNNING or PAUSED -> SUSPENDED; SUSPENDED unchanged; SHUTDOWN: InvalidGuestState.
- resume: SUSPENDED -> RUNNING; RUNNING or PAUSED unchanged; SHUTDOWN: InvalidGuestState.
- rebuild: new root disk from the spec's image, same identity -> RUNNING.
- resize: new vcpus/memory/disk sizes; disks only grow (a smaller size, as a resize revert
  asks, leaves a disk as it is); the guest is left SHUTDOWN.
- snapshot: writes a standalone qcow2 (no backing file) to `dest`; the state is unchanged.
- state: the power state; guests: every guest on the host with its state.
- console_log: the serial console, each boot ending with the tiny image's ready marker
  ("picocloud-guest ready hostname=<h> ip=none metadata=<configdrive|none>"); `length`
  keeps the last lines.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from picocloud.compute.virt.base import GuestSpec, HostInfo, PowerState, register
from picocloud.compute.virt.errors import GuestNotFound, HypervisorError, InvalidGuestState

RUNNING, PAUSED, SHUTDOWN, SUSPENDED = (
    PowerState.RUNNING, PowerState.PAUSED, PowerState.SHUTDOWN, PowerState.SUSPENDED,
)  # fmt: skip


def empty_qcow2(size: int) -> bytes:
    """A valid, empty qcow2 v3 of `size` bytes (the layout `qemu-img create` writes)."""
    cluster_bits = 16
    cluster = 1 << cluster_bits
    l1_size = max(1, -(-size // (cluster * (cluster // 8))))
    header = struct.pack(
        ">4sIQIIQIIQQIIQQQQII",
        b"QFI\xfb", 3, 0, 0, cluster_bits, size, 0, l1_size, 3 * cluster, cluster, 1, 0, 0,
        0, 0, 0, 4, 104,
    )  # fmt: skip
    refcount_table = struct.pack(">Q", 2 * cluster)
    refcount_block = struct.pack(">4H", 1, 1, 1, 1)  # header, table, block, L1
    return (
        header.ljust(cluster, b"\0")
        + refcount_table.ljust(cluster, b"\0")
        + refcount_block.ljust(cluster, b"\0")
        + b"\0" * (8 * l1_size)
    )


@dataclass
class FakeGuest:
    spec: GuestSpec
    power: PowerState = RUNNING
    console: list[str] = field(default_factory=list)
    boots: int = 0
    before_resize: GuestSpec | None = None


@register("fake")
class FakeDriver:
    def __init__(self, state_dir: Path | None = None, image_cache_dir: Path | None = None,
                 **host: Any) -> None:  # fmt: skip
        self.state_dir = state_dir
        self.image_cache_dir = image_cache_dir
        self.guests_: dict[str, FakeGuest] = {}
        self.calls: list[tuple[str, str]] = []  # (operation, uuid), for tests to assert on
        self.fail: dict[str, HypervisorError] = {}  # operation -> error raised once
        self._lock = threading.RLock()
        self._host = {
            "hostname": "fake-host", "vcpus": 8, "memory_mb": 16384, "disk_gb": 200,
            "accel": "tcg", **host,
        }  # fmt: skip

    def _enter(self, operation: str, uuid: str) -> None:
        self.calls.append((operation, uuid))
        error = self.fail.pop(operation, None)
        if error is not None:
            raise error

    def _guest(self, uuid: str) -> FakeGuest:
        guest = self.guests_.get(uuid)
        if guest is None:
            raise GuestNotFound(uuid)
        return guest

    def _boot(self, guest: FakeGuest) -> None:
        guest.power = RUNNING
        guest.boots += 1
        drive = guest.spec.config_drive
        hostname = "tiny"
        if drive is not None:
            raw = str(drive.meta_data.get("hostname") or drive.meta_data.get("name") or "tiny")
            hostname = raw.split(".")[0]
        metadata = "configdrive" if drive is not None else "none"
        guest.console += [
            f"fake: boot {guest.boots} of {guest.spec.uuid} ({guest.spec.vcpus} vCPU, "
            f"{guest.spec.memory_mb} MiB)",
            f"picocloud-guest ready hostname={hostname} ip=none metadata={metadata}",
        ]

    def crash(self, uuid: str) -> None:
        """What `kill -9` of the guest's QEMU does: the guest is SHUTDOWN."""
        with self._lock:
            self._guest(uuid).power = SHUTDOWN

    def host_info(self) -> HostInfo:
        h = self._host
        return HostInfo(
            hostname=str(h["hostname"]), vcpus=int(h["vcpus"]), memory_mb=int(h["memory_mb"]),
            disk_gb=int(h["disk_gb"]), accel=str(h["accel"]), hypervisor_type="QEMU",
            hypervisor_version=7002000,
            cpu_info={"arch": "x86_64", "model": "fake", "vendor": "picocloud",
                      "topology": {"sockets": 1, "cores": int(h["vcpus"]), "threads": 1},
                      "features": []},
        )  # fmt: skip

    def spawn(self, spec: GuestSpec) -> None:
        with self._lock:
            self._enter("spawn", spec.uuid)
            guest = self.guests_.get(spec.uuid)
            if guest is None:
                guest = self.guests_[spec.uuid] = FakeGuest(spec)
                self._boot(guest)
            elif guest.power == SUSPENDED:
                guest.power = RUNNING
            elif guest.power == SHUTDOWN:
                self._boot(guest)

    def destroy(self, uuid: str) -> None:
        with self._lock:
            self._enter("destroy", uuid)
            self.guests_.pop(uuid, None)

    def power_on(self, uuid: str) -> None:
        with self._lock:
            self._enter("power_on", uuid)
            guest = self._guest(uuid)
            if guest.power == SUSPENDED:
                guest.power = RUNNING
            elif guest.power == SHUTDOWN:
                self._boot(guest)

    def power_off(self, uuid: str, timeout: float = 30.0) -> None:
        with self._lock:
            self._enter("power_off", uuid)
            self._guest(uuid).power = SHUTDOWN

    def reboot(self, uuid: str, hard: bool) -> None:
        with self._lock:
            self._enter("reboot_hard" if hard else "reboot", uuid)
            self._boot(self._guest(uuid))

    def _transition(self, operation: str, uuid: str, moves: dict[PowerState, PowerState]) -> None:
        with self._lock:
            self._enter(operation, uuid)
            guest = self._guest(uuid)
            if guest.power not in moves:
                raise InvalidGuestState(
                    f"guest {uuid} is {guest.power.name.lower()}; it cannot {operation}"
                )
            guest.power = moves[guest.power]

    def pause(self, uuid: str) -> None:
        self._transition("pause", uuid, {RUNNING: PAUSED, PAUSED: PAUSED})

    def unpause(self, uuid: str) -> None:
        self._transition("unpause", uuid, {PAUSED: RUNNING, RUNNING: RUNNING})

    def suspend(self, uuid: str) -> None:
        self._transition(
            "suspend", uuid, {RUNNING: SUSPENDED, PAUSED: SUSPENDED, SUSPENDED: SUSPENDED}
        )

    def resume(self, uuid: str) -> None:
        self._transition("resume", uuid, {SUSPENDED: RUNNING, RUNNING: RUNNING, PAUSED: PAUSED})

    def rebuild(self, spec: GuestSpec, start: bool = True) -> None:
        with self._lock:
            self._enter("rebuild", spec.uuid)
            guest = self._guest(spec.uuid)
            guest.spec = spec
            if start:
                self._boot(guest)
            else:
                guest.power = SHUTDOWN

    def resize(self, spec: GuestSpec) -> None:
        with self._lock:
            self._enter("resize", spec.uuid)
            guest = self._guest(spec.uuid)
            old = guest.spec
            guest.before_resize = old
            guest.spec = replace(
                spec,
                root_gb=max(spec.root_gb, old.root_gb),
                ephemeral_gb=max(spec.ephemeral_gb, old.ephemeral_gb),
                config_drive=old.config_drive,
            )
            guest.power = SHUTDOWN

    def confirm_resize(self, uuid: str) -> None:
        with self._lock:
            self._enter("confirm_resize", uuid)
            self._guest(uuid).before_resize = None

    def revert_resize(self, spec: GuestSpec) -> None:
        with self._lock:
            self._enter("revert_resize", spec.uuid)
            guest = self._guest(spec.uuid)
            guest.spec, guest.before_resize = guest.before_resize or spec, None
            guest.power = SHUTDOWN

    def snapshot(self, uuid: str, dest: Path) -> None:
        with self._lock:
            self._enter("snapshot", uuid)
            size = max(self._guest(uuid).spec.root_gb, 1) << 30
        Path(dest).write_bytes(empty_qcow2(size))

    def state(self, uuid: str) -> PowerState:
        with self._lock:
            return self._guest(uuid).power

    def guests(self) -> dict[str, PowerState]:
        with self._lock:
            return {uuid: guest.power for uuid, guest in self.guests_.items()}

    def console_log(self, uuid: str, length: int | None = None) -> str:
        with self._lock:
            lines = self._guest(uuid).console
            if length is not None:
                lines = lines[-length:] if length > 0 else []
            return "".join(f"{line}\n" for line in lines)
