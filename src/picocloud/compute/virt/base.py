"""The hypervisor protocol: what the host agent asks of a driver, and what it gets back.

Drivers are registered by name (`qemu`, and `fake` for unit tests only). Every operation is
idempotent and either completes or leaves the host as it was (see `picocloud.reverter`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class PowerState(enum.IntEnum):
    """Nova's power states (the numbers are the API's OS-EXT-STS:power_state)."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


@dataclass(frozen=True)
class ConfigDrive:
    """Contents of the `config-2` ISO: openstack/latest/{meta_data,network_data}.json, user_data."""

    meta_data: dict[str, Any]
    user_data: bytes | None = None
    network_data: dict[str, Any] | None = None
    vendor_data: dict[str, Any] | None = None


@dataclass(frozen=True)
class Nic:
    """A network interface (filled by the networking service later)."""

    mac: str
    tap: str  # host tap device name
    netns: str | None = None  # namespace the tap lives in (QEMU then runs inside it)


@dataclass(frozen=True)
class GuestSpec:
    """Everything a driver needs to create or rebuild one guest."""

    uuid: str
    name: str  # display only: never on a command line unescaped
    vcpus: int
    memory_mb: int
    root_gb: int  # root disk size; 0 means the image's own virtual size
    base_image: Path  # the cached, verified base image (read-only)
    base_format: str  # "qcow2" or "raw"
    ephemeral_gb: int = 0
    swap_mb: int = 0
    config_drive: ConfigDrive | None = None
    nics: tuple[Nic, ...] = ()
    extra_specs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HostInfo:
    hostname: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    accel: str  # "kvm" or "tcg"
    hypervisor_type: str  # "QEMU"
    hypervisor_version: int  # e.g. 7002000 for 7.2.0
    cpu_info: dict[str, Any]


class Hypervisor(Protocol):
    """One host's guests. `uuid` names a guest; all methods are safe to repeat."""

    def host_info(self) -> HostInfo: ...

    def spawn(self, spec: GuestSpec) -> None:
        """Create disks (overlay on the base image), config drive, and start the guest."""

    def destroy(self, uuid: str) -> None:
        """Stop the guest if running and remove every file it had."""

    def power_on(self, uuid: str) -> None: ...

    def power_off(self, uuid: str, timeout: float = 30.0) -> None:
        """ACPI power-down, then a hard stop if the guest has not stopped within `timeout`."""

    def reboot(self, uuid: str, hard: bool) -> None: ...

    def pause(self, uuid: str) -> None: ...

    def unpause(self, uuid: str) -> None: ...

    def suspend(self, uuid: str) -> None:
        """Save the guest's state to disk and free its CPU and memory."""

    def resume(self, uuid: str) -> None: ...

    def rebuild(self, spec: GuestSpec, start: bool = True) -> None:
        """A fresh root disk from `spec.base_image`, same identity; started afterwards unless
        `start` is false (a stopped server stays stopped, as in Nova)."""

    def resize(self, spec: GuestSpec) -> None:
        """Apply new vcpus/memory/disk sizes (disks only grow); the guest is left stopped.
        The disks and sizes from before are kept until `confirm_resize` or `revert_resize`."""

    def confirm_resize(self, uuid: str) -> None:
        """Drop what `resize` kept for a revert (the guest is not disturbed)."""

    def revert_resize(self, spec: GuestSpec) -> None:
        """Back to the disks and sizes from before the last resize (changes made since are
        lost, as in Nova); the guest is left stopped. `spec` (the old flavor's) is applied
        if nothing was kept."""

    def snapshot(self, uuid: str, dest: Path) -> None:
        """Write a standalone qcow2 of the guest's root disk (no backing file) to `dest`."""

    def state(self, uuid: str) -> PowerState: ...

    def guests(self) -> dict[str, PowerState]:
        """Every guest this driver knows on the host (re-adoption after a restart)."""

    def console_log(self, uuid: str, length: int | None = None) -> str:
        """The serial console output, or its last `length` lines."""


DriverFactory = Callable[..., Hypervisor]
DRIVERS: dict[str, DriverFactory] = {}


def register(name: str) -> Callable[[DriverFactory], DriverFactory]:
    def deco(factory: DriverFactory) -> DriverFactory:
        DRIVERS[name] = factory
        return factory

    return deco
