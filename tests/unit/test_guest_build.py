"""The tiny image builder's rules that need neither root nor apt: kernel modules load after
their dependencies, the disk has one bootable partition where extlinux expects it, the
initramfs is a well-formed newc archive, and the cache key follows every input."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from picocloud.guest import build
from picocloud.guest.build import GuestBuildError, Package

KVER = "6.1.0-99-cloud-amd64"


def fake_kernel(tmp_path: Path, modules: dict[str, str]) -> Path:
    """A kernel package tree whose .ko files carry only a modinfo `depends=` string."""
    tree = tmp_path / "kernel"
    for name, depends in modules.items():
        ko = tree / "lib/modules" / KVER / "kernel/drivers" / f"{name}.ko"
        ko.parent.mkdir(parents=True, exist_ok=True)
        ko.write_bytes(b"\x7fELF\0license=GPL\0depends=" + depends.encode() + b"\0vermagic=x\0")
    return tree


def test_modules_load_after_their_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = fake_kernel(tmp_path, {
        "virtio_net": "virtio_ring,virtio,net_failover", "net_failover": "failover",
        "failover": "", "virtio": "", "virtio_ring": "", "virtio-rng": "virtio,virtio_ring",
        "unrelated": "",
    })  # fmt: skip
    monkeypatch.setattr(build, "MODULES", ("virtio_net", "virtio-rng"))
    order = list(build._module_order(tree, KVER))
    assert set(order) == {"virtio_net", "net_failover", "failover", "virtio", "virtio_ring",
                          "virtio-rng"}  # fmt: skip
    needs = {
        "virtio_net": ["virtio_ring", "virtio", "net_failover"],
        "net_failover": ["failover"],
        "virtio-rng": ["virtio", "virtio_ring"],
    }
    for module, depends in needs.items():
        assert all(order.index(d) < order.index(module) for d in depends)


def test_a_missing_module_stops_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = fake_kernel(tmp_path, {"virtio_blk": "virtio,virtio_ring", "virtio": ""})
    monkeypatch.setattr(build, "MODULES", ("virtio_blk",))
    with pytest.raises(GuestBuildError, match="virtio_ring"):
        build._module_order(tree, KVER)


def test_disk_has_one_active_linux_partition_at_1_mib(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    build._write_mbr(disk, b"\xeb\x63" + b"\x90" * 438)
    assert disk.stat().st_size == build.DISK_BYTES
    sector = disk.read_bytes()[:512]
    assert sector[:2] == b"\xeb\x63" and sector[510:] == b"\x55\xaa"
    boot, ptype, first, count = struct.unpack_from("<B3xB3xII", sector, 446)
    assert (boot, ptype) == (0x80, 0x83)
    assert first * 512 == build.PARTITION_OFFSET
    assert (first + count) * 512 == build.DISK_BYTES
    assert sector[462:510] == b"\0" * 48  # no other partitions


def test_initramfs_is_a_newc_archive_with_init_and_a_console(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin/busybox").write_bytes(b"busybox")
    (root / "etc/picocloud").mkdir(parents=True)
    (root / "etc/picocloud/modules").write_text("virtio\n")
    (root / "lib/modules" / KVER).mkdir(parents=True)
    (root / "lib/modules" / KVER / "virtio.ko").write_bytes(b"ko")
    data = gzip.decompress(build._initramfs(root, ["bin/sh", "sbin/init", "linuxrc"], KVER))
    entries = {}
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev, namesize = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        pos += 110 + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            break
        entries[name] = (mode, data[pos : pos + size], rdev)
        pos += size + (-size % 4)
    assert entries["init"][1] == (Path(build.__file__).parent / "init.sh").read_bytes()
    assert entries["init"][0] & 0o111
    assert entries["dev/console"][2] == (5, 1)
    assert entries["bin/sh"][1] == b"/bin/busybox"
    assert entries[f"lib/modules/{KVER}/virtio.ko"][1] == b"ko"
    assert "etc/picocloud-initramfs" in entries  # tells init.sh which role it plays
    assert "linuxrc" not in entries


def test_image_key_follows_package_versions() -> None:
    pkgs = [Package("busybox-static", "1:1.35.0-4", ""), Package("libc6", "2.36-9", "")]
    newer = [pkgs[0], Package("libc6", "2.36-10", "")]
    assert build.image_key(pkgs) == build.image_key(list(pkgs))
    assert build.image_key(pkgs) != build.image_key(newer)


def test_deb_names_follow_apt_get_download(tmp_path: Path) -> None:
    pkg = Package("busybox-static", "1:1.35.0-4+deb12u1+b1", "")
    (tmp_path / "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb").write_bytes(b"deb")
    assert [p.name for p in tmp_path.glob(pkg.deb_glob)] == [
        "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
    ]
