"""Inspection of untrusted disk images from their headers alone, with bounded reads: the real
format (the declared disk_format is never trusted), the virtual size, and any other file the
image would make a hypervisor open. Each layout is judged the way QEMU's block driver would
open it later, odd corners included (a VMDK descriptor in a sparse file of capacity 0)."""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

# disk_format as declared in the Image API → the only format its bytes may have.
ACCEPTED = {"raw": "raw", "iso": "iso", "aki": "raw", "ari": "raw", "ami": "raw",
            "qcow2": "qcow2", "vmdk": "vmdk", "vdi": "vdi", "vhd": "vhd", "vhdx": "vhdx"}

_MAX_READ = 2 << 20  # no single read is larger: a qcow2 header cluster of at most 2 MiB
_KiB, _MiB = 1 << 10, 1 << 20


class UnsafeImage(ValueError):
    """Uploaded image data that must not be stored; the message says what to do about it."""


@dataclass(frozen=True)
class ImageInfo:
    """What a file's headers say. `extents` are other files a VMDK keeps its data in."""

    format: str
    virtual_size: int
    backing_file: str | None = None
    data_file: str | None = None
    encrypted: bool = False
    extents: tuple[str, ...] = ()
    details: dict[str, object] = field(default_factory=dict, compare=False)


class _Reader:
    """Bounded, positioned reads of one file; a short read means the header lies."""

    def __init__(self, fh: BinaryIO, size: int, fmt: str = "") -> None:
        self.fh, self.size, self.fmt = fh, size, fmt

    def upto(self, offset: int, length: int) -> bytes:
        if not 0 <= length <= _MAX_READ or offset < 0:
            raise self.bad(f"a read of {length} bytes at offset {offset}")
        if offset >= self.size:
            return b""
        self.fh.seek(offset)
        return self.fh.read(length)

    def at(self, offset: int, length: int) -> bytes:
        data = self.upto(offset, length)
        if len(data) != length:
            raise self.bad(f"{length} bytes at offset {offset} lie beyond the end of the file")
        return data

    def bad(self, what: str) -> UnsafeImage:
        return UnsafeImage(f"the {self.fmt} header is truncated or inconsistent ({what}); "
                           "the file is damaged or crafted: re-create it with qemu-img convert")


def _unsupported(fmt: str, what: str) -> UnsafeImage:
    return UnsafeImage(f"this {fmt} image is not accepted: {what}")


def detect(path: Path) -> ImageInfo:
    """The format of `path` from its signatures, "raw" when none matches.

    Raises UnsafeImage when a recognised header is truncated, inconsistent or of a variant that
    is refused outright, and when the file carries the signatures of two formats (a polyglot).
    """
    with open(path, "rb") as fh:
        r = _Reader(fh, os.fstat(fh.fileno()).st_size)
        head = r.upto(0, 2048)
        found = _signatures(r, head)
        if len(found) > 1:
            raise UnsafeImage(f"the file carries the signatures of several formats "
                              f"({', '.join(found)}); refusing an ambiguous image")
        r.fmt = found[0] if found else "raw"
        parser = _PARSERS.get(r.fmt)
        if parser is None:
            return ImageInfo("raw", r.size)
        return parser(r, head)


def _signatures(r: _Reader, head: bytes) -> list[str]:
    tail = r.upto(r.size - 512, 8) if r.size >= 512 else b""
    hits = {"qcow2": head[:4] == b"QFI\xfb",
            "vmdk": head[:4] in (b"KDMV", b"COWD") or _is_vmdk_descriptor(head),
            "vdi": head[0x40:0x44] == struct.pack("<I", 0xBEDA107F),
            "vhd": b"conectix" in (head[:8], tail),  # a fixed VHD has only the footer
            "vhdx": head[:8] == b"vhdxfile",
            "iso": r.upto(0x8001, 5) == b"CD001"}
    return [fmt for fmt, hit in hits.items() if hit]


