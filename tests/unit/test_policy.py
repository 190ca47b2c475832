"""The oslo.policy rule language and picocloud's default identity rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from picocloud.errors import Forbidden
from picocloud.identity.policies import DEFAULT_RULES
from picocloud.policy import Enforcer, PolicySyntaxError, compile_rule


def creds(*roles: str, scope: str = "project", **extra: object) -> dict[str, object]:
    return {"roles": list(roles), "scope": scope, "user_id": "u1", **extra}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("@", True),
        ("!", False),
        ("", True),
        ("role:admin", False),
        ("role:Reader", True),
        ("role:admin or role:reader", True),
        ("role:reader and not role:admin", True),
        ("not (role:reader or role:admin)", False),
        ("user_id:%(target.user.id)s", True),
        ("user_id:%(target.missing)s", False),
        ("'u1':%(target.user.id)s", True),
        ("scope:project and (role:x or user_id:u1)", True),
    ],
)
def test_rule_language(rule: str, expected: bool) -> None:
    e = Enforcer({"r": rule})
    assert e.allowed("r", creds("reader"), {"target": {"user": {"id": "u1"}}}) is expected


def test_syntax_errors_are_refused_at_load() -> None:
    for bad in ("role:admin and", "(role:admin", "role:admin)", "nocolon"):
        with pytest.raises(PolicySyntaxError):
            compile_rule(bad)


def test_defaults_cloud_admin_domain_admin_reader() -> None:
    e = Enforcer(DEFAULT_RULES)
    target = {"target": {"project": {"domain_id": "d1"}, "domain_id": "d1"}}
    assert e.allowed("identity:create_project", creds("admin"), target)
    assert not e.allowed("identity:create_project", creds("reader", "member"), target)
    domain_admin = creds("admin", scope="domain", domain_id="d1")
    assert e.allowed("identity:create_project", domain_admin, target)
    other = {"target": {"project": {"domain_id": "d2"}, "domain_id": "d2"}}
    assert not e.allowed("identity:create_project", domain_admin, other)
    # a user sees their own user record, not others'
    me = {"target": {"user": {"id": "u1"}, "domain_id": "d1"}}
    them = {"target": {"user": {"id": "u2"}, "domain_id": "d1"}}
    assert e.allowed("identity:get_user", creds("member"), me)
    assert not e.allowed("identity:get_user", creds("member"), them)
    system_reader = creds("reader", scope="system", system_scope="all")
    assert e.allowed("identity:list_users", system_reader, {"target": {"domain_id": None}})
    assert not e.allowed("identity:create_user", system_reader, target)


def test_policy_file_overrides(tmp_path: Path) -> None:
    f = tmp_path / "policy.yaml"
    f.write_text('"identity:create_project": "role:teacher"\n')
    e = Enforcer(DEFAULT_RULES, str(f))
    target = {"target": {"domain_id": "d1"}}
    assert e.allowed("identity:create_project", creds("teacher"), target)
    with pytest.raises(Forbidden):
        e.enforce("identity:create_project", creds("admin"), target)
