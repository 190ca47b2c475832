"""Builds the `tiny` guest image: a CirrOS-like whole-disk qcow2 made only of Debian packages.

The disk holds one MBR partition (syslinux `mbr.bin`) with an ext4 root file system that
extlinux boots: a Debian cloud kernel, an initramfs (busybox + the virtio modules) that
mounts the root disk, and on it busybox, dropbear and `init.sh`. The .debs and the finished
image are cached; the image key is a hash of the package versions, the guest scripts and
this builder, so a second build is a copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import logging
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

BUILDER_VERSION = "1"
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
PACKAGES = (
    "busybox-static",
    "dropbear-bin",
    "libtomcrypt1",
    "libtommath1",
    "libgmp10",
    "zlib1g",
    "libcrypt1",
    "libc6",
    "extlinux",
    "syslinux-common",
)
# Files copied from each package into the root file system (globs, relative to the package).
PACKAGE_FILES = {
    "busybox-static": ("bin/busybox",),
    "dropbear-bin": (
        "usr/sbin/dropbear",
        "usr/bin/dropbearkey",
        "usr/bin/dbclient",
        "usr/bin/dropbearconvert",
    ),
    "libc6": (
        "lib64/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/libc.so.6",
    ),
    "libcrypt1": ("lib/x86_64-linux-gnu/libcrypt.so.1*",),
    "zlib1g": ("lib/x86_64-linux-gnu/libz.so.1*",),
    "libtomcrypt1": ("usr/lib/x86_64-linux-gnu/libtomcrypt.so.1*",),
    "libtommath1": ("usr/lib/x86_64-linux-gnu/libtommath.so.1*",),
    "libgmp10": ("usr/lib/x86_64-linux-gnu/libgmp.so.10*",),
}
# Kernel modules the guest needs (their dependencies are added and ordered by the builder):
# virtio disks and NIC, IDE/SCSI disks and CD-ROMs (a config drive may be a cdrom), ISO 9660
# and FAT config drives, the hardware RNG, and the ACPI power button for acpid.
MODULES = (
    "virtio_pci", "virtio_blk", "virtio_net", "virtio_scsi", "virtio-rng",
    "ata_piix", "sd_mod", "sr_mod", "isofs", "vfat", "nls_cp437", "nls_utf8", "button", "evdev",
)  # fmt: skip
DISK_BYTES = 128 * 1024 * 1024
PARTITION_OFFSET = 1024 * 1024
ROOT_LABEL = "picocloud-root"
# quiet: errors still reach the console, and a TCG boot saves ~0.5 s of CPU printing the rest.
# The last console= becomes /dev/console, where init prints its ready marker: ttyS0.
# no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check can miss its
# ticks and panic ("IO-APIC + timer doesn't work"); seen when 40 guests boot at once.
KERNEL_ARGS = f"root=LABEL={ROOT_LABEL} rw quiet no_timer_check console=tty0 console=ttyS0"

EXTLINUX_CONF = f"""SERIAL 0 115200
DEFAULT tiny
PROMPT 0
TIMEOUT 0
LABEL tiny
  KERNEL /boot/vmlinuz
  INITRD /boot/initrd.img
  APPEND {KERNEL_ARGS}