def _is_vmdk_descriptor(head: bytes) -> bool:
    """QEMU's vmdk_probe: comment and blank lines, then `version=1|2|3`, make a descriptor."""
    if head.startswith(b"# Disk DescriptorFile"):
        return True
    for line in head.split(b"\n")[:-1]:
        line = line.rstrip(b"\r")
        if line.startswith(b"#") or not line.strip(b" "):
            continue
        return line in (b"version=1", b"version=2", b"version=3")
    return False


# qcow2 (docs/interop/qcow2.txt in QEMU); big-endian.
_QCOW2_V2 = struct.Struct(">4sIQIIQIIQQIIQ")
_QCOW2_V3 = struct.Struct(">QQQII")
_QCOW2_EXT_DATA_FILE, _QCOW2_EXT_FDE = 0x44415441, 0x0537BE77
_QCOW2_KNOWN_INCOMPATIBLE = 0x1F  # dirty, corrupt, external data file, compression, extended L2


def _qcow2(r: _Reader, head: bytes) -> ImageInfo:
    (_, version, bf_offset, bf_size, cluster_bits, size, crypt, l1_size, l1_offset,
     rc_offset, rc_clusters, nb_snapshots, snap_offset) = _QCOW2_V2.unpack(r.at(0, 72))
    if version not in (2, 3):
        raise _unsupported("qcow2", f"version {version} (QEMU writes 2 and 3)")
    if not 9 <= cluster_bits <= 21:
        raise r.bad(f"cluster_bits {cluster_bits} outside 9..21")
    cluster = 1 << cluster_bits
    incompatible, header_length = 0, 72
    if version == 3:
        incompatible, _, _, _, header_length = _QCOW2_V3.unpack(r.at(72, 32))
        if header_length < 104 or header_length % 8 or header_length > cluster:
            raise r.bad(f"header_length {header_length}")
    if incompatible & ~_QCOW2_KNOWN_INCOMPATIBLE:
        raise _unsupported("qcow2", f"unknown incompatible features {incompatible:#x}")
    if incompatible & 2:
        raise _unsupported("qcow2", "it is marked corrupt; repair it with qemu-img check -r all")
    if crypt > 2:
        raise r.bad(f"crypt_method {crypt}")
    for name, offset in (("l1_table", l1_offset), ("refcount_table", rc_offset),
                         ("snapshots", snap_offset)):
        if offset % cluster or offset >= r.size:
            raise r.bad(f"{name}_offset {offset} in a file of {r.size} bytes")
    if rc_offset + rc_clusters * cluster > r.size or l1_offset + l1_size * 8 > r.size:
        raise r.bad("the L1 or refcount table runs past the end of the file")
    l2_bits = cluster_bits - (4 if incompatible & 16 else 3)
    if l1_size > (32 * _MiB) // 8 or l1_size < -(-size // (cluster << l2_bits)):
        raise r.bad(f"an L1 table of {l1_size} entries for {size} bytes")
    ext_end = cluster
    backing = None
    if bf_offset:
        if bf_size > 1023 or bf_offset < header_length or bf_offset + bf_size > cluster:
            raise r.bad(f"backing file name of {bf_size} bytes at offset {bf_offset}")
        backing = r.at(bf_offset, bf_size).decode("utf-8", "replace")
        ext_end = bf_offset
    data_file = "" if incompatible & 4 else None
    encrypted = crypt != 0
    region = r.upto(0, ext_end)
    if len(region) < header_length:
        raise r.bad("the header extensions lie beyond the end of the file")
    offset = header_length
    while offset + 8 <= len(region):  # QEMU's qcow2_read_extensions, bounded by the cluster
        ext_type, length = struct.unpack_from(">II", region, offset)
        offset += 8
        if ext_type == 0:
            break
        if length > ext_end - offset or offset + length > len(region):
            raise r.bad(f"header extension {ext_type:#x} claims {length} bytes")
        if ext_type == _QCOW2_EXT_DATA_FILE:
            data_file = region[offset:offset + length].decode("utf-8", "replace")
        elif ext_type == _QCOW2_EXT_FDE:
            encrypted = True
        offset += (length + 7) & ~7
    details: dict[str, object] = {"version": version, "cluster_size": cluster,
                                  "dirty": bool(incompatible & 1), "snapshots": nb_snapshots}
    return ImageInfo("qcow2", size, backing, data_file, encrypted, details=details)


