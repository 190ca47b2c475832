"""In-process identity API tests (both databases): tokens, errors, and the request plumbing."""

from __future__ import annotations

from conftest import Api


def test_version_discovery(api: Api) -> None:
    r = api.get("/identity")
    assert r.status_code == 300
    assert r.json()["versions"]["values"][0]["id"].startswith("v3")
    assert r.headers["x-openstack-request-id"].startswith("req-")
    r = api.get("/identity/v3")
    assert r.status_code == 200 and r.json()["version"]["status"] == "stable"


def test_password_token_and_validation(api: Api, admin_token: str) -> None:
    r = api.get("/identity/v3/auth/tokens", admin_token,
                headers={"X-Subject-Token": admin_token})
    assert r.status_code == 200
    token = r.json()["token"]
    assert token["project"]["name"] == "admin"
    assert {"admin", "member", "reader"} <= {x["name"] for x in token["roles"]}
    assert "identity" in {s["type"] for s in token["catalog"]}


def test_wrong_password_is_401_with_www_authenticate(api: Api) -> None:
    auth = {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": "wrong"}}}}
    r = api.post("/identity/v3/auth/tokens", json={"auth": auth})
    assert r.status_code == 401
    assert r.json()["error"] == {"code": 401, "title": "Unauthorized",
                                 "message": "The request you have made requires authentication."}
    assert r.headers["www-authenticate"].startswith("Keystone uri=")


def test_malformed_json_is_400(api: Api, admin_token: str) -> None:
    r = api.post("/identity/v3/projects", admin_token, content=b"{not json",
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["title"] == "Bad Request"


def test_healthz(api: Api) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
