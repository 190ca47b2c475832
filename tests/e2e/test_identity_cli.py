"""Identity end to end: the real `openstack` CLI against a real `picocloud up`.

What a test is about goes through the CLI; setting up the rest (users, projects, grants) goes
straight to the API, since each CLI call costs about a second."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .conftest import Picocloud, PicocloudFactory

pytestmark = pytest.mark.e2e

_serial = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other test in the module uses (the module shares one cloud)."""
    return f"{prefix}-{next(_serial)}"


@dataclass(frozen=True)
class User:
    id: str
    name: str
    password: str
    project: str
    project_id: str

    def auth(self, password: str | None = None) -> tuple[str, ...]:
        """Global CLI options that authenticate as this user on their project."""
        return ("--os-username", self.name, "--os-password", password or self.password,
                "--os-project-name", self.project)


NewUser = Callable[..., User]


def create_project(cloud: Picocloud, name: str) -> str:
    return str(cloud.api("POST", "/projects", {"project": {"name": name}})["project"]["id"])


def create_group(cloud: Picocloud, name: str) -> str:
    return str(cloud.api("POST", "/groups", {"group": {"name": name}})["group"]["id"])


def role_id(cloud: Picocloud, name: str) -> str:
    return str(cloud.api("GET", f"/roles?name={name}")["roles"][0]["id"])


def make_user(cloud: Picocloud, project: str, role: str | None = "member") -> User:
    """A user whose default project is `project`, holding `role` there (None: no role)."""
    project_id = str(cloud.api("GET", f"/projects?name={project}")["projects"][0]["id"])
    name = unique("user")
    user = cloud.api("POST", "/users", {"user": {
        "name": name, "password": f"pw-{name}", "default_project_id": project_id}})["user"]
    if role:
        cloud.api("PUT", f"/projects/{project_id}/users/{user['id']}/roles/{role_id(cloud, role)}")
    return User(user["id"], name, f"pw-{name}", project, project_id)


@pytest.fixture(scope="module")
def project(cloud: Picocloud) -> str:
    """A project the module's throwaway users belong to."""
    create_project(cloud, "e2e")
    return "e2e"


@pytest.fixture
def new_user(cloud: Picocloud, project: str) -> NewUser:
    def make(role: str | None = "member") -> User:
        return make_user(cloud, project, role)

    return make


def validate(cloud: Picocloud, token: str, as_token: str | None = None) -> int:
    """The status of `GET /v3/auth/tokens` for `token`, asked with `as_token` (default itself)."""
    return cloud.http("GET", "/identity/v3/auth/tokens", token=as_token or token,
                      headers={"X-Subject-Token": token}).status


def test_tour(cloud: Picocloud) -> None:
    """The README tour, command by command, as a newcomer would type it."""
    admin = cloud.run("token", "issue")
    assert admin["id"].startswith("gAAAA")  # a Fernet token
    assert validate(cloud, admin["id"]) == 200

    ensiie = cloud.run("project", "create", "--description", "École ENSIIE", "ensiie")
    assert ensiie["name"] == "ensiie" and ensiie["description"] == "École ENSIIE"
    assert ensiie["domain_id"] == "default" and ensiie["enabled"] is True

    user1 = cloud.run("user", "create", "--password", "secretpass", "--project", "ensiie", "user1")
    assert user1["name"] == "user1" and user1["enabled"] is True
    assert user1["default_project_id"] == ensiie["id"]
    assert "password" not in user1

    assert cloud.run("role", "create", "teacher")["name"] == "teacher"
    assert cloud.run("role", "add", "--project", "ensiie", "--user", "user1", "teacher") is None
    rows = cloud.run("role", "assignment", "list", "--user", "user1", "--names")
    assert [(r["Role"], r["User"], r["Project"], r["Group"]) for r in rows] == [
        ("teacher", "user1@Default", "ensiie@Default", "")]

    students = cloud.run("group", "create", "students")
    assert students["name"] == "students" and students["domain_id"] == "default"
    assert cloud.run("group", "add", "user", "students", "user1") is None
    assert [u["Name"] for u in cloud.run("user", "list", "--group", "students")] == ["user1"]

    lyon1 = cloud.run("domain", "create", "lyon1")
    assert lyon1["name"] == "lyon1" and lyon1["enabled"] is True
    tp = cloud.run("project", "create", "--domain", "lyon1", "tp-reseaux")
    assert tp["name"] == "tp-reseaux" and tp["domain_id"] == lyon1["id"]

    catalog = cloud.run("catalog", "list")
    identity = next(s for s in catalog if s["Type"] == "identity")
    assert {e["interface"]: e["url"] for e in identity["Endpoints"]} == dict.fromkeys(
        ("public", "internal", "admin"), f"{cloud.url}/identity")
    endpoints = cloud.run("endpoint", "list")
    served = {"identity": "/identity", "image": "/image", "compute": "/compute/v2.1"}
    assert {(e["Service Type"], e["Interface"]) for e in endpoints} == {
        (kind, interface) for kind in served for interface in ("public", "internal", "admin")}
    assert all(e["Enabled"] and e["Region"] == "RegionOne" for e in endpoints)
    assert all(e["URL"] == cloud.url + served[e["Service Type"]] for e in endpoints)

    token = cloud.run("--os-username", "user1", "--os-password", "secretpass",
                      "--os-project-name", "ensiie", "token", "issue")
    assert token["user_id"] == user1["id"] and token["project_id"] == ensiie["id"]