# VMDK (VMware's Virtual Disk Format 1.1 and QEMU's vmdk.c); little-endian.
_VMDK_HEADER = struct.Struct("<IIQQQQIQQQ")
_VMDK_GD_AT_END = 0xFFFFFFFFFFFFFFFF
_VMDK_SPARSE_TYPES = ("monolithicsparse", "streamoptimized")
_VMDK_EXTENT = re.compile(r'(rw|rdonly|noaccess)\s+(\d+)\s+(\w+)(?:\s+"([^"]*)"(?:\s+\d+)?)?',
                          re.I)


def _vmdk(r: _Reader, head: bytes) -> ImageInfo:
    if head[:4] == b"COWD":
        raise _unsupported("vmdk", "VMDK3 (COWD); convert it to a monolithicSparse VMDK")
    if head[:4] != b"KDMV":  # a text descriptor: its extents are always other files
        fields, extents = _vmdk_descriptor(r, r.upto(0, _MiB - 1))
        named = tuple(name for _, name in extents if name is not None)
        size = sum(sectors for sectors, _ in extents) * 512
        return ImageInfo("vmdk", size, fields.get("parentfilenamehint"), extents=named,
                         details={"create_type": fields.get("createtype", "")})
    version, _, capacity, _, desc_sector, desc_sectors, _, _, gd_offset, _ = (
        _VMDK_HEADER.unpack(r.at(4, _VMDK_HEADER.size)))
    if gd_offset == _VMDK_GD_AT_END:  # streamOptimized with a footer: it takes precedence
        if r.size < 1536 or r.at(r.size - 1024, 4) != b"KDMV":
            raise r.bad("the footer the header announces is missing")
        version, _, capacity, _, desc_sector, desc_sectors, _, _, _, _ = (
            _VMDK_HEADER.unpack(r.at(r.size - 1020, _VMDK_HEADER.size)))
    if version not in (1, 2, 3):
        raise _unsupported("vmdk", f"sparse header version {version}")
    if desc_sector != 1 or desc_sectors == 0:
        raise _unsupported("vmdk", "a sparse extent without its own descriptor (part of a "
                           "split or VMFS disk); convert it to a monolithicSparse VMDK")
    # QEMU reads at least 10 KiB at 0x200 for parentFileNameHint, whatever desc_sectors says.
    text = r.upto(0x200, min(max(desc_sectors * 512, 10 * _KiB), _MiB - 1))
    fields, extents = _vmdk_descriptor(r, text)
    create_type = fields.get("createtype", "")
    if create_type.lower() not in _VMDK_SPARSE_TYPES:
        raise _unsupported("vmdk", f"createType {create_type!r}; upload a monolithicSparse "
                           "or streamOptimized VMDK (qemu-img convert -O vmdk)")
    named = tuple(name for _, name in extents if name is not None)
    # QEMU follows these extents instead of using this file when the capacity is 0.
    own = capacity and len(extents) == 1 and not any("/" in name for name in named)
    external = () if own else named
    return ImageInfo("vmdk", capacity * 512, fields.get("parentfilenamehint"), extents=external,
                     details={"create_type": create_type})


