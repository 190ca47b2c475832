"""Keypair rules (Nova semantics): names, public keys checked by parsing their wire format,
MD5 (ssh) or SHA-1 (x509) fingerprints, generated keys, per-user ownership and quota."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import zlib
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from picocloud.compute import quota
from picocloud.compute.models import Keypair
from picocloud.errors import BadRequest, Conflict, Forbidden, NotFound

# Nova 2.92's set, which also takes '.' and '@' ("alice@laptop"); older Nova refused those.
NAME = re.compile(r"^[a-zA-Z0-9 _.@-]+$")
TYPES = ("ssh", "x509")
GENERATED_BITS = 2048
MAX_PAGE = 1000  # Nova's osapi_max_limit


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def check_name(name: object) -> str:
    if not isinstance(name, str):
        raise BadRequest(f"Invalid input for field/attribute name. Value: {name}. "
                         f"{name!r} is not of type 'string'")
    if not 1 <= len(name) <= 255:
        raise BadRequest("Keypair data is invalid: Keypair name must be string and between 1 "
                         "and 255 characters long")
    if not NAME.match(name) or not name.strip():
        raise BadRequest("Keypair data is invalid: Keypair name contains unsafe characters")
    return name


def _colons(digest: str) -> str:
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def ssh_fingerprint(public_key: str) -> str:
    """Check an OpenSSH public key line and return its MD5 fingerprint ("aa:bb:..."), as Nova."""
    parts = public_key.strip().split()
    if len(parts) < 2:
        raise BadRequest("Keypair data is invalid: failed to generate fingerprint")
    try:
        serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
        blob = base64.b64decode(parts[1], validate=True)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise BadRequest("Keypair data is invalid: failed to generate fingerprint") from None
    except Exception:  # cryptography rejects unknown key types with UnsupportedAlgorithm
        raise BadRequest("Keypair data is invalid: failed to generate fingerprint") from None
    return _colons(hashlib.md5(blob, usedforsecurity=False).hexdigest())


def x509_fingerprint(certificate: str) -> str:
    """Check a PEM certificate and return its SHA-1 fingerprint, as Nova does for x509 keys."""
    try:
        cert = x509.load_pem_x509_certificate(certificate.encode())
    except (ValueError, UnicodeEncodeError):
        raise BadRequest("Keypair data is invalid: failed to generate fingerprint") from None
    return _colons(cert.fingerprint(hashes.SHA1()).hex())


def generate(kind: str, user_id: str) -> tuple[str, str, str]:
    """A new key: (public key or certificate, private key PEM, fingerprint)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=GENERATED_BITS)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    if kind == "x509":
        now = datetime.now(UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user_id)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(key, hashes.SHA256())
        )
        public = cert.public_bytes(serialization.Encoding.PEM).decode()
        return public, private, x509_fingerprint(public)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode() + " Generated-by-Nova"
    return public, private, ssh_fingerprint(public)


def numeric_id(keypair: Keypair) -> int:
    """A stable integer for the API's `id` (our rows are keyed by user and name)."""
    return zlib.crc32(f"{keypair.user_id}/{keypair.name}".encode()) & 0x7FFFFFFF


def create(
    db: Session,
    project_id: str,
    user_id: str,
    name: str,
    kind: str = "ssh",
    public_key: str | None = None,
) -> tuple[Keypair, str | None]:
    """Import `public_key` or generate one (then the private key is returned, once)."""
    check_name(name)
    if kind not in TYPES:
        raise BadRequest(f"Invalid input for field/attribute type. Value: {kind}. "
                         f"'{kind}' is not one of ['ssh', 'x509']")
    private = None
    if public_key is None:
        public_key, private, fingerprint = generate(kind, user_id)
    elif kind == "x509":
        fingerprint = x509_fingerprint(public_key)
    else:
        fingerprint = ssh_fingerprint(public_key)
    try:
        quota.check(db, project_id, user_id, {"key_pairs": 1})
    except Forbidden:
        raise Forbidden("Maximum number of key pairs exceeded") from None
    if db.get(Keypair, (user_id, name)) is not None:
        raise Conflict(f"Key pair '{name}' already exists.")
    keypair = Keypair(user_id=user_id, name=name, type=kind, fingerprint=fingerprint,
                      public_key=public_key, created_at=utcnow())
    db.add(keypair)
    try:
        db.flush()
    except IntegrityError:
        raise Conflict(f"Key pair '{name}' already exists.") from None
    return keypair, private


def get(db: Session, user_id: str, name: str) -> Keypair:
    keypair = db.get(Keypair, (user_id, name))
    if keypair is None:
        raise NotFound(f"Keypair {name} not found for user {user_id}")
    return keypair


def listing(
    db: Session, user_id: str, limit: int | None = None, marker: str | None = None
) -> list[Keypair]:
    """A user's keypairs by name; `marker` is the last name of the previous page."""
    query = select(Keypair).where(Keypair.user_id == user_id).order_by(Keypair.name)
    if marker is not None:
        if db.get(Keypair, (user_id, marker)) is None:
            raise BadRequest(f"Marker {marker} could not be found.")
        query = query.where(Keypair.name > marker)
    return list(db.scalars(query.limit(min(limit if limit is not None else MAX_PAGE, MAX_PAGE))))


def remove(db: Session, user_id: str, name: str) -> None:
    db.delete(get(db, user_id, name))
