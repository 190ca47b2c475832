"""Password and secret hashing with bcrypt (a slow KDF; cost from settings)."""

from __future__ import annotations

import bcrypt

MAX_BYTES = 72  # bcrypt reads at most 72 bytes; longer secrets are truncated, as Keystone does


def hash_password(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode()[:MAX_BYTES], bcrypt.gensalt(rounds)).decode()


def check_password(password: str, hashed: str | None) -> bool:
    if not hashed:
        return False
    try:
        return bcrypt.checkpw(password.encode()[:MAX_BYTES], hashed.encode())
    except ValueError:
        return False
