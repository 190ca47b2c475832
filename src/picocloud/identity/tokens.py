"""Fernet-style tokens: a signed, encrypted payload, no database write per token.

Keys live in `<data_dir>/fernet-keys/` as Keystone lays them out: file `0` is the staged key,
the highest number is the primary (it encrypts), every key decrypts. `rotate` promotes the
staged key, stages a new one and prunes the oldest beyond `max_active`.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PAYLOAD_VERSION = 1


class KeyRepository:
    """The on-disk key set; re-read when its directory changes (e.g. after `keys rotate`)."""

    def __init__(self, path: Path, max_active: int = 3) -> None:
        self.path = path
        self.max_active = max_active
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._checked = 0.0
        self._fernet: MultiFernet | None = None

    def setup(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path, 0o700)
        if not self._indexes():
            self._write(0, Fernet.generate_key())
            self.rotate()

    def _indexes(self) -> list[int]:
        if not self.path.exists():
            return []
        return sorted(int(p.name) for p in self.path.iterdir() if p.name.isdigit())

    def _write(self, index: int, key: bytes) -> None:
        tmp = self.path / f".{index}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        os.replace(tmp, self.path / str(index))

    def rotate(self) -> int:
        """Promote the staged key to primary, stage a fresh key, prune; returns the primary."""
        indexes = self._indexes()
        primary = max(indexes) + 1 if indexes else 1
        os.replace(self.path / "0", self.path / str(primary))
        self._write(0, Fernet.generate_key())
        keep = sorted(i for i in self._indexes() if i != 0)
        for old in keep[: max(0, len(keep) - (self.max_active - 1))]:
            (self.path / str(old)).unlink()
        return primary

    def fernet(self) -> MultiFernet:
        now = time.monotonic()
        if self._fernet is not None and now - self._checked < 1.0:
            return self._fernet
        with self._lock:
            self._checked = now
            mtime = self.path.stat().st_mtime
            if self._fernet is None or mtime != self._mtime:
                indexes = self._indexes()
                if not indexes:
                    raise RuntimeError(f"no token keys in {self.path}: run picocloud up once")
                order = sorted(indexes, reverse=True)  # primary first, staged (0) last
                keys = [Fernet((self.path / str(i)).read_bytes().strip()) for i in order]
                self._fernet = MultiFernet(keys)
                self._mtime = mtime
            return self._fernet


def new_audit_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@dataclass(frozen=True)
class TokenPayload:
    """What a token carries; everything else is looked up at validation."""

    user_id: str
    methods: tuple[str, ...]
    expires_at: float
    issued_at: float
    audit_ids: tuple[str, ...]
    project_id: str | None = None
    domain_id: str | None = None
    system: bool = False
    app_cred_id: str | None = None
    trust_id: str | None = None

    def encode(self, fernet: MultiFernet) -> str:
        doc = [
            PAYLOAD_VERSION,
            self.user_id,
            list(self.methods),
            self.expires_at,
            self.issued_at,
            list(self.audit_ids),
            self.project_id,
            self.domain_id,
            1 if self.system else 0,
            self.app_cred_id,
            self.trust_id,
        ]
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return fernet.encrypt(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, fernet: MultiFernet, token: str) -> TokenPayload | None:
        """The payload, or None for anything not a token of ours (wrong key, garbage)."""
        try:
            padded = token + "=" * (-len(token) % 4)
            doc = json.loads(fernet.decrypt(padded.encode()))
            if doc[0] != PAYLOAD_VERSION:
                return None
            return cls(
                user_id=doc[1],
                methods=tuple(doc[2]),
                expires_at=float(doc[3]),
                issued_at=float(doc[4]),
                audit_ids=tuple(doc[5]),
                project_id=doc[6],
                domain_id=doc[7],
                system=bool(doc[8]),
                app_cred_id=doc[9],
                trust_id=doc[10],
            )
        except (InvalidToken, ValueError, TypeError, IndexError, UnicodeError):
            return None


def isotime(ts: float | datetime) -> str:
    """Keystone's timestamp format: 2026-11-21T06:13:52.000000Z."""
    when = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class AuthContext:
    """A validated token: who the caller is, what it is scoped to, which roles it carries."""

    payload: TokenPayload
    user: dict[str, Any]  # {"id", "name", "domain": {"id", "name"}, "password_expires_at"}
    roles: list[dict[str, str]] = field(default_factory=list)  # [{"id", "name"}]
    project: dict[str, Any] | None = None  # {"id", "name", "domain": {...}}
    domain: dict[str, str] | None = None
    app_cred: dict[str, Any] | None = None
    trust: dict[str, Any] | None = None
    is_admin_project: bool = False

    @property
    def user_id(self) -> str:
        return self.payload.user_id

    @property
    def project_id(self) -> str | None:
        return self.payload.project_id

    @property
    def role_names(self) -> list[str]:
        return [r["name"] for r in self.roles]

    @property
    def scope(self) -> str:
        p = self.payload
        if p.project_id:
            return "project"
        if p.domain_id:
            return "domain"
        if p.system:
            return "system"
        return "unscoped"

    def credentials(self) -> dict[str, Any]:
        """What policy rules may test: role:, user_id:, project_id:, domain_id:, system_scope:."""
        creds = getattr(self, "_creds", None)
        if creds is None:
            p = self.payload
            creds = {
                "user_id": p.user_id,
                "user_domain_id": self.user["domain"]["id"],
                "roles": self.role_names,
                "project_id": p.project_id,
                "project_domain_id": (self.project or {}).get("domain", {}).get("id"),
                "domain_id": p.domain_id,
                "system_scope": "all" if p.system else None,
                "scope": self.scope,
                "is_admin_project": self.is_admin_project,
                "token": {"user_id": p.user_id, "audit_ids": list(p.audit_ids)},
            }
            object.__setattr__(self, "_creds", creds)
        return creds

    def body(self, catalog: list[dict[str, Any]] | None) -> dict[str, Any]:
        """The `token` document Keystone returns on issue and validation."""
        p = self.payload
        doc: dict[str, Any] = {
            "methods": list(p.methods),
            "user": self.user,
            "audit_ids": list(p.audit_ids),
            "expires_at": isotime(p.expires_at),
            "issued_at": isotime(p.issued_at),
        }
        if self.project is not None:
            doc["project"] = self.project
            doc["is_domain"] = False
        elif self.domain is not None:
            doc["domain"] = self.domain
        elif p.system:
            doc["system"] = {"all": True}
        if self.scope != "unscoped":
            doc["roles"] = self.roles
            if catalog is not None:
                doc["catalog"] = catalog
        if self.app_cred is not None:
            doc["application_credential"] = self.app_cred
        if self.trust is not None:
            doc["OS-TRUST:trust"] = self.trust
        return doc