def _vmdk_descriptor(r: _Reader, raw: bytes) -> tuple[dict[str, str], list[tuple[int, str | None]]]:
    """Header fields (lower-cased keys) and extents (sectors, file name or None) of a
    descriptor; any line that is neither is refused, as QEMU would not ignore it safely."""
    try:
        text = raw.split(b"\0", 1)[0].decode("ascii")
    except UnicodeDecodeError:
        raise r.bad("the descriptor is not ASCII text") from None
    fields: dict[str, str] = {}
    extents: list[tuple[int, str | None]] = []
    if "parentfilenamehint" in text.lower():  # QEMU finds it with strstr(), even in a comment
        hint = re.search(r'parentFileNameHint\s*=\s*"?([^"\n]*)', text, re.I)
        fields["parentfilenamehint"] = hint.group(1) if hint else "(unreadable)"
    for line in (x.strip() for x in text.splitlines()):
        if not line or line.startswith("#") or line.lower().startswith("ddb."):
            continue
        extent = _VMDK_EXTENT.fullmatch(line)
        if extent:
            kind, name = extent.group(3).upper(), extent.group(4)
            if name is None and kind != "ZERO":
                raise r.bad(f"extent line {line!r} names no file")
            extents.append((int(extent.group(2)), name))
        elif "=" in line and " " not in line.split("=", 1)[0].strip():
            key, value = line.split("=", 1)
            fields.setdefault(key.strip().lower(), value.strip().strip('"'))
        else:
            raise r.bad(f"unrecognised descriptor line {line[:60]!r}")
    if not extents:
        raise r.bad("the descriptor lists no extents")
    return fields, extents


def _vdi(r: _Reader, head: bytes) -> ImageInfo:
    h = r.at(0, 0x1C8)
    version, _, image_type = struct.unpack_from("<III", h, 0x44)
    offset_bmap, offset_data = struct.unpack_from("<II", h, 0x154)
    (sector_size,) = struct.unpack_from("<I", h, 0x168)
    disk_size, block_size, _, blocks, _ = struct.unpack_from("<QIIII", h, 0x170)
    if version != 0x00010001:
        raise _unsupported("vdi", f"header version {version:#x}")
    if offset_bmap % 512 or offset_data % 512 or sector_size != 512 or block_size != _MiB:
        raise r.bad("block map, data offset, sector or block size")
    if disk_size > blocks * block_size or offset_data > r.size:
        raise r.bad(f"a disk of {disk_size} bytes in {blocks} blocks")
    parent = next((h[o:o + 16] for o in (0x1A8, 0x1B8) if any(h[o:o + 16])), None)
    backing = f"VDI parent {uuid.UUID(bytes_le=parent)}" if parent else None
    if backing is None and image_type not in (1, 2):
        raise _unsupported("vdi", f"image type {image_type} (only normal and fixed disks)")
    return ImageInfo("vdi", disk_size, backing,
                     details={"image_type": {1: "dynamic", 2: "fixed"}.get(image_type)})


# VHD (Microsoft's Virtual Hard Disk Image Format Specification); big-endian.
_VHD_MAX_CHS = 65535 * 16 * 255
_VHD_SIZE_CREATORS = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0")


def _vhd(r: _Reader, head: bytes) -> ImageInfo:
    footer = head[:512] if head[:8] == b"conectix" else r.at(r.size - 512, 512)
    if len(footer) < 512:
        raise r.bad("the footer is shorter than 512 bytes")
    (data_offset,) = struct.unpack_from(">Q", footer, 16)
    creator = footer[28:32]
    current_size, cylinders, heads, sectors, disk_type, checksum = (
        struct.unpack_from(">QHBBII", footer, 48))
    if (~(sum(footer[:64]) + sum(footer[68:])) & 0xFFFFFFFF) != checksum:
        raise r.bad("footer checksum mismatch")
    if disk_type not in (2, 3, 4):
        raise _unsupported("vhd", f"disk type {disk_type}")
    chs = cylinders * heads * sectors  # what Virtual PC and QEMU itself use; see vpc_open
    use_size = creator in _VHD_SIZE_CREATORS or chs == _VHD_MAX_CHS
    size = current_size // 512 * 512 if use_size else chs * 512
    backing = None
    if disk_type != 2:  # dynamic and differencing disks carry a sparse header
        dyn = r.at(data_offset, 1024)
        entries, block_size = struct.unpack_from(">II", dyn, 28)
        if dyn[:8] != b"cxsparse" or entries * block_size < size:
            raise r.bad(f"no dynamic disk header for {size} bytes at offset {data_offset}")
        locators = [dyn[576 + 24 * i:580 + 24 * i] for i in range(8)]
        if disk_type == 4 or any(code != b"\0\0\0\0" for code in locators):
            name = dyn[64:576].decode("utf-16-be", "replace").rstrip("\0")
            backing = name or "(unnamed parent disk)"
    kind = {2: "fixed", 3: "dynamic", 4: "differencing"}[disk_type]
    return ImageInfo("vhd", size, backing, details={"disk_type": kind})