"""
INITTAB = """::sysinit:/usr/sbin/picocloud-init start
ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100
tty1::respawn:/sbin/getty 38400 tty1
::ctrlaltdel:/sbin/reboot
::shutdown:/usr/sbin/picocloud-init stop
"""
# (path, mode, content) of the small configuration files of the root file system.
ETC_FILES = (
    ("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"),
    ("etc/group", 0o644, "root:x:0:\ntty:x:5:\n"),
    ("etc/shadow", 0o600, "root:*:1:0:99999:7:::\n"),  # no password: key logins only
    ("etc/shells", 0o644, "/bin/sh\n/bin/ash\n"),
    ("etc/hostname", 0o644, "tiny\n"),
    ("etc/hosts", 0o644, "127.0.0.1 localhost\n"),
    ("etc/inittab", 0o644, INITTAB),
    ("etc/profile", 0o644, "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nPS1='\\u@\\h:\\w\\$ '\n"),
    ("etc/os-release", 0o644, f'NAME="picocloud tiny"\nID=picocloud-tiny\n'
     f'VERSION_ID={BUILDER_VERSION}\nPRETTY_NAME="picocloud tiny (Debian packages)"\n'),
    ("etc/acpi/PWRF/00000080", 0o755, "#!/bin/sh\nexec /sbin/poweroff\n"),
    ("boot/extlinux/extlinux.conf", 0o644, EXTLINUX_CONF),
)  # fmt: skip
ROOT_DIRS = ("dev", "proc", "sys", "run", "mnt", "home", "var/log", "var/lib/picocloud")


class GuestBuildError(Exception):
    """A step of the guest image build failed; the message says which and why."""


@dataclass(frozen=True)
class Package:
    """One Debian package at the version apt would install, with the archive's SHA256."""

    name: str
    version: str
    sha256: str

    @property
    def deb_glob(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_*.deb"


def run(argv: Sequence[str | Path], *, cwd: Path | None = None) -> str:
    """Run a host command (argument list, never a shell), log it and its exit status."""
    cmd = [str(a) for a in argv]
    log.info("guest build: %s", shlex.join(cmd))
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:  # the tool is missing: a Debian host with the listed packages needed
        raise GuestBuildError(f"cannot run {cmd[0]}: {exc}") from exc
    log.info("guest build: exit %d from %s", proc.returncode, cmd[0])
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise GuestBuildError(f"{shlex.join(cmd)} failed with exit {proc.returncode}: {detail}")
    return proc.stdout


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "picocloud" / "guest"


def _guest_file(name: str) -> bytes:
    return resources.files("picocloud.guest").joinpath(name).read_bytes()


def _apt_records(names: Sequence[str]) -> dict[str, dict[str, str]]:
    out = run(["apt-cache", "show", "--no-all-versions", *names])
    records: dict[str, dict[str, str]] = {}
    for block in out.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != " "
        )
        if "Package" in fields:
            records.setdefault(fields["Package"], fields)
    return records


def _resolve_once() -> list[Package]:
    depends = run(["apt-cache", "depends", KERNEL_METAPACKAGE])
    kernels = [
        line.split(":", 1)[1].strip()
        for line in depends.splitlines()
        if line.strip().startswith("Depends:") and "-cloud-amd64" in line
    ]
    if not kernels:
        raise GuestBuildError(f"{KERNEL_METAPACKAGE} depends on no linux-image-*-cloud-amd64")
    names = [kernels[0], *PACKAGES]
    records = _apt_records(names)
    missing = [n for n in names if n not in records]
    if missing:
        raise GuestBuildError(f"apt knows no candidate for {', '.join(missing)}")
    return [Package(n, records[n]["Version"], records[n].get("SHA256", "")) for n in names]


def resolve_packages() -> list[Package]:
    """The kernel and the packages at their apt candidate versions (kernel first)."""
    try:
        return _resolve_once()
    except GuestBuildError as exc:
        log.info("guest build: %s; running apt-get update once", exc)
        run(["apt-get", "update"])
        return _resolve_once()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_deb(pkg: Package, deb_dir: Path) -> Path | None:
    for deb in deb_dir.glob(pkg.deb_glob):
        if not pkg.sha256 or _sha256(deb) == pkg.sha256:
            return deb
        deb.unlink()  # a truncated or foreign file: fetch it again
    return None


def fetch_debs(pkgs: Sequence[Package], deb_dir: Path) -> dict[str, Path]:
    """The .deb of each package, downloaded with `apt-get download` unless already cached."""
    deb_dir.mkdir(parents=True, exist_ok=True)
    wanted = [p for p in pkgs if _cached_deb(p, deb_dir) is None]
    if wanted:
        argv = ["apt-get", "download", *(f"{p.name}={p.version}" for p in wanted)]
        if os.geteuid() == 0:  # apt's _apt user cannot write into root's cache dir
            argv[1:1] = ["-o", "APT::Sandbox::User=root"]
        try:
            run(argv, cwd=deb_dir)
        except GuestBuildError as exc:
            log.info("guest build: %s; running apt-get update once", exc)
            run(["apt-get", "update"])
            run(argv, cwd=deb_dir)
    debs = {}
    for p in pkgs:
        deb = _cached_deb(p, deb_dir)
        if deb is None:
            raise GuestBuildError(f"apt-get download gave no valid .deb for {p.name}={p.version}")
        debs[p.name] = deb
    return debs


def extract(deb: Path, extract_dir: Path) -> Path:
    """The package's files, unpacked once with `dpkg-deb -x` into the cache."""
    tree = extract_dir / deb.name.removesuffix(".deb")
    if not (tree / ".picocloud-complete").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        run(["dpkg-deb", "-x", deb, tree])
        (tree / ".picocloud-complete").touch()
    return tree


