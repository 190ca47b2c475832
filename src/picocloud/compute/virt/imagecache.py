"""The per-host cache of base images, keyed by the image's checksum (Glance's md5 hex).

    base = ImageCache(dir).ensure(image.checksum, lambda tmp: download(image.id, tmp))

An image is fetched once, verified, made read-only (0444) and shared by every guest's
overlay, so provisioning costs the same for any image size after the first. Concurrent
`ensure` calls for one checksum (threads or processes) fetch it once: a file lock per
checksum serialises them, and a file appears under its final name only when verified.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from picocloud.compute.virt.errors import HypervisorError

log = logging.getLogger(__name__)
CHECKSUM = re.compile(r"^[0-9a-f]{32}$")


class ImageChecksumMismatch(HypervisorError):
    """The fetched data does not have the checksum the image service recorded."""


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ImageCache:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, checksum: str) -> Path:
        """Where the image with this checksum is (or would be) cached."""
        checksum = checksum.lower()
        if not CHECKSUM.match(checksum):
            raise ValueError(f"not an md5 hex checksum: {checksum!r}")
        return self.dir / checksum

    def ensure(self, checksum: str, fetch: Callable[[Path], None]) -> Path:
        """The cached image, fetched by `fetch(tmp_path)` and verified if not yet here."""
        final = self.path(checksum)
        if final.exists():
            return final
        with self._locked(final):
            if final.exists():  # another caller fetched it while we waited
                return final
            partial = final.with_name(f".{final.name}.partial")
            partial.unlink(missing_ok=True)
            try:
                fetch(partial)
                actual = md5_file(partial)
                if actual != final.name:
                    raise ImageChecksumMismatch(
                        f"image data has checksum {actual}, the image service says {final.name}"
                    )
                partial.chmod(0o444)
                os.replace(partial, final)
            finally:
                partial.unlink(missing_ok=True)
            log.info("image cache: stored %s (%d bytes)", final.name, final.stat().st_size)
            return final

    def cached(self) -> set[str]:
        return {p.name for p in self.dir.iterdir() if CHECKSUM.match(p.name)}

    def remove_unused(self, in_use: Iterable[str]) -> list[str]:
        """Remove cached images whose checksum is not in `in_use` (by any guest on the host,
        running or not: an overlay needs its base for as long as it exists)."""
        keep = {c.lower() for c in in_use}
        removed = []
        for checksum in sorted(self.cached() - keep):
            path = self.path(checksum)
            with self._locked(path):
                path.unlink(missing_ok=True)
            removed.append(checksum)
        return removed

    @contextlib.contextmanager
    def _locked(self, final: Path) -> Iterator[None]:
        with final.with_name(f".{final.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