# VHDX (MS-VHDX); little-endian, GUIDs in Microsoft byte order.
def _guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


_VHDX_METADATA = _guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
_VHDX_FILE_PARAMETERS = _guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
_VHDX_VIRTUAL_DISK_SIZE = _guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
_VHDX_PARENT_LOCATOR = _guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
_VHDX_ITEMS = (_VHDX_FILE_PARAMETERS, _VHDX_VIRTUAL_DISK_SIZE, _VHDX_PARENT_LOCATOR)  # read only


def _vhdx(r: _Reader, head: bytes) -> ImageInfo:
    headers = [r.at(offset, 64) for offset in (64 * _KiB, 128 * _KiB)]
    if not any(h[:4] == b"head" for h in headers):
        raise r.bad("neither header copy has its signature")
    if any(h[:4] == b"head" and any(h[48:64]) for h in headers):
        raise _unsupported("vhdx", "its log has not been replayed (the disk was not shut down "
                           "cleanly); attach it once to Hyper-V or QEMU, then upload it again")
    table = r.at(192 * _KiB, 16)
    (count,) = struct.unpack_from("<I", table, 8)
    if table[:4] != b"regi" or count > 2047:
        raise r.bad("region table")
    entries = r.at(192 * _KiB + 16, 32 * count)
    regions = {entries[i:i + 16]: struct.unpack_from("<QI", entries, i + 16)
               for i in range(0, len(entries), 32)}
    if _VHDX_METADATA not in regions:
        raise r.bad("no metadata region")
    meta_offset, meta_length = regions[_VHDX_METADATA]
    meta = r.at(meta_offset, 32)
    (count,) = struct.unpack_from("<H", meta, 10)
    if meta[:8] != b"metadata" or count > 2047:
        raise r.bad("metadata table")
    entries = r.at(meta_offset + 32, 32 * count)
    items: dict[bytes, bytes] = {}
    for i in range(0, len(entries), 32):
        item_offset, item_length = struct.unpack_from("<II", entries, i + 16)
        if item_offset + item_length > meta_length or item_length > 64 * _KiB:
            raise r.bad("a metadata item lies outside the metadata region")
        if entries[i:i + 16] in _VHDX_ITEMS:
            items[entries[i:i + 16]] = r.at(meta_offset + item_offset, item_length)
    size_item = items.get(_VHDX_VIRTUAL_DISK_SIZE, b"")
    params = items.get(_VHDX_FILE_PARAMETERS, b"")
    if len(size_item) < 8 or len(params) < 8:
        raise r.bad("no virtual disk size or file parameters")
    (size,) = struct.unpack_from("<Q", size_item)
    block_size, flags = struct.unpack_from("<II", params)
    has_parent = flags & 2 or _VHDX_PARENT_LOCATOR in items
    backing = "(the parent of a differencing disk)" if has_parent else None
    return ImageInfo("vhdx", size, backing, details={"block_size": block_size})


def _iso(r: _Reader, head: bytes) -> ImageInfo:
    details: dict[str, object] = {}
    for sector in range(16, 16 + 32):  # the volume descriptor set, bounded
        desc = r.upto(sector * 2048, 2048)
        if len(desc) < 2048 or desc[1:6] != b"CD001" or desc[0] == 255:
            break
        if desc[0] == 1:
            blocks, block_size = struct.unpack_from("<I", desc, 80)[0], desc[128] | desc[129] << 8
            details = {"volume_id": desc[40:72].decode("ascii", "replace").strip(),
                       "volume_size": blocks * block_size}
            break
    return ImageInfo("iso", r.size, details=details)