def image_key(pkgs: Sequence[Package]) -> str:
    """Hash of everything that goes into the image; a new key means a new build."""
    inputs = {
        "builder": BUILDER_VERSION,
        "builder_source": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "packages": {p.name: p.version for p in pkgs},
        "init.sh": hashlib.sha256(_guest_file("init.sh")).hexdigest(),
        "udhcpc.sh": hashlib.sha256(_guest_file("udhcpc.sh")).hexdigest(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cached_tiny(cache_dir: Path | None = None) -> Path:
    """The path of the cached tiny image for the current package versions, built if needed."""
    cache = cache_dir or default_cache_dir()
    with _locked(cache):
        pkgs = resolve_packages()
        image = cache / "images" / f"tiny-{image_key(pkgs)[:16]}.qcow2"
        if image.exists():
            log.info("guest build: using cached %s", image)
            return image
        if os.geteuid() != 0:
            raise GuestBuildError("building the tiny image needs root (loop device and mount)")
        debs = fetch_debs(pkgs, cache / "debs")
        trees = {name: extract(deb, cache / "extracted") for name, deb in debs.items()}
        image.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="picocloud-guest-build-") as tmp:
            work = Path(tmp)
            _build_image(pkgs[0].name.removeprefix("linux-image-"), trees, work)
            partial = image.with_suffix(".partial")
            raw = work / "disk.raw"
            run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, partial])
            partial.rename(image)
        log.info("guest build: built %s (%d bytes)", image, image.stat().st_size)
        _prune(cache, keep={image, *debs.values(), *trees.values()})
        return image


def _prune(cache: Path, keep: set[Path]) -> None:
    """Forget .debs and trees of older package versions and all but the newest 3 builds."""
    stale = [p for d in ("debs", "extracted") for p in (cache / d).iterdir() if p not in keep]
    builds = sorted((cache / "images").glob("tiny-*.qcow2"), key=lambda p: p.stat().st_mtime)
    for path in stale + builds[:-3]:
        log.info("guest build: removing stale %s", path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def build_tiny(output: Path, cache_dir: Path | None = None) -> Path:
    """Write the tiny image to `output` (a copy of the cached build)."""
    image = cached_tiny(cache_dir)
    output = output.resolve()
    partial = output.with_name(f".{output.name}.picocloud-partial")
    shutil.copyfile(image, partial)
    partial.rename(output)
    return output


def _copy_into(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    shutil.copy2(src, dest, follow_symlinks=False)


def _write(path: Path, content: str | bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(mode)


def _module_order(kernel_tree: Path, kver: str) -> dict[str, Path]:
    """MODULES plus their dependencies (read from each .ko's modinfo), dependencies first."""
    # modinfo spells every name with "_"; some files keep a "-" (virtio-rng.ko).
    found = {
        p.stem.replace("-", "_"): p for p in (kernel_tree / "lib/modules" / kver).rglob("*.ko")
    }
    order: dict[str, Path] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        ko = found.get(name)
        if ko is None or name in path:
            raise GuestBuildError(f"kernel module {name} is missing or in a dependency cycle")
        if ko.stem in order:
            return
        for dep in _module_depends(ko):
            visit(dep, (*path, name))
        order[ko.stem] = ko

    for name in MODULES:
        visit(name.replace("-", "_"), ())
    return order


def _module_depends(ko: Path) -> list[str]:
    data = ko.read_bytes()
    start = data.find(b"\0depends=")
    if start < 0:
        return []
    value = data[start + len(b"\0depends=") : data.index(b"\0", start + 1)].decode()
    return [d for d in value.split(",") if d]


def _build_image(kver: str, trees: dict[str, Path], work: Path) -> None:
    kernel_tree = trees[f"linux-image-{kver}"]
    root = work / "root"
    for d in ROOT_DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "root").mkdir(mode=0o700)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "var/run").symlink_to("/run")
    for pkg, globs in PACKAGE_FILES.items():
        for pattern in globs:
            matches = list(trees[pkg].glob(pattern))
            if not matches:
                raise GuestBuildError(f"package {pkg} has no file {pattern}")
            for src in matches:
                _copy_into(src, root / src.relative_to(trees[pkg]))
    applets = run([root / "bin/busybox", "--list-full"]).split()
    for applet in applets:
        link = root / applet
        if "/" in applet and not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    for rel, mode, content in ETC_FILES:
        _write(root / rel, content, mode)
    _write(root / "usr/sbin/picocloud-init", _guest_file("init.sh"), 0o755)
    _write(root / "usr/share/udhcpc/default.script", _guest_file("udhcpc.sh"), 0o755)
    modules = _module_order(kernel_tree, kver)
    _write(root / "etc/picocloud/modules", "".join(f"{m}\n" for m in modules), 0o644)
    for name, ko in modules.items():
        _copy_into(ko, root / "lib/modules" / kver / f"{name}.ko")
    _copy_into(kernel_tree / "boot" / f"vmlinuz-{kver}", root / "boot/vmlinuz")
    _write(root / "boot/initrd.img", _initramfs(root, applets, kver), 0o644)

    mbr = trees["syslinux-common"] / "usr/lib/syslinux/mbr/mbr.bin"
    disk = work / "disk.raw"
    _write_mbr(disk, mbr.read_bytes())
    part_bytes = DISK_BYTES - PARTITION_OFFSET
    run([
        "mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", ROOT_LABEL,
        "-O", "^64bit,^metadata_csum_seed,^orphan_file",  # what extlinux 6.04 can read
        "-E", f"offset={PARTITION_OFFSET},root_owner=0:0", "-d", root,
        disk, f"{part_bytes // 1024}k",
    ])  # fmt: skip
    _install_extlinux(disk, part_bytes, trees["extlinux"] / "usr/bin/extlinux", work / "mnt")


def _initramfs(root: Path, applets: Sequence[str], kver: str) -> bytes:
    """A gzipped newc cpio: busybox, the modules and init.sh as /init (initramfs role)."""
    archive = _Cpio()
    for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "etc/picocloud", "dev",
              "proc", "sys", "newroot", "lib", "lib/modules", f"lib/modules/{kver}"):  # fmt: skip
        archive.add(d, stat.S_IFDIR | 0o755)
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    archive.add("bin/busybox", stat.S_IFREG | 0o755, (root / "bin/busybox").read_bytes())
    for applet in applets:
        if applet.count("/") and applet != "bin/busybox":
            archive.add(applet, stat.S_IFLNK | 0o777, b"/bin/busybox")
    archive.add("init", stat.S_IFREG | 0o755, _guest_file("init.sh"))
    archive.add("etc/picocloud-initramfs", stat.S_IFREG | 0o644, b"")
    archive.add("etc/picocloud/modules", stat.S_IFREG | 0o644,
                (root / "etc/picocloud/modules").read_bytes())  # fmt: skip
    for ko in sorted((root / "lib/modules" / kver).iterdir()):
        archive.add(f"lib/modules/{kver}/{ko.name}", stat.S_IFREG | 0o644, ko.read_bytes())
    return gzip.compress(archive.finish(), compresslevel=9, mtime=0)


