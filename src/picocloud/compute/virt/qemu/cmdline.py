"""QEMU's argv for one guest, built only from validated identifiers and our own paths.

Nothing a user typed reaches the command line: the display name and metadata never appear,
the uuid, MACs, tap and namespace names are checked against strict patterns, and paths (ours)
are escaped for QEMU's comma-separated option syntax.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from picocloud.compute.virt.base import GuestSpec, Nic
from picocloud.compute.virt.qemu.layout import GuestFiles, valid_uuid

QEMU_BINARY = "qemu-system-x86_64"
TCG_TB_SIZE_MB = 32  # the TCG translation cache: ~200 MiB RSS instead of ~230 (host-facts)
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # IFNAMSIZ - 1
NETNS = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def detect_accel(
    cpuinfo: Path = Path("/proc/cpuinfo"),
    pvm_module: Path = Path("/sys/module/kvm_pvm"),
    kvm_device: Path = Path("/dev/kvm"),
) -> str:
    """The accelerator: "kvm" only with real hardware virtualization, else "tcg".

    A /dev/kvm from kvm_pvm (no vmx/svm in the CPU flags) hangs stock guest kernels instead of
    failing, so its presence alone proves nothing; and never `kvm:tcg`, which would pick it.
    """
    if not kvm_device.exists() or not os.access(kvm_device, os.R_OK | os.W_OK):
        return "tcg"
    if pvm_module.exists():
        return "tcg"
    try:
        text = cpuinfo.read_text()
    except OSError:
        return "tcg"
    flags = {
        flag
        for line in text.splitlines()
        if line.startswith("flags")
        for flag in line.partition(":")[2].split()
    }
    return "kvm" if flags & {"vmx", "svm"} else "tcg"


def qemu_opt(value: str | Path) -> str:
    """`value` as one QEMU option value: a comma inside it is doubled."""
    return str(value).replace(",", ",,")


def _check_nics(nics: Sequence[Nic]) -> str | None:
    """The namespace every NIC's tap lives in (QEMU runs there), or None for the host's."""
    for nic in nics:
        if not MAC.match(nic.mac):
            raise ValueError(f"invalid MAC address {nic.mac!r} (want lower-case aa:bb:cc:dd:ee:ff)")
        if not IFNAME.match(nic.tap):
            raise ValueError(f"invalid tap device name {nic.tap!r}")
        if nic.netns is not None and not NETNS.match(nic.netns):
            raise ValueError(f"invalid network namespace name {nic.netns!r}")
    namespaces = {nic.netns for nic in nics}
    if len(namespaces) > 1:
        raise ValueError("all NICs of a guest must be in the same network namespace")
    return namespaces.pop() if namespaces else None


def _drive(node: str, path: Path, fmt: str, device: str, *extra: str) -> list[str]:
    drive = f"file={qemu_opt(path)},format={fmt},if=none,id={node}"
    return ["-drive", ",".join((drive, *extra)), "-device", f"{device},drive={node}"]


def build_argv(
    spec: GuestSpec,
    files: GuestFiles,
    accel: str,
    *,
    config_drive: bool,
    incoming: bool = False,
    qemu_binary: str = QEMU_BINARY,
) -> list[str]:
    """The command that starts this guest paused (-S): the driver continues it over QMP.

    `incoming` makes QEMU wait for a saved state (`migrate-incoming`) instead of booting.
    """
    if not valid_uuid(spec.uuid) or spec.uuid != files.uuid:
        raise ValueError(f"guest uuid {spec.uuid!r} is not a canonical UUID of this directory")
    if accel not in ("kvm", "tcg"):
        raise ValueError(f"unknown accelerator {accel!r}")
    if spec.vcpus < 1 or spec.memory_mb < 16:
        raise ValueError(f"too small a guest: {spec.vcpus} vCPU, {spec.memory_mb} MiB")
    netns = _check_nics(spec.nics)
    argv = ["ip", "netns", "exec", netns] if netns else []
    argv += [
        qemu_binary,
        "-name", f"guest=picocloud-{spec.uuid},debug-threads=on",
        "-uuid", spec.uuid,
        "-machine", "pc",
        "-accel", "kvm" if accel == "kvm" else f"tcg,tb-size={TCG_TB_SIZE_MB}",
        "-cpu", "host" if accel == "kvm" else "max",
        "-m", str(spec.memory_mb),
        "-smp", str(spec.vcpus),
        "-nodefaults", "-no-user-config",
        "-display", "none",
        "-rtc", "base=utc",
        "-msg", "timestamp=on",
        "-action", "reboot=reset,shutdown=poweroff",
        "-chardev", f"socket,id=serial0,path={qemu_opt(files.console_sock)},reconnect=1",
        "-serial", "chardev:serial0",
        "-chardev", f"socket,id=qmp,path={qemu_opt(files.qmp)},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-pidfile", str(files.qemu_pid),
    ]  # fmt: skip
    argv += _drive("drive-root", files.disk, "qcow2", "virtio-blk-pci,bootindex=0", "discard=unmap")
    if spec.ephemeral_gb > 0:
        argv += _drive("drive-eph0", files.ephemeral, "qcow2", "virtio-blk-pci", "discard=unmap")
    if spec.swap_mb > 0:
        argv += _drive("drive-swap", files.swap, "qcow2", "virtio-blk-pci", "discard=unmap")
    if config_drive:
        argv += _drive(
            "drive-config", files.config_iso, "raw", "ide-cd", "media=cdrom", "readonly=on"
        )
    argv += ["-object", "rng-random,id=rng0,filename=/dev/urandom"]
    argv += ["-device", "virtio-rng-pci,rng=rng0"]
    if not spec.nics:
        argv += ["-nic", "none"]
    for index, nic in enumerate(spec.nics):
        argv += ["-netdev", f"tap,id=net{index},ifname={nic.tap},script=no,downscript=no"]
        argv += ["-device", f"virtio-net-pci,netdev=net{index},mac={nic.mac}"]
    argv += ["-sandbox", SANDBOX, "-S"]
    if incoming:
        argv += ["-incoming", "defer"]
    return argv
