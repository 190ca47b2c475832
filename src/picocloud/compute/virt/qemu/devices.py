"""A guest's disks and config drive, made with qemu-img, mkswap, mke2fs and genisoimage.

Every disk is a qcow2 overlay on a read-only base: the root disk on the cached image, the
ephemeral and swap disks on formatted blank bases cached per size (as Nova's `_base` does),
so creating a guest costs the same for a 64 MB image as for a 2 GB one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from picocloud.compute.virt.base import ConfigDrive
from picocloud.compute.virt.errors import HypervisorError
from picocloud.runner import run

GiB = 1024**3
MiB = 1024**2
EPHEMERAL_LABEL = "ephemeral0"  # the label Nova gives, which cloud-init mounts at /mnt


def virtual_size(image: Path, fmt: str) -> int:
    """The disk size the guest sees (-U: the image may be in use by a running guest)."""
    out = run(["qemu-img", "info", "-U", "--output=json", "-f", fmt, image]).stdout
    return int(json.loads(out)["virtual-size"])


def backing_file(image: Path) -> str | None:
    out = run(["qemu-img", "info", "-U", "--output=json", "-f", "qcow2", image]).stdout
    value = json.loads(out).get("backing-filename")
    return str(value) if value else None


def create_overlay(base: Path, base_format: str, dest: Path, size: int | None = None) -> None:
    """A qcow2 at `dest` backed by `base` (absolute path), `size` bytes or the base's size."""
    if base_format not in ("qcow2", "raw"):
        raise HypervisorError(f"unsupported base image format {base_format!r}")
    argv: list[str | Path] = [
        "qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", base.resolve(), dest,
    ]  # fmt: skip
    if size is not None:
        argv.append(str(size))
    run(argv)
    dest.chmod(0o600)


def grow(image: Path, size: int) -> None:
    """Grow a qcow2 to `size` bytes (never shrinks); the guest must not be running."""
    if size > virtual_size(image, "qcow2"):
        run(["qemu-img", "resize", "-q", "-f", "qcow2", image, str(size)])


def sparse_copy(src: Path, dest: Path) -> None:
    """`dest`: a copy of the file `src`, holes kept (a reflink where the filesystem can)."""
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        run(["cp", "--reflink=auto", "--sparse=always", "--", src, partial], timeout=3600)
        partial.chmod(0o600)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def standalone_copy(image: Path, dest: Path) -> None:
    """`dest`: a qcow2 with the contents of `image` and its backing chain, and no backing file."""
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "qcow2", image, partial],
            timeout=3600)  # fmt: skip
        partial.chmod(0o600)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def formatted_base(cache_dir: Path, kind: str, size: int) -> Path:
    """A cached raw disk of `size` bytes holding an empty swap area or ext4 file system.

    Sparse, read-only, made once per (kind, size) under a lock; guests get overlays on it.
    """
    if kind not in ("swap", "ephemeral"):
        raise ValueError(f"unknown disk kind {kind!r}")
    blank = cache_dir / "blank"
    blank.mkdir(parents=True, exist_ok=True)
    base = blank / f"{kind}-{size // MiB}m.raw"
    if base.exists():
        return base
    with _file_lock(blank / f".{base.name}.lock"):
        if base.exists():
            return base
        partial = blank / f".{base.name}.partial"
        try:
            with partial.open("wb") as f:
                f.truncate(size)
            if kind == "swap":
                run(["mkswap", "-L", "swap0", partial])
            else:
                run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", EPHEMERAL_LABEL,
                     "-E", "nodiscard,lazy_itable_init=1", partial])  # fmt: skip
            partial.chmod(0o444)
            os.replace(partial, base)
        finally:
            partial.unlink(missing_ok=True)
    return base


def iso_tool() -> list[str]:
    """genisoimage, or xorriso's mkisofs emulation: the same options for both."""
    if shutil.which("genisoimage"):
        return ["genisoimage"]
    if shutil.which("xorriso"):
        return ["xorriso", "-as", "mkisofs"]
    raise HypervisorError("making a config drive needs genisoimage (or xorriso) on the host")


def build_config_drive(drive: ConfigDrive, dest: Path) -> None:
    """An ISO 9660 labelled config-2 with openstack/latest/{meta_data,…}.json and user_data."""
    with tempfile.TemporaryDirectory(prefix=".config-drive-", dir=dest.parent) as tmp:
        latest = Path(tmp) / "openstack" / "latest"
        latest.mkdir(parents=True)
        documents = {
            "meta_data.json": drive.meta_data,
            "network_data.json": drive.network_data,
            "vendor_data.json": drive.vendor_data,
        }
        for name, content in documents.items():
            if content is not None:
                (latest / name).write_text(json.dumps(content))
        if drive.user_data is not None:
            (latest / "user_data").write_bytes(drive.user_data)
        partial = dest.with_name(f".{dest.name}.partial")
        try:
            run([
                *iso_tool(), "-quiet", "-o", partial, "-ldots", "-allow-lowercase",
                "-allow-multidot", "-l", "-publisher", "picocloud", "-J", "-r",
                "-V", "config-2", tmp,
            ])  # fmt: skip
            partial.chmod(0o600)
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)