def test_wrong_password_is_refused_with_401(cloud: Picocloud) -> None:
    failure = cloud.fail("--os-password", "not-the-password", "token", "issue")
    assert "HTTP 401" in failure.message
    assert "requires authentication" in failure.message


def test_reader_cannot_create_a_project(cloud: Picocloud, new_user: NewUser) -> None:
    reader = new_user("reader")
    # A reader can look at their own project (by ID: finding a project by name needs the
    # right to list projects, in Keystone too)...
    shown = cloud.run(*reader.auth(), "project", "show", reader.project_id)
    assert shown["name"] == reader.project
    # ...but not create one.
    name = unique("forbidden")
    failure = cloud.fail(*reader.auth(), "project", "create", name)
    assert "403" in failure.message and "identity:create_project" in failure.message
    assert cloud.api("GET", f"/projects?name={name}")["projects"] == []


def test_duplicate_user_in_a_domain_is_409(cloud: Picocloud) -> None:
    domain = unique("domain")
    cloud.api("POST", "/domains", {"domain": {"name": domain}})
    alice = cloud.run("user", "create", "--domain", domain, "--password", "pw", "alice")
    failure = cloud.fail("user", "create", "--domain", domain, "--password", "pw", "alice")
    assert "409" in failure.message and "Duplicate" in failure.message
    # Names are unique per domain only: the same name is fine in another one.
    other = cloud.run("user", "create", "--domain", "default", "--password", "pw", "alice")
    assert other["domain_id"] == "default" and other["id"] != alice["id"]


def test_malformed_json_is_400(cloud: Picocloud) -> None:
    token = cloud.admin_token()
    reply = cloud.http("POST", "/identity/v3/projects", token=token, body=b'{"project": {"name":')
    assert reply.status == 400
    assert reply.json()["error"]["code"] == 400
    assert reply.json()["error"]["title"] == "Bad Request"
    # Valid JSON of the wrong shape is refused the same way, and creates nothing.
    reply = cloud.http("POST", "/identity/v3/projects", token=token, body=b'{"project": "x"}')
    assert reply.status == 400 and reply.json()["error"]["code"] == 400
    assert cloud.api("GET", "/projects?name=x")["projects"] == []


def test_revoked_token_is_refused(cloud: Picocloud) -> None:
    token = cloud.token()
    assert validate(cloud, token) == 200
    assert cloud.run("token", "revoke", token) is None

    failure = cloud.run_with_token(token, "project", "list", check=False)
    assert "HTTP 401" in failure.message and "revoked" in failure.message
    assert validate(cloud, token) == 401
    # Asked by someone else, Keystone says the revoked token no longer exists.
    assert validate(cloud, token, as_token=cloud.admin_token()) == 404


