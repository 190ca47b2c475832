"""Identity rules users notice: RBAC, conflicts, revocation, scopes, restarts."""

from __future__ import annotations

from typing import Any

from conftest import Api, make_cloud

V3 = "/identity/v3"


def create(api: Api, token: str, kind: str, **body: Any) -> dict[str, Any]:
    r = api.post(f"{V3}/{kind}s", token, json={kind: body})
    assert r.status_code == 201, r.text
    return r.json()[kind]  # type: ignore[no-any-return]


def role_id(api: Api, token: str, name: str) -> str:
    r = api.get(f"{V3}/roles?name={name}", token)
    return r.json()["roles"][0]["id"]  # type: ignore[no-any-return]


def user_with_role(api: Api, admin: str, role: str, name: str = "u1") -> tuple[dict, dict]:
    project = create(api, admin, "project", name=f"p-{name}")
    user = create(api, admin, "user", name=name, password="pw-" + name)
    r = api.request("PUT", f"{V3}/projects/{project['id']}/users/{user['id']}/roles/"
                    f"{role_id(api, admin, role)}", admin)
    assert r.status_code == 204
    return user, project


def test_reader_cannot_create_project_but_admin_can(api: Api, admin_token: str) -> None:
    user, project = user_with_role(api, admin_token, "reader")
    token = api.token("u1", "pw-u1", project["name"])
    r = api.post(f"{V3}/projects", token, json={"project": {"name": "nope"}})
    assert r.status_code == 403
    assert r.json()["error"]["title"] == "Forbidden"
    assert api.get(f"{V3}/projects?name=nope", admin_token).json()["projects"] == []
    # but the user can read itself
    assert api.get(f"{V3}/users/{user['id']}", token).status_code == 200


def test_duplicates_conflict_and_schema_errors(api: Api, admin_token: str) -> None:
    create(api, admin_token, "user", name="dup")
    r = api.post(f"{V3}/users", admin_token, json={"user": {"name": "dup"}})
    assert r.status_code == 409
    assert "dup" in r.json()["error"]["message"]
    r = api.post(f"{V3}/projects", admin_token, json={"project": {"name": "x" * 65}})
    assert r.status_code == 400 and "'name'" in r.json()["error"]["message"]
    r = api.post(f"{V3}/projects", admin_token, json={"project": {"name": "x", "enabled": "yes"}})
    assert r.status_code == 400 and "'enabled'" in r.json()["error"]["message"]


def test_revoked_token_is_401(api: Api, admin_token: str) -> None:
    other = api.token()
    r = api.request("DELETE", f"{V3}/auth/tokens", admin_token, headers={"X-Subject-Token": other})
    assert r.status_code == 204
    assert api.get(f"{V3}/projects", other).status_code == 401
    r = api.get(f"{V3}/auth/tokens", admin_token, headers={"X-Subject-Token": other})
    assert r.status_code == 404
    assert api.get(f"{V3}/projects", admin_token).status_code == 200


def test_disabling_user_and_changing_password_invalidate(api: Api, admin_token: str) -> None:
    user, project = user_with_role(api, admin_token, "member")
    token = api.token("u1", "pw-u1", project["name"])
    r = api.request("PATCH", f"{V3}/users/{user['id']}", admin_token,
                    json={"user": {"enabled": False}})
    assert r.status_code == 200
    assert api.get(f"{V3}/auth/projects", token).status_code == 401
    auth = {"identity": {"methods": ["password"], "password": {"user": {
        "id": user["id"], "password": "pw-u1"}}}}
    assert api.post(f"{V3}/auth/tokens", json={"auth": auth}).status_code == 401
    api.request("PATCH", f"{V3}/users/{user['id']}", admin_token, json={"user": {"enabled": True}})
    assert api.get(f"{V3}/auth/projects", token).status_code == 401  # stays revoked
    token = api.token("u1", "pw-u1", project["name"])
    r = api.post(f"{V3}/users/{user['id']}/password",
                 json={"user": {"original_password": "pw-u1", "password": "new-pw"}})
    assert r.status_code == 204
    assert api.get(f"{V3}/auth/projects", token).status_code == 401
    assert api.token("u1", "new-pw", project["name"])


