"""Image inspection: real files made by qemu-img are recognised with QEMU's virtual size, and
crafted malicious files are refused with a message that says why."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from picocloud.image import inspect
from picocloud.image.inspect import UnsafeImage, check_upload, detect, qemu_img_info

MiB = 1 << 20
LIMIT = 1 << 40

needs_qemu_img = pytest.mark.skipif(
    shutil.which("qemu-img") is None, reason="qemu-img missing: apt-get install qemu-utils")


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def make(tmp_path: Path, fmt: str, *options: str, size: str = "64M", name: str = "") -> Path:
    path = tmp_path / (name or f"disk.{fmt}")
    qemu_img("create", "-q", "-f", fmt, *options, str(path), size)
    return path


def qemu_virtual_size(path: Path, fmt: str) -> int:
    out = subprocess.run(["qemu-img", "info", "--output", "json", "-f", fmt, str(path)],
                         check=True, capture_output=True, text=True).stdout
    return int(json.loads(out)["virtual-size"])


def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.fixture
def bytes_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many bytes inspection read, through every file it opened."""
    counts: list[int] = []
    real_read = inspect._Reader.upto

    def counting(self: Any, offset: int, length: int) -> bytes:
        data: bytes = real_read(self, offset, length)
        counts.append(len(data))
        return data

    monkeypatch.setattr(inspect._Reader, "upto", counting)
    yield counts


@needs_qemu_img
@pytest.mark.parametrize(
    ("qemu_format", "options", "declared"),
    [
        ("qcow2", [], "qcow2"),
        ("qcow2", ["-o", "compat=0.10"], "qcow2"),
        ("qcow2", ["-o", "cluster_size=512"], "qcow2"),
        ("vmdk", [], "vmdk"),
        ("vmdk", ["-o", "subformat=streamOptimized"], "vmdk"),
        ("vdi", [], "vdi"),
        ("vdi", ["-o", "static=on"], "vdi"),
        ("vpc", [], "vhd"),
        ("vpc", ["-o", "subformat=fixed"], "vhd"),
        ("vpc", ["-o", "force_size=on"], "vhd"),
        ("vhdx", [], "vhdx"),
        ("raw", [], "raw"),
        ("raw", [], "ami"),
    ],
)
def test_real_images_are_accepted_with_qemus_virtual_size(
    tmp_path: Path, bytes_read: list[int], qemu_format: str, options: list[str], declared: str
) -> None:
    path = make(tmp_path, qemu_format, *options, size="100M")
    info = check_upload(path, declared, LIMIT)
    assert info.format == inspect.ACCEPTED[declared]
    assert info.virtual_size == qemu_virtual_size(path, qemu_format)
    assert (info.backing_file, info.data_file, info.extents) == (None, None, ())
    assert sum(bytes_read) <= 2 * MiB + 64 * 1024


def hand_made_iso(path: Path, blocks: int = 40) -> None:
    """A minimal ISO 9660 image: system area, a primary volume descriptor, a terminator."""
    pvd = bytearray(2048)
    pvd[0:7] = b"\x01CD001\x01"
    pvd[40:72] = b"config-2".ljust(32)
    pvd[80:88] = struct.pack("<I", blocks) + struct.pack(">I", blocks)
    pvd[128:132] = struct.pack("<H", 2048) + struct.pack(">H", 2048)
    path.write_bytes(bytes(16 * 2048) + bytes(pvd) + b"\xffCD001\x01".ljust(2048, b"\0")
                     + bytes((blocks - 18) * 2048))


def test_iso_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "cd.iso"
    tool = shutil.which("genisoimage") or shutil.which("xorriso")
    if tool:  # a real ISO; else the hand-made header below
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "meta_data.json").write_text("{}")
        args = ["-as", "mkisofs"] if tool.endswith("xorriso") else []
        subprocess.run([tool, *args, "-quiet", "-V", "config-2", "-o", str(path),
                        str(tmp_path / "src")], check=True, capture_output=True)
    else:
        hand_made_iso(path)
    info = check_upload(path, "iso", LIMIT)
    assert (info.format, info.virtual_size) == ("iso", path.stat().st_size)
    assert info.details["volume_id"] == "config-2"
    with pytest.raises(UnsafeImage, match="is in iso format but disk_format is 'raw'"):
        check_upload(path, "raw", LIMIT)


@needs_qemu_img
def test_qcow2_with_backing_file_is_refused(tmp_path: Path) -> None:
    path = make(tmp_path, "qcow2", "-b", "/etc/passwd", "-F", "raw", size="1M")
    assert detect(path).backing_file == "/etc/passwd"
    message = "names a backing file ('/etc/passwd'); flatten it"
    with pytest.raises(UnsafeImage, match=re.escape(message)):
        check_upload(path, "qcow2", LIMIT)


