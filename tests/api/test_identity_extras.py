"""In-process identity API tests (both databases): credentials and OS-EC2, policies, OAuth1
consumers, endpoint groups, domain configuration, application credentials, access rules and
trusts."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import Api

V3 = "/identity/v3"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _role_id(api: Api, token: str, name: str) -> str:
    r = api.get(f"{V3}/roles?name={name}", token)
    return str(r.json()["roles"][0]["id"])


def _project(api: Api, token: str) -> dict[str, Any]:
    r = api.post(f"{V3}/projects", token, json={"project": {"name": _name("p")}})
    assert r.status_code == 201, r.text
    return dict(r.json()["project"])


def _user(api: Api, token: str, project: dict[str, Any] | None = None,
          roles: tuple[str, ...] = ("member",)) -> tuple[str, str, str]:
    """A new user with `roles` on `project`; returns (id, name, password)."""
    name, password = _name("u"), uuid.uuid4().hex
    r = api.post(f"{V3}/users", token, json={"user": {"name": name, "password": password}})
    assert r.status_code == 201, r.text
    user_id = r.json()["user"]["id"]
    for role in roles if project else ():
        assert project is not None
        r = api.request("PUT", f"{V3}/projects/{project['id']}/users/{user_id}/roles/"
                        f"{_role_id(api, token, role)}", token)
        assert r.status_code == 204, r.text
    return user_id, name, password


def _auth(api: Api, auth: dict[str, Any]) -> Any:
    return api.post(f"{V3}/auth/tokens", json={"auth": auth})


# -- credentials and OS-EC2 -------------------------------------------------------------------
def test_credentials_crud_and_ec2_id(api: Api, admin_token: str) -> None:
    project = _project(api, admin_token)
    user_id, name, password = _user(api, admin_token, project)
    blob = json.dumps({"access": "AK1", "secret": "S1"})
    r = api.post(f"{V3}/credentials", admin_token, json={"credential": {
        "type": "ec2", "user_id": user_id, "project_id": project["id"], "blob": blob}})
    assert r.status_code == 201, r.text
    cred = r.json()["credential"]
    assert cred["id"] == hashlib.sha256(b"AK1").hexdigest()
    assert json.loads(cred["blob"]) == {"access": "AK1", "secret": "S1"}
    assert cred["links"]["self"].endswith(f"/v3/credentials/{cred['id']}")

    new_blob = json.dumps({"access": "AK1", "secret": "S2"})
    r = api.request("PATCH", f"{V3}/credentials/{cred['id']}", admin_token,
                    json={"credential": {"blob": new_blob}})
    assert r.status_code == 200 and json.loads(r.json()["credential"]["blob"])["secret"] == "S2"
    r = api.get(f"{V3}/credentials/{cred['id']}", admin_token)
    assert r.json()["credential"]["project_id"] == project["id"]

    # the owner sees it; another user does not, and may not read it
    _, other_name, other_password = _user(api, admin_token, project)
    other_token = api.token(other_name, other_password, project["name"])
    owner_token = api.token(name, password, project["name"])
    assert [c["id"] for c in api.get(f"{V3}/credentials", owner_token).json()["credentials"]] \
        == [cred["id"]]
    assert api.get(f"{V3}/credentials", other_token).json()["credentials"] == []
    assert api.get(f"{V3}/credentials/{cred['id']}", other_token).status_code == 403
    listed = api.get(f"{V3}/credentials?user_id={user_id}&type=ec2", admin_token).json()
    assert [c["id"] for c in listed["credentials"]] == [cred["id"]]

    r = api.post(f"{V3}/credentials", admin_token, json={"credential": {
        "type": "ec2", "user_id": user_id, "project_id": project["id"], "blob": blob}})
    assert r.status_code == 409
    assert api.request("DELETE", f"{V3}/credentials/{cred['id']}", admin_token).status_code == 204
    assert api.get(f"{V3}/credentials/{cred['id']}", admin_token).status_code == 404


def test_credential_bad_input_names_the_field(api: Api, admin_token: str) -> None:
    r = api.post(f"{V3}/credentials", admin_token,
                 json={"credential": {"type": "cert", "blob": "x"}})
    assert r.status_code == 400 and "user_id" in r.json()["error"]["message"]
    r = api.post(f"{V3}/credentials", admin_token, json={"credential": {
        "type": "ec2", "user_id": "u", "project_id": "p", "blob": "not json"}})
    assert r.status_code == 400 and "blob" in r.json()["error"]["message"]


def test_ec2_credentials(api: Api, admin_token: str) -> None:
    project = _project(api, admin_token)
    user_id, name, password = _user(api, admin_token, project)
    token = api.token(name, password, project["name"])
    base = f"{V3}/users/{user_id}/credentials/OS-EC2"
    r = api.post(base, token, json={"tenant_id": project["id"]})
    assert r.status_code == 201, r.text
    ec2 = r.json()["credential"]
    assert ec2["user_id"] == user_id and ec2["tenant_id"] == project["id"]
    assert ec2["access"] and ec2["secret"] and ec2["trust_id"] is None
    assert ec2["links"]["self"].endswith(f"/OS-EC2/{ec2['access']}")
    assert [c["access"] for c in api.get(base, token).json()["credentials"]] == [ec2["access"]]
    shown = api.get(f"{base}/{ec2['access']}", token).json()["credential"]
    assert shown == ec2
    # it is a credential of type ec2 in the generic API too
    creds = api.get(f"{V3}/credentials?type=ec2", token).json()["credentials"]
    assert [json.loads(c["blob"])["access"] for c in creds] == [ec2["access"]]
    assert api.request("DELETE", f"{base}/{ec2['access']}", token).status_code == 204
    assert api.get(f"{base}/{ec2['access']}", token).status_code == 404
    assert api.post(base, token, json={}).status_code == 400


# -- policies, consumers, endpoint groups ------------------------------------------------------
def test_policies_crud_and_admin_only(api: Api, admin_token: str) -> None:
    r = api.post(f"{V3}/policies", admin_token, json={"policy": {"blob": "{}", "type": "t1"}})
    assert r.status_code == 201, r.text
    policy = r.json()["policy"]
    r = api.request("PATCH", f"{V3}/policies/{policy['id']}", admin_token,
                    json={"policy": {"type": "t2"}})
    assert r.json()["policy"] == {**policy, "type": "t2"}
    listed = api.get(f"{V3}/policies", admin_token).json()["policies"]
    assert policy["id"] in [p["id"] for p in listed]
    project = _project(api, admin_token)
    _, name, password = _user(api, admin_token, project)
    member = api.token(name, password, project["name"])
    assert api.get(f"{V3}/policies", member).status_code == 403
    r = api.post(f"{V3}/policies", admin_token, json={"policy": {"blob": "x"}})
    assert r.status_code == 400 and "type" in r.json()["error"]["message"]
    assert api.request("DELETE", f"{V3}/policies/{policy['id']}", admin_token).status_code == 204
    assert api.get(f"{V3}/policies/{policy['id']}", admin_token).status_code == 404


def test_oauth1_consumers(api: Api, admin_token: str) -> None:
    base = f"{V3}/OS-OAUTH1/consumers"
    r = api.post(base, admin_token, json={"consumer": {"description": "d1"}})
    assert r.status_code == 201
    consumer = r.json()["consumer"]
    assert consumer["secret"] and consumer["description"] == "d1"
    shown = api.get(f"{base}/{consumer['id']}", admin_token).json()["consumer"]
    assert "secret" not in shown and shown["links"] == consumer["links"]
    r = api.request("PATCH", f"{base}/{consumer['id']}", admin_token,
                    json={"consumer": {"description": "d2"}})
    assert r.json()["consumer"]["description"] == "d2"
    r = api.request("PATCH", f"{base}/{consumer['id']}", admin_token,
                    json={"consumer": {"secret": "mine"}})
    assert r.status_code == 400
    assert [c["id"] for c in api.get(base, admin_token).json()["consumers"]] == [consumer["id"]]
    assert api.request("DELETE", f"{base}/{consumer['id']}", admin_token).status_code == 204
    assert api.get(f"{base}/{consumer['id']}", admin_token).status_code == 404


def test_endpoint_groups_and_projects(api: Api, admin_token: str) -> None:
    base = f"{V3}/OS-EP-FILTER/endpoint_groups"
    identity = api.get(f"{V3}/services?type=identity", admin_token).json()["services"][0]
    r = api.post(base, admin_token, json={"endpoint_group": {
        "name": "g1", "description": "d", "filters": {"service_id": identity["id"]}}})
    assert r.status_code == 201, r.text
    group = r.json()["endpoint_group"]
    assert api.get(base, admin_token).json()["endpoint_groups"] == [group]
    assert api.request("HEAD", f"{base}/{group['id']}", admin_token).status_code == 200
    endpoints = api.get(f"{base}/{group['id']}/endpoints", admin_token).json()["endpoints"]
    assert endpoints and {e["service_id"] for e in endpoints} == {identity["id"]}
    r = api.request("PATCH", f"{base}/{group['id']}", admin_token,
                    json={"endpoint_group": {"name": "g2", "filters": {"interface": "public"}}})
    assert r.json()["endpoint_group"]["filters"] == {"interface": "public"}
    for bad in ({"enabled": True}, {"interface": "private"}, {}):
        r = api.request("PATCH", f"{base}/{group['id']}", admin_token,
                        json={"endpoint_group": {"filters": bad}})
        assert r.status_code == 400 and "filters" in r.json()["error"]["message"]

    project = _project(api, admin_token)
    assoc = f"{base}/{group['id']}/projects/{project['id']}"
    assert api.get(assoc, admin_token).status_code == 404
    assert api.request("PUT", assoc, admin_token).status_code == 204
    shown = api.get(assoc, admin_token).json()["project_endpoint_group"]
    assert shown["project_id"] == project["id"]
    assert [p["id"] for p in api.get(f"{base}/{group['id']}/projects", admin_token).json()[
        "projects"]] == [project["id"]]
    listed = api.get(f"{V3}/OS-EP-FILTER/projects/{project['id']}/endpoint_groups", admin_token)
    assert [g["id"] for g in listed.json()["endpoint_groups"]] == [group["id"]]
    assert api.request("DELETE", assoc, admin_token).status_code == 204
    assert api.request("DELETE", f"{base}/{group['id']}", admin_token).status_code == 204
    assert api.get(base, admin_token).json()["endpoint_groups"] == []


# -- domain configuration -------------------------------------------------------------------
def test_domain_config_lifecycle(api: Api, admin_token: str) -> None:
    r = api.post(f"{V3}/domains", admin_token, json={"domain": {"name": _name("d")}})
    base = f"{V3}/domains/{r.json()['domain']['id']}/config"
    assert api.get(base, admin_token).status_code == 404
    config = {"identity": {"driver": "ldap"},
              "ldap": {"url": "ldap://x", "user_tree_dn": "ou=U", "password": "secret"}}
    r = api.request("PUT", base, admin_token, json={"config": config})
    assert r.status_code == 201, r.text
    shown = {"identity": {"driver": "ldap"}, "ldap": {"url": "ldap://x", "user_tree_dn": "ou=U"}}
    assert r.json()["config"] == shown  # the password is kept, never shown
    assert api.request("PUT", base, admin_token, json={"config": config}).status_code == 200
    assert api.get(f"{base}/ldap", admin_token).json()["config"] == {"ldap": shown["ldap"]}
    assert api.get(f"{base}/ldap/url", admin_token).json()["config"] == {"url": "ldap://x"}
    assert api.get(f"{base}/ldap/password", admin_token).status_code == 404

    r = api.request("PATCH", f"{base}/identity", admin_token,
                    json={"config": {"identity": {"driver": "sql", "list_limit": 5}}})
    assert r.json()["config"]["identity"] == {"driver": "sql", "list_limit": 5}
    r = api.request("PATCH", f"{base}/ldap/url", admin_token, json={"config": {"url": "ldap://y"}})
    assert r.json()["config"]["ldap"]["url"] == "ldap://y"
    r = api.request("PATCH", f"{base}/ldap/suffix", admin_token, json={"config": {"suffix": "s"}})
    assert r.status_code == 404  # a path update changes only what is already set

    # only identity and ldap, and only their known options, may be set (Keystone: 403)
    for bad in ({"nova": {"x": 1}}, {"ldap": {"colour": "red"}}, {}):
        assert api.request("PATCH", base, admin_token, json={"config": bad}).status_code == 403
    assert api.request("PATCH", f"{base}/identity", admin_token,
                       json={"config": {"ldap": {"url": "u"}}}).status_code == 403

    assert api.request("DELETE", f"{base}/identity/driver", admin_token).status_code == 204
    assert api.get(f"{base}/identity/driver", admin_token).status_code == 404
    assert api.request("DELETE", f"{base}/identity", admin_token).status_code == 204
    assert api.get(f"{base}/identity", admin_token).status_code == 404
    assert api.request("DELETE", base, admin_token).status_code == 204
    assert api.get(base, admin_token).status_code == 404


def test_domain_config_defaults(api: Api, admin_token: str) -> None:
    config = api.get(f"{V3}/domains/config/default", admin_token).json()["config"]
    assert set(config) == {"identity", "ldap"} and config["identity"]["driver"] == "sql"
    r = api.get(f"{V3}/domains/config/ldap/default", admin_token)
    assert r.json()["config"]["ldap"]["url"] == "ldap://localhost"
    r = api.get(f"{V3}/domains/config/identity/list_limit/default", admin_token)
    assert r.json()["config"] == {"list_limit": None}
    assert api.get(f"{V3}/domains/config/nova/default", admin_token).status_code == 403
    assert api.get(f"{V3}/domains/config/ldap/password/default", admin_token).status_code == 403


# -- application credentials and access rules ------------------------------------------------
def test_application_credential_lifecycle(api: Api, admin_token: str) -> None:
    project = _project(api, admin_token)
    user_id, name, password = _user(api, admin_token, project, roles=("member", "admin"))
    token = api.token(name, password, project["name"])
    base = f"{V3}/users/{user_id}/application_credentials"
    expires = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None, microsecond=123456)
    r = api.post(base, token, json={"application_credential": {
        "name": "ci", "roles": [{"name": "member"}], "expires_at": expires.isoformat()}})
    assert r.status_code == 201, r.text
    cred = r.json()["application_credential"]
    assert cred["expires_at"] == expires.isoformat()
    assert cred["project_id"] == project["id"] and cred["unrestricted"] is False
    assert {x["name"] for x in cred["roles"]} == {"member", "reader"}  # what member implies
    shown = api.get(f"{base}/{cred['id']}", token).json()["application_credential"]
    assert "secret" not in shown and shown["name"] == "ci"

    # it authenticates, scoped to its project with only its roles
    r = _auth(api, {"identity": {"methods": ["application_credential"], "application_credential": {
        "id": cred["id"], "secret": cred["secret"]}}})
    assert r.status_code == 201, r.text
    assert r.json()["token"]["project"]["id"] == project["id"]
    assert {x["name"] for x in r.json()["token"]["roles"]} == {"member", "reader"}
    app_token = r.headers["X-Subject-Token"]
    # a restricted application credential cannot make more of itself
    r = api.post(base, app_token, json={"application_credential": {"name": "more"}})
    assert r.status_code == 403

    assert api.post(base, token, json={"application_credential": {"name": "ci"}}).status_code == 409
    r = api.post(base, token, json={"application_credential": {"name": "all", "secret": "s3"}})
    assert r.json()["application_credential"]["secret"] == "s3"
    assert {x["name"] for x in r.json()["application_credential"]["roles"]} == {
        "admin", "member", "reader"}  # by default: the token's roles
    assert [c["name"] for c in api.get(base, token).json()["application_credentials"]] == [
        "all", "ci"]
    assert [c["name"] for c in api.get(f"{base}?name=ci", token).json()[
        "application_credentials"]] == ["ci"]

    assert api.request("DELETE", f"{base}/{cred['id']}", token).status_code == 204
    assert api.get(f"{V3}/auth/tokens", app_token,
                   headers={"X-Subject-Token": app_token}).status_code == 401
    assert api.get(f"{base}/{cred['id']}", token).status_code == 404


def test_application_credential_refusals(api: Api, admin_token: str) -> None:
    project = _project(api, admin_token)
    user_id, name, password = _user(api, admin_token, project)
    token = api.token(name, password, project["name"])
    base = f"{V3}/users/{user_id}/application_credentials"
    r = api.post(base, token, json={"application_credential": {
        "name": "x", "roles": [{"name": "admin"}]}})
    assert r.status_code == 400 and "unassigned role" in r.json()["error"]["message"]
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    r = api.post(base, token, json={"application_credential": {"name": "x", "expires_at": past}})
    assert r.status_code == 400 and "expires_at" in r.json()["error"]["message"]
    r = api.post(base, token, json={"application_credential": {"name": "x", "colour": "red"}})
    assert r.status_code == 400 and "colour" in r.json()["error"]["message"]
    # only for oneself, and another user cannot read them
    _, other_name, other_pw = _user(api, admin_token, project)
    other = api.token(other_name, other_pw, project["name"])
    assert api.post(base, other, json={"application_credential": {"name": "x"}}).status_code == 403
    assert api.get(base, other).status_code == 403
    assert api.get(base, admin_token).status_code == 200


def test_access_rules(api: Api, admin_token: str) -> None:
    project = _project(api, admin_token)
    user_id, name, password = _user(api, admin_token, project)
    token = api.token(name, password, project["name"])
    rule = {"service": "compute", "path": "/v2.1/servers/*/ips", "method": "GET"}
    creds = f"{V3}/users/{user_id}/application_credentials"
    r = api.post(creds, token, json={"application_credential": {
        "name": "a", "access_rules": [rule]}})
    assert r.status_code == 201, r.text
    cred = r.json()["application_credential"]
    rule_id = cred["access_rules"][0]["id"]
    assert cred["access_rules"] == [{**rule, "id": rule_id}]
    # an identical rule is shared, not duplicated
    r = api.post(creds, token, json={"application_credential": {
        "name": "b", "access_rules": [rule]}})
    assert r.json()["application_credential"]["access_rules"][0]["id"] == rule_id
    base = f"{V3}/users/{user_id}/access_rules"
    assert [x["id"] for x in api.get(base, token).json()["access_rules"]] == [rule_id]
    assert api.get(f"{base}/{rule_id}", token).json()["access_rule"]["service"] == "compute"
    assert api.request("DELETE", f"{base}/{rule_id}", token).status_code == 403  # in use
    for c in api.get(creds, token).json()["application_credentials"]:
        assert api.request("DELETE", f"{creds}/{c['id']}", token).status_code == 204
    assert api.request("DELETE", f"{base}/{rule_id}", token).status_code == 204
    assert api.get(base, token).json()["access_rules"] == []
    bad = {**rule, "method": "FETCH"}
    r = api.post(creds, token, json={"application_credential": {
        "name": "c", "access_rules": [bad]}})
    assert r.status_code == 400 and "method" in r.json()["error"]["message"]


# -- trusts -------------------------------------------------------------------------------------
def _trust_setup(api: Api, admin_token: str) -> dict[str, Any]:
    project = _project(api, admin_token)
    delegated = api.post(f"{V3}/roles", admin_token, json={"role": {"name": _name("del")}})
    kept = api.post(f"{V3}/roles", admin_token, json={"role": {"name": _name("kept")}})
    delegated_role, kept_role = delegated.json()["role"], kept.json()["role"]
    trustor_id, trustor_name, trustor_pw = _user(api, admin_token, project,
                                                 roles=(delegated_role["name"], kept_role["name"]))
    trustee_id, trustee_name, trustee_pw = _user(api, admin_token)
    return {
        "project": project, "delegated": delegated_role, "kept": kept_role,
        "trustor_id": trustor_id, "trustee_id": trustee_id,
        "trustor": api.token(trustor_name, trustor_pw, project["name"]),
        "trustee_auth": {"methods": ["password"], "password": {"user": {
            "name": trustee_name, "domain": {"id": "default"}, "password": trustee_pw}}},
    }


def test_trust_lifecycle_and_trust_tokens(api: Api, admin_token: str) -> None:
    s = _trust_setup(api, admin_token)
    expires = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None, microsecond=0)
    r = api.post(f"{V3}/OS-TRUST/trusts", s["trustor"], json={"trust": {
        "trustor_user_id": s["trustor_id"], "trustee_user_id": s["trustee_id"],
        "project_id": s["project"]["id"], "impersonation": False,
        "roles": [{"name": s["delegated"]["name"]}], "expires_at": expires.isoformat() + "Z",
        "remaining_uses": 2}})
    assert r.status_code == 201, r.text
    trust = r.json()["trust"]
    assert trust["expires_at"] == expires.isoformat() + ".000000Z"
    assert [x["id"] for x in trust["roles"]] == [s["delegated"]["id"]]
    assert "/v3/OS-TRUST/trusts/" in trust["links"]["self"]
    base = f"{V3}/OS-TRUST/trusts/{trust['id']}"
    assert api.get(base, s["trustor"]).json()["trust"] == trust
    roles = api.get(f"{base}/roles", s["trustor"]).json()["roles"]
    assert [x["id"] for x in roles] == [s["delegated"]["id"]]
    assert api.request("HEAD", f"{base}/roles/{s['delegated']['id']}", s["trustor"]).status_code \
        == 200
    assert api.get(f"{base}/roles/{s['kept']['id']}", s["trustor"]).status_code == 404

    listed = api.get(f"{V3}/OS-TRUST/trusts/?trustor_user_id={s['trustor_id']}", s["trustor"])
    assert [t["id"] for t in listed.json()["trusts"]] == [trust["id"]]
    assert "roles" not in listed.json()["trusts"][0]
    assert api.get(f"{V3}/OS-TRUST/trusts", s["trustor"]).status_code == 403  # all: admins only
    assert trust["id"] in [t["id"] for t in api.get(f"{V3}/OS-TRUST/trusts", admin_token).json()[
        "trusts"]]

    # the trustee gets a token with only the delegated role, twice, and no more
    auth = {"identity": s["trustee_auth"], "scope": {"OS-TRUST:trust": {"id": trust["id"]}}}
    r = _auth(api, auth)
    assert r.status_code == 201, r.text
    assert [x["id"] for x in r.json()["token"]["roles"]] == [s["delegated"]["id"]]
    trust_token = r.headers["X-Subject-Token"]
    assert _auth(api, auth).status_code == 201
    assert _auth(api, auth).status_code == 404
    assert api.get(base, s["trustor"]).status_code == 404  # used up

    assert api.request("DELETE", base, s["trustor"]).status_code == 404
    assert api.get(f"{V3}/auth/tokens", admin_token,
                   headers={"X-Subject-Token": trust_token}).status_code == 200


def test_trust_delete_ends_its_tokens(api: Api, admin_token: str) -> None:
    s = _trust_setup(api, admin_token)
    r = api.post(f"{V3}/OS-TRUST/trusts", s["trustor"], json={"trust": {
        "trustor_user_id": s["trustor_id"], "trustee_user_id": s["trustee_id"],
        "project_id": s["project"]["id"], "impersonation": True,
        "roles": [{"id": s["delegated"]["id"]}]}})
    assert r.status_code == 201, r.text
    trust = r.json()["trust"]
    assert trust["expires_at"] is None and trust["impersonation"] is True
    r = _auth(api, {"identity": s["trustee_auth"],
                    "scope": {"OS-TRUST:trust": {"id": trust["id"]}}})
    trust_token = r.headers["X-Subject-Token"]
    # a trust token cannot make trusts or application credentials of its own
    r = api.post(f"{V3}/OS-TRUST/trusts", trust_token, json={"trust": {
        "trustor_user_id": s["trustee_id"], "trustee_user_id": s["trustor_id"],
        "impersonation": False}})
    assert r.status_code == 403
    r = api.post(f"{V3}/users/{s['trustee_id']}/application_credentials", trust_token,
                 json={"application_credential": {"name": "x"}})
    assert r.status_code == 403

    base = f"{V3}/OS-TRUST/trusts/{trust['id']}"
    assert api.request("DELETE", base, s["trustor"]).status_code == 204
    assert api.get(base, s["trustor"]).status_code == 404
    assert api.get(f"{V3}/auth/tokens", admin_token,
                   headers={"X-Subject-Token": trust_token}).status_code == 404


def test_trust_refusals(api: Api, admin_token: str) -> None:
    s = _trust_setup(api, admin_token)

    def create(token: str, **changes: Any) -> Any:
        trust = {"trustor_user_id": s["trustor_id"], "trustee_user_id": s["trustee_id"],
                 "project_id": s["project"]["id"], "impersonation": False,
                 "roles": [{"id": s["delegated"]["id"]}], **changes}
        return api.post(f"{V3}/OS-TRUST/trusts", token, json={"trust": trust})

    assert create(s["trustor"], expires_at="bad.123Z").status_code == 400
    assert create(s["trustor"], remaining_uses=0).status_code == 400
    assert create(s["trustor"], impersonation="yes").status_code == 400
    assert create(admin_token).status_code == 403  # only the trustor delegates
    assert create(s["trustor"], roles=[{"name": "admin"}]).status_code == 404  # not held
    assert create(s["trustor"], roles=[]).status_code == 403
    assert create(s["trustor"], trustee_user_id="nobody").status_code == 404
