"""A guest's directory, `state_dir/<uuid>/` (mode 0700, its files 0600), and its stored spec.

The stored spec (`spec.json`) is what `power_on`, `resume` and a restarted picocloud rebuild
QEMU's command line from; the config drive's contents are not kept in it (they live only in
`config.iso`, which may hold user_data).
"""

from __future__ import annotations

import json
import os
import uuid as uuidlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from picocloud.compute.virt.base import GuestSpec, Nic
from picocloud.compute.virt.qemu import supervisor


def valid_uuid(value: str) -> bool:
    """A canonical lower-case UUID: the only thing of a guest's identity used in paths and argv."""
    try:
        return str(uuidlib.UUID(value)) == value
    except ValueError:
        return False


@dataclass(frozen=True)
class GuestFiles:
    dir: Path

    @property
    def uuid(self) -> str:
        return self.dir.name

    @property
    def disk(self) -> Path:
        return self.dir / "disk"  # the root disk: a qcow2 overlay on the cached base image

    @property
    def before_resize(self) -> Path:
        return self.dir / "before-resize"  # the disks and spec a resize revert goes back to

    @property
    def ephemeral(self) -> Path:
        return self.dir / "disk.eph0"

    @property
    def swap(self) -> Path:
        return self.dir / "disk.swap"

    @property
    def config_iso(self) -> Path:
        return self.dir / "config.iso"

    @property
    def spec(self) -> Path:
        return self.dir / "spec.json"

    @property
    def qmp(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def memory_state(self) -> Path:
        return self.dir / "memory.state"  # a suspended guest's RAM and device state

    @property
    def console_sock(self) -> Path:
        return self.dir / supervisor.CONSOLE_SOCK

    @property
    def qemu_pid(self) -> Path:
        return self.dir / supervisor.QEMU_PID

    @property
    def supervisor_pid(self) -> Path:
        return self.dir / supervisor.SUPERVISOR_PID

    @property
    def qemu_log(self) -> Path:
        return self.dir / supervisor.QEMU_LOG


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600) through a temporary name, so readers never see half."""
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)


def spec_to_json(spec: GuestSpec) -> dict[str, Any]:
    data = asdict(spec)
    data["base_image"] = str(spec.base_image)
    data["config_drive"] = None
    data["nics"] = [asdict(nic) for nic in spec.nics]
    return data


def spec_from_json(data: dict[str, Any]) -> GuestSpec:
    fields = dict(data)
    fields["base_image"] = Path(fields["base_image"])
    fields["nics"] = tuple(Nic(**nic) for nic in fields.get("nics", ()))
    fields["config_drive"] = None
    return GuestSpec(**fields)


def save_spec(files: GuestFiles, spec: GuestSpec) -> None:
    write_private(files.spec, json.dumps(spec_to_json(spec), indent=1).encode())


def load_spec(files: GuestFiles) -> GuestSpec:
    return spec_from_json(json.loads(files.spec.read_text()))