@needs_qemu_img
def test_qcow2_with_external_data_file_is_refused(tmp_path: Path) -> None:
    path = make(tmp_path, "qcow2", "-o", f"data_file={tmp_path / 'data.raw'}")
    with pytest.raises(UnsafeImage, match=re.escape(f"external file ('{tmp_path / 'data.raw'}')")):
        check_upload(path, "qcow2", LIMIT)
    patch(path, 0x70, b"\0" * 8)  # drop the name: the feature bit alone still refuses it
    assert detect(path).data_file == ""
    with pytest.raises(UnsafeImage, match="external file"):
        check_upload(path, "qcow2", LIMIT)


DESCRIPTOR = """# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="{create_type}"

# Extent description
RW 2048 FLAT "/etc/passwd" 0

ddb.adapterType = "ide"
"""


def test_vmdk_descriptor_pointing_at_another_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.vmdk"
    path.write_text(DESCRIPTOR.format(create_type="monolithicFlat"))
    assert detect(path).extents == ("/etc/passwd",)
    with pytest.raises(UnsafeImage, match=re.escape("other files ('/etc/passwd')")):
        check_upload(path, "vmdk", LIMIT)
    with pytest.raises(UnsafeImage, match="is in vmdk format but disk_format is 'raw'"):
        check_upload(path, "raw", LIMIT)


@needs_qemu_img
def test_sparse_vmdk_with_capacity_zero_follows_its_descriptor_and_is_refused(
    tmp_path: Path,
) -> None:
    path = make(tmp_path, "vmdk", size="1M")
    patch(path, 12, struct.pack("<Q", 0))  # QEMU then opens the embedded descriptor's extents
    patch(path, 0x200, DESCRIPTOR.format(create_type="monolithicSparse").encode() + b"\0")
    with pytest.raises(UnsafeImage, match=re.escape("other files ('/etc/passwd')")):
        check_upload(path, "vmdk", LIMIT)


@needs_qemu_img
def test_vmdk_with_a_parent_is_refused(tmp_path: Path) -> None:
    make(tmp_path, "vmdk", size="1M", name="base.vmdk")
    path = make(tmp_path, "vmdk", "-b", "base.vmdk", "-F", "vmdk", size="1M", name="child.vmdk")
    with pytest.raises(UnsafeImage, match=re.escape("names a backing file ('base.vmdk')")):
        check_upload(path, "vmdk", LIMIT)