_PARSERS = {"qcow2": _qcow2, "vmdk": _vmdk, "vdi": _vdi, "vhd": _vhd, "vhdx": _vhdx, "iso": _iso}


def _human(n: int) -> str:
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    i = min(max(n.bit_length() - 1, 0) // 10, len(units) - 1)
    return f"{n} bytes" if i == 0 else f"{n / (1 << 10 * i):.1f} {units[i]}"


def check_upload(path: Path, declared_format: str, max_virtual_size: int) -> ImageInfo:
    """Refuse (UnsafeImage) data whose bytes do not match `declared_format`, that would make a
    hypervisor open other files, or whose disk is larger than `max_virtual_size` bytes."""
    expected = ACCEPTED.get(declared_format)
    if expected is None:
        raise UnsafeImage(f"disk_format {declared_format!r} cannot be checked; "
                          f"use one of {', '.join(sorted(ACCEPTED))}")
    info = detect(path)
    if info.format != expected:
        if info.format == "raw":
            raise UnsafeImage(f"the data is not a {expected} image (no {expected} header "
                              "found); upload the right file or set disk_format to raw")
        raise UnsafeImage(f"the data is in {info.format} format but disk_format is "
                          f"{declared_format!r}; set disk_format to {info.format}, or convert "
                          f"it first (qemu-img convert -O {_qemu_format(expected)})")
    flatten = f"flatten it first: qemu-img convert -O {_qemu_format(info.format)} in out"
    if info.backing_file is not None:
        raise UnsafeImage(f"the {info.format} image names a backing file "
                          f"({info.backing_file!r}); {flatten}")
    if info.data_file is not None:
        raise UnsafeImage(f"the qcow2 image keeps its data in an external file "
                          f"({info.data_file!r}); {flatten}")
    if info.extents:
        raise UnsafeImage(f"the vmdk image keeps its data in other files "
                          f"({', '.join(repr(e) for e in info.extents)}); upload a "
                          "monolithicSparse or streamOptimized VMDK (qemu-img convert -O vmdk)")
    if info.virtual_size > max_virtual_size:
        raise UnsafeImage(f"the image describes a disk of {_human(info.virtual_size)}, more "
                          f"than the limit of {_human(max_virtual_size)}")
    return info


def _qemu_format(fmt: str) -> str:
    return {"vhd": "vpc", "iso": "raw"}.get(fmt, fmt)


QEMU_IMG_MAX_MEMORY = 1 << 30  # bytes of address space qemu-img may use (prlimit --as)
QEMU_IMG_MAX_CPU = 10  # seconds


def qemu_img_info(path: Path, timeout: float = 30.0) -> dict[str, Any]:
    """A second opinion from `qemu-img info`, run under prlimit with the format detected here
    passed explicitly (qemu-img never probes). Refuses to run it on a file that references
    other files, since opening those is what must not happen."""
    info = detect(path)
    if info.backing_file is not None or info.data_file is not None or info.extents:
        raise UnsafeImage(f"the {info.format} image references other files; not opening it")
    fmt = _qemu_format(info.format)
    cmd = ["prlimit", f"--as={QEMU_IMG_MAX_MEMORY}", f"--cpu={QEMU_IMG_MAX_CPU}", "--",
           "qemu-img", "info", "--output", "json", "-U", "-f", fmt, os.path.abspath(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise RuntimeError("qemu_img_info needs prlimit (Debian package util-linux) and "
                           "qemu-img (Debian package qemu-utils)") from e
    except subprocess.TimeoutExpired:
        log.warning("%s: timed out after %ss", cmd, timeout)
        raise UnsafeImage(f"qemu-img took longer than {timeout}s to read the {info.format} "
                          "header; refusing the image") from None
    log.info("%s: exit status %s", cmd, proc.returncode)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["killed by its resource limits"])[-1]
        raise UnsafeImage(f"qemu-img cannot read the image as {fmt}: {reason}")
    result: dict[str, Any] = json.loads(proc.stdout)
    if result.get("format") != fmt:
        raise UnsafeImage(f"qemu-img read the image as {result.get('format')!r}, not {fmt}")
    return result