def test_removing_role_assignment_revokes_project_token(api: Api, admin_token: str) -> None:
    user, project = user_with_role(api, admin_token, "member")
    token = api.token("u1", "pw-u1", project["name"])
    path = f"{V3}/projects/{project['id']}/users/{user['id']}/roles/" \
           f"{role_id(api, admin_token, 'member')}"
    assert api.request("HEAD", path, admin_token).status_code == 204
    assert api.request("DELETE", path, admin_token).status_code == 204
    assert api.get(f"{V3}/auth/projects", token).status_code == 401


def test_group_roles_inheritance_and_implied_roles(api: Api, admin_token: str) -> None:
    domain = create(api, admin_token, "domain", name="lyon1")
    parent = create(api, admin_token, "project", name="tp", domain_id=domain["id"])
    child = create(api, admin_token, "project", name="tp1", domain_id=domain["id"],
                   parent_id=parent["id"])
    assert child["parent_id"] == parent["id"] and parent["parent_id"] == domain["id"]
    user = create(api, admin_token, "user", name="stud", password="pw", domain_id=domain["id"])
    group = create(api, admin_token, "group", name="students", domain_id=domain["id"])
    assert api.request("PUT", f"{V3}/groups/{group['id']}/users/{user['id']}",
                       admin_token).status_code == 204
    member = role_id(api, admin_token, "member")
    r = api.request("PUT", f"{V3}/OS-INHERIT/projects/{parent['id']}/groups/{group['id']}/roles/"
                    f"{member}/inherited_to_projects", admin_token)
    assert r.status_code == 204
    r = api.get(f"{V3}/role_assignments?effective&user.id={user['id']}&include_names",
                admin_token)
    rows = r.json()["role_assignments"]
    got = {(a["role"]["name"], a["scope"]["project"]["name"]) for a in rows}
    assert got == {("member", "tp1"), ("reader", "tp1")}  # inherited + implied, not on parent
    auth = {"identity": {"methods": ["password"], "password": {"user": {
        "name": "stud", "domain": {"name": "lyon1"}, "password": "pw"}}},
        "scope": {"project": {"name": "tp1", "domain": {"name": "lyon1"}}}}
    r = api.post(f"{V3}/auth/tokens", json={"auth": auth})
    assert r.status_code == 201
    assert {x["name"] for x in r.json()["token"]["roles"]} == {"member", "reader"}
    auth["scope"] = {"project": {"name": "tp", "domain": {"name": "lyon1"}}}
    assert api.post(f"{V3}/auth/tokens", json={"auth": auth}).status_code == 401


def test_rescope_domain_and_system_scopes(api: Api, admin_token: str) -> None:
    unscoped = api.token(project=None)
    r = api.get(f"{V3}/auth/tokens", admin_token, headers={"X-Subject-Token": unscoped})
    assert "roles" not in r.json()["token"]
    auth = {"identity": {"methods": ["token"], "token": {"id": unscoped}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}
    r = api.post(f"{V3}/auth/tokens", json={"auth": auth})
    assert r.status_code == 201
    body = r.json()["token"]
    assert body["project"]["name"] == "admin" and "token" in body["methods"]
    assert len(body["audit_ids"]) == 2
    assert api.token(project=None, domain="default")
    system = api.token(project=None, system=True)
    r = api.get(f"{V3}/auth/system", system)
    assert r.json()["system"] == [{"all": True}]


def test_restart_keeps_users_and_tokens(api: Api, admin_token: str) -> None:
    user, project = user_with_role(api, admin_token, "member")
    token = api.token("u1", "pw-u1", project["name"])
    settings = api.cloud.settings
    api.cloud.close()
    again = Api(make_cloud(settings.data_dir, settings.db))
    r = again.get(f"{V3}/auth/tokens", token, headers={"X-Subject-Token": token})
    assert r.status_code == 200 and r.json()["token"]["user"]["id"] == user["id"]
    again.client.close()
    again.cloud.close()


def test_list_filters_tolerate_literal_none(api: Api, admin_token: str) -> None:
    create(api, admin_token, "project", name="ensiie", description="École ENSIIE")
    r = api.get(f"{V3}/projects?domain_id=None&name=ensiie", admin_token)
    assert [p["description"] for p in r.json()["projects"]] == ["École ENSIIE"]
    r = api.get(f"{V3}/users?enabled=false", admin_token)
    assert r.json()["users"] == []