@needs_qemu_img
def test_vmdk_footer_takes_precedence_over_its_header(tmp_path: Path) -> None:
    path = make(tmp_path, "vmdk", size="64M")
    header = bytearray(path.read_bytes()[4:512])
    header[8:16] = struct.pack("<Q", 2 * 64 * MiB // 512)  # the footer says 128 MiB
    patch(path, 0x38, struct.pack("<Q", 0xFFFFFFFFFFFFFFFF))  # grain directory "at the end"
    footer = struct.pack("<QII", 0, 0, 3).ljust(512, b"\0") + b"KDMV" + header + bytes(512)
    patch(path, path.stat().st_size, footer)
    assert detect(path).virtual_size == qemu_virtual_size(path, "vmdk") == 128 * MiB


@needs_qemu_img
def test_sparse_vmdk_with_a_parent_hint_is_refused(tmp_path: Path) -> None:
    path = make(tmp_path, "vmdk", size="1M")
    text = (path.read_bytes()[0x200:0x400].split(b"\0")[0]
            + b'# parentFileNameHint="/etc/shadow"\n')  # QEMU finds it even in a comment
    patch(path, 0x200, text + b"\0")
    with pytest.raises(UnsafeImage, match=re.escape("backing file ('/etc/shadow')")):
        check_upload(path, "vmdk", LIMIT)


@needs_qemu_img
@pytest.mark.parametrize("declared", ["raw", "iso", "aki", "vmdk"])
def test_qcow2_declared_as_something_else_is_refused(tmp_path: Path, declared: str) -> None:
    path = make(tmp_path, "qcow2")
    with pytest.raises(UnsafeImage, match=f"is in qcow2 format but disk_format is '{declared}'"):
        check_upload(path, declared, LIMIT)


@pytest.mark.parametrize("declared", ["qcow2", "vmdk", "vdi", "vhd", "vhdx", "iso"])
def test_raw_or_random_bytes_declared_as_a_format_are_refused(
    tmp_path: Path, declared: str
) -> None:
    path = tmp_path / "random.bin"
    path.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(UnsafeImage, match=f"not a {declared} image"):
        check_upload(path, declared, LIMIT)


def test_raw_data_qemu_would_probe_as_vmdk_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "disk.raw"
    path.write_bytes(b"# looks harmless\n\nversion=1\n" + bytes(4096))
    with pytest.raises(UnsafeImage):
        check_upload(path, "raw", LIMIT)


def test_unknown_disk_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "disk.raw"
    path.write_bytes(bytes(512))
    with pytest.raises(UnsafeImage, match="disk_format 'ploop' cannot be checked"):
        check_upload(path, "ploop", LIMIT)


@needs_qemu_img
@pytest.mark.parametrize("keep", [40, 100, 150 * 1024])
def test_truncated_qcow2_is_refused(tmp_path: Path, keep: int) -> None:
    path = make(tmp_path, "qcow2")
    os.truncate(path, keep)
    with pytest.raises(UnsafeImage, match="qcow2 header is truncated or inconsistent"):
        check_upload(path, "qcow2", LIMIT)


@needs_qemu_img
@pytest.mark.parametrize(
    ("offset", "value", "what"),
    [
        (20, struct.pack(">I", 31), "cluster_bits 31"),
        (8, struct.pack(">QI", 1 << 40, 64), "backing file name of 64 bytes at offset"),
        (40, struct.pack(">Q", 1 << 50), "l1_table_offset"),
        (100, struct.pack(">I", 1 << 20), "header_length"),
    ],
)
def test_inconsistent_qcow2_header_is_refused(
    tmp_path: Path, offset: int, value: bytes, what: str
) -> None:
    path = make(tmp_path, "qcow2")
    patch(path, offset, value)
    with pytest.raises(UnsafeImage, match=what):
        detect(path)


@needs_qemu_img
def test_qcow2_with_huge_virtual_size_is_refused(tmp_path: Path) -> None:
    path = make(tmp_path, "qcow2", size="100T")
    assert detect(path).virtual_size == 100 << 40
    message = "a disk of 100.0 TiB, more than the limit of 1.0 GiB"
    with pytest.raises(UnsafeImage, match=re.escape(message)):
        check_upload(path, "qcow2", 1 << 30)


@needs_qemu_img
@pytest.mark.parametrize("length", [0xFFFFFFFF, "one byte past the cluster", 0])
def test_qcow2_with_bogus_header_extension_length_is_refused_without_over_reading(
    tmp_path: Path, bytes_read: list[int], length: int | str
) -> None:
    path = make(tmp_path, "qcow2", "-o", "cluster_size=2M", size="1T")
    header_length = struct.unpack(">I", path.read_bytes()[100:104])[0]
    os.truncate(path, 1 << 40)  # a sparse terabyte: reading it whole would never finish
    if isinstance(length, str):
        length = 2 * MiB - header_length - 8 + 1
    if length:
        patch(path, header_length, struct.pack(">II", 0x12345678, length))
        with pytest.raises(UnsafeImage, match="header extension 0x12345678 claims"):
            detect(path)
    else:  # a run of empty unknown extensions up to the cluster end: walked, bounded
        patch(path, header_length, struct.pack(">II", 0x12345678, 0) * 1000)
        assert detect(path).virtual_size == 1 << 40
    assert sum(bytes_read) <= 2 * MiB + 64 * 1024


@needs_qemu_img
def test_polyglot_qcow2_and_iso_is_refused(tmp_path: Path) -> None:
    path = make(tmp_path, "qcow2")
    patch(path, 0x8000, b"\x01CD001\x01")
    with pytest.raises(UnsafeImage, match=re.escape("signatures of several formats (qcow2, iso)")):
        check_upload(path, "qcow2", LIMIT)


@needs_qemu_img
def test_differencing_vhd_is_refused(tmp_path: Path) -> None:
    path = make(tmp_path, "vpc", size="10M")
    footer = bytearray(path.read_bytes()[:512])
    footer[60:64] = struct.pack(">I", 4)  # differencing disk
    footer[64:68] = bytes(4)
    footer[64:68] = struct.pack(">I", ~sum(footer) & 0xFFFFFFFF)
    patch(path, 0, bytes(footer))
    patch(path, 512 + 64, "base.vhd".encode("utf-16-be"))
    with pytest.raises(UnsafeImage, match=re.escape("names a backing file ('base.vhd')")):
        check_upload(path, "vhd", LIMIT)


@needs_qemu_img
def test_vhdx_with_a_log_to_replay_is_refused(tmp_path: Path) -> None:
    path = make(tmp_path, "vhdx", size="10M")
    patch(path, 64 * 1024 + 48, b"\x01" * 16)  # log GUID: replaying could rewrite the size
    with pytest.raises(UnsafeImage, match="its log has not been replayed"):
        check_upload(path, "vhdx", LIMIT)


@needs_qemu_img
def test_qemu_img_info_gives_a_second_opinion(tmp_path: Path) -> None:
    path = make(tmp_path, "vhdx", size="100M")
    result = qemu_img_info(path)
    assert (result["format"], result["virtual-size"]) == ("vhdx", 100 * MiB)


@needs_qemu_img
def test_qemu_img_info_never_opens_a_file_that_references_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make(tmp_path, "qcow2", "-b", "/etc/passwd", "-F", "raw", size="1M")

    def no_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("qemu-img was started")

    monkeypatch.setattr(subprocess, "run", no_run)
    with pytest.raises(UnsafeImage, match="references other files"):
        qemu_img_info(path)