class _Cpio:
    """Writes a newc ("070701") cpio archive, the format the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.ino = 0

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self.ino += 1
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        self.chunks += [header, b"\0" * (-len(header) % 4), data, b"\0" * (-len(data) % 4)]

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return b"".join(self.chunks)


def _write_mbr(disk: Path, boot_code: bytes) -> None:
    """A sparse raw disk with syslinux's boot code and one active Linux partition."""
    sectors = DISK_BYTES // 512
    first = PARTITION_OFFSET // 512
    entry = (
        bytes([0x80, 0xFE, 0xFF, 0xFF, 0x83, 0xFE, 0xFF, 0xFF])  # active, CHS "use LBA", Linux
        + first.to_bytes(4, "little")
        + (sectors - first).to_bytes(4, "little")
    )
    sector = boot_code[:440].ljust(440, b"\0") + b"pcld\0\0" + entry + b"\0" * 48 + b"\x55\xaa"
    with disk.open("wb") as f:
        f.write(sector)
        f.truncate(DISK_BYTES)


def _install_extlinux(disk: Path, part_bytes: int, extlinux: Path, mnt: Path) -> None:
    """Install extlinux into the partition through a loop device; always detach it again."""
    mnt.mkdir()
    with contextlib.ExitStack() as undo:  # the reverter: unmount, then detach, even on error
        loop = run([
            "losetup", "--find", "--show", "--offset", str(PARTITION_OFFSET),
            "--sizelimit", str(part_bytes), disk,
        ]).strip()  # fmt: skip
        undo.callback(run, ["losetup", "--detach", loop])
        run(["mount", "-t", "ext4", loop, mnt])
        undo.callback(run, ["umount", mnt])
        run([extlinux, "--install", mnt / "boot/extlinux"])