def test_disabled_user_cannot_authenticate(cloud: Picocloud, new_user: NewUser) -> None:
    user = new_user()
    before = cloud.token(*user.auth())
    assert cloud.run("user", "set", "--disable", user.name) is None

    failure = cloud.fail(*user.auth(), "token", "issue")
    assert "HTTP 401" in failure.message
    # Disabling also ends the sessions the user already had.
    assert validate(cloud, before) == 401
    assert cloud.api("GET", f"/users/{user.id}")["user"]["enabled"] is False


def test_user_changes_own_password(cloud: Picocloud, new_user: NewUser) -> None:
    user = new_user()
    before = cloud.token(*user.auth())
    cloud.run(*user.auth(), "user", "password", "set",
              "--original-password", user.password, "--password", "brand-new-pw")

    failure = cloud.fail(*user.auth(), "token", "issue")
    assert "HTTP 401" in failure.message
    assert cloud.token(*user.auth("brand-new-pw"))
    # As in Keystone, a password change revokes the tokens issued with the old one.
    assert validate(cloud, before) == 401


def test_group_membership_listing(cloud: Picocloud, new_user: NewUser) -> None:
    group = unique("group")
    create_group(cloud, group)
    ann, bob = new_user(None), new_user(None)
    cloud.run("group", "add", "user", group, ann.name, bob.name)

    members = cloud.run("user", "list", "--group", group)
    assert sorted(u["Name"] for u in members) == sorted([ann.name, bob.name])
    assert [g["Name"] for g in cloud.run("group", "list", "--user", ann.name)] == [group]
    assert cloud.run("group", "contains", "user", group, bob.name) == f"{bob.name} in group {group}"

    cloud.run("group", "remove", "user", group, bob.name)
    assert [u["Name"] for u in cloud.run("user", "list", "--group", group)] == [ann.name]


def test_effective_assignments_include_group_roles(cloud: Picocloud, new_user: NewUser) -> None:
    user = new_user(None)
    group = unique("group")
    group_id = create_group(cloud, group)
    cloud.api("PUT", f"/groups/{group_id}/users/{user.id}")
    cloud.run("role", "add", "--project", user.project, "--group", group, "member")

    assert cloud.run("role", "assignment", "list", "--user", user.name, "--names") == []
    effective = cloud.run("role", "assignment", "list", "--effective", "--user", user.name,
                          "--names")
    # The group's `member` shows up as the user's own, with the `reader` it implies.
    assert sorted((r["Role"], r["User"], r["Project"], r["Group"]) for r in effective) == [
        ("member", f"{user.name}@Default", f"{user.project}@Default", ""),
        ("reader", f"{user.name}@Default", f"{user.project}@Default", ""),
    ]
    # And the group's role is enough to log in to the project.
    assert cloud.run(*user.auth(), "token", "issue")["user_id"] == user.id


def test_restart_keeps_users_and_tokens(picocloud_factory: PicocloudFactory) -> None:
    pc = picocloud_factory("restart")
    pc.start()
    port = pc.port
    create_project(pc, "durable")
    user = make_user(pc, "durable")
    user_token = pc.token(*user.auth())
    admin_token = pc.admin_token()
    revoked = pc.token()
    assert pc.http("DELETE", "/identity/v3/auth/tokens", token=admin_token,
                   headers={"X-Subject-Token": revoked}).status == 204

    pc.restart()
    assert pc.port == port

    shown = pc.run("user", "show", user.name)
    assert shown["id"] == user.id and shown["enabled"] is True
    assert pc.run(*user.auth(), "token", "issue")["user_id"] == user.id
    # Tokens issued before the restart still work, and revoked ones stay revoked.
    assert user.name in {u["Name"] for u in pc.run_with_token(admin_token, "user", "list")}
    reply = pc.http("GET", "/identity/v3/auth/tokens", token=user_token,
                    headers={"X-Subject-Token": user_token})
    assert reply.status == 200 and reply.json()["token"]["user"]["name"] == user.name
    assert validate(pc, revoked) == 401
    pc.stop()
