"""Token payloads, key rotation and settings layering."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from picocloud.identity.tokens import KeyRepository, TokenPayload, new_audit_id
from picocloud.settings import load_settings


def payload(**kw: object) -> TokenPayload:
    now = time.time()
    base: dict[str, object] = dict(user_id="u", methods=("password",), expires_at=now + 60,
                                   issued_at=now, audit_ids=(new_audit_id(),), project_id="p")
    base.update(kw)
    return TokenPayload(**base)  # type: ignore[arg-type]


def test_round_trip_and_tamper(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path / "keys")
    repo.setup()
    p = payload()
    token = p.encode(repo.fernet())
    assert TokenPayload.decode(repo.fernet(), token) == p
    assert TokenPayload.decode(repo.fernet(), token[:-3] + "AAA") is None
    assert TokenPayload.decode(repo.fernet(), "garbage") is None


def test_rotation_keeps_recent_tokens_valid(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path / "keys", max_active=3)
    repo.setup()
    token = payload().encode(repo.fernet())
    repo.rotate()
    fresh = KeyRepository(tmp_path / "keys", max_active=3)
    assert TokenPayload.decode(fresh.fernet(), token) is not None
    repo.rotate()
    repo.rotate()  # the key that signed `token` is now pruned
    fresh = KeyRepository(tmp_path / "keys", max_active=3)
    assert TokenPayload.decode(fresh.fernet(), token) is None
    assert len(list((tmp_path / "keys").iterdir())) == 3
    assert oct((tmp_path / "keys" / "0").stat().st_mode & 0o777) == "0o600"


def test_settings_layering(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text('[picocloud]\nport = 9000\ntoken_expiration = 60\nhost = "0.0.0.0"\n')
    env = {"PICOCLOUD_PORT": "9100", "PICOCLOUD_DATA_DIR": str(tmp_path)}
    s = load_settings({"port": 9200}, config_file=str(toml), environ=env)
    assert (s.port, s.token_expiration, s.data_dir) == (9200, 60, tmp_path)
    assert s.base_url == "http://127.0.0.1:9200"
    s = load_settings({}, config_file=str(toml), environ=env)
    assert s.port == 9100
    assert s.db_url == f"sqlite:///{tmp_path / 'picocloud.db'}"
    toml.write_text("bogus = 1\n")
    with pytest.raises(ValueError, match="bogus"):
        load_settings({}, config_file=str(toml), environ={})
