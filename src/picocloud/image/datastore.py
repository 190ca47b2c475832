"""Where image bytes live: a small `ImageStore` protocol and its filesystem implementation.

Uploads are written to a temporary file while size and checksums are computed, then renamed
into place atomically; a failed or refused upload leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Protocol


class Upload(Protocol):
    """An upload in progress: bytes are appended, then committed or discarded."""

    size: int

    def write(self, chunk: bytes) -> None: ...

    @property
    def md5(self) -> str: ...

    @property
    def sha512(self) -> str: ...

    @property
    def staged_path(self) -> Path: ...

    def commit(self) -> None: ...

    def discard(self) -> None: ...


class ImageStore(Protocol):
    """Image data by image id in one place (a directory today; future: S3, Ceph)."""

    def begin(self, image_id: str) -> Upload: ...

    def path(self, image_id: str) -> Path | None: ...

    def delete(self, image_id: str) -> None: ...


class FileUpload:
    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._fh = os.fdopen(fd, "wb")
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha512 = hashlib.sha512()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._fh.write(chunk)
        self._md5.update(chunk)
        self._sha512.update(chunk)
        self.size += len(chunk)

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    @property
    def sha512(self) -> str:
        return self._sha512.hexdigest()

    @property
    def staged_path(self) -> Path:
        """The bytes written so far (flushed), for inspection before commit."""
        self._fh.flush()
        return self.tmp

    def commit(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.final)

    def discard(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)


class FilesystemStore:
    """Image files under one directory, named by image id; `reserved` names are subfolders."""

    def __init__(self, root: Path, reserved: tuple[str, ...] = ()) -> None:
        self.root = root
        self.reserved = reserved
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in root.glob(".*.part"):  # an upload cut short by a crash
            stale.unlink(missing_ok=True)

    def _file(self, image_id: str) -> Path:
        if "/" in image_id or image_id.startswith(".") or image_id in self.reserved:
            raise ValueError(f"not an image id: {image_id!r}")
        return self.root / image_id

    def begin(self, image_id: str) -> FileUpload:
        return FileUpload(self._file(image_id))

    def path(self, image_id: str) -> Path | None:
        f = self._file(image_id)
        return f if f.is_file() else None

    def delete(self, image_id: str) -> None:
        self._file(image_id).unlink(missing_ok=True)
