"""Shared fixtures: a picocloud `Cloud` on SQLite or a throwaway PostgreSQL, an in-process
client, and admin tokens. API tests run against both databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from picocloud.app import build_app
from picocloud.cloud import Cloud
from picocloud.identity.bootstrap import admin_password, bootstrap
from picocloud.settings import Settings
from webserver import web  # noqa: F401  (the loopback web server fixture, for every test)

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    url = os.environ.get("PICOCLOUD_TEST_PG_URL")
    if url:
        yield url
        return
    from pgcluster import ThrowawayPostgres

    with ThrowawayPostgres() as pg:
        yield pg.url


def make_cloud(tmp: Path, db_url: str = "", **overrides: Any) -> Cloud:
    settings = Settings(
        data_dir=tmp,
        port=8780,
        db=db_url,
        password_hash_rounds=4,
        write_user_clouds_yaml=False,
        **overrides,
    )
    cloud = Cloud(settings)
    with cloud.session() as db:
        bootstrap(db, settings)
    return cloud


def backend_cloud(request: pytest.FixtureRequest, tmp: Path, **overrides: Any) -> Cloud:
    """A cloud on the database the fixture's parameter names: SQLite in `tmp`, or a new
    database in the throwaway PostgreSQL cluster."""
    db_url = ""
    if request.param == "postgresql":
        from pgcluster import create_database

        cluster = request.getfixturevalue("pg_cluster")
        db_url = create_database(cluster, "t_" + uuid.uuid4().hex[:12])
    return make_cloud(tmp, db_url, **overrides)


@pytest.fixture(params=BACKENDS)
def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cloud]:
    c = backend_cloud(request, tmp_path)
    yield c
    c.close()


class Api:
    """An in-process client bound to one cloud, with helpers to get tokens."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.client = TestClient(build_app(cloud), base_url="http://127.0.0.1:8780")

    def request(self, method: str, path: str, token: str | None = None,
                **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if token:
            headers["X-Auth-Token"] = token
        return self.client.request(method, path, headers=headers, **kw)

    def get(self, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        return self.request("GET", path, token, **kw)

    def post(self, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        return self.request("POST", path, token, **kw)

    def member(self, admin: str, name: str, role: str = "member",
               project_id: str | None = None) -> tuple[str, str, str]:
        """A new user `name` (password "pw") holding `role` in a new project `name` (or in
        `project_id`): (its token, the project id, the user id)."""
        v3 = "/identity/v3"
        if project_id is None:
            project = self.post(f"{v3}/projects", admin,
                                json={"project": {"name": name}}).json()["project"]
        else:
            project = self.get(f"{v3}/projects/{project_id}", admin).json()["project"]
        user = self.post(f"{v3}/users", admin,
                         json={"user": {"name": name, "password": "pw"}}).json()["user"]
        role_id = self.get(f"{v3}/roles?name={role}", admin).json()["roles"][0]["id"]
        r = self.request("PUT", f"{v3}/projects/{project['id']}/users/{user['id']}/roles/"
                         f"{role_id}", admin)
        assert r.status_code == 204, r.text
        return self.token(name, "pw", project["name"]), str(project["id"]), str(user["id"])

    def token(self, user: str = "admin", password: str | None = None,
                    project: str | None = "admin", domain: str | None = None,
                    system: bool = False) -> str:
        password = password or admin_password(self.cloud.settings)
        auth: dict[str, Any] = {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": password}}},
        }
        if project:
            auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
        elif domain:
            auth["scope"] = {"domain": {"id": domain}}
        elif system:
            auth["scope"] = {"system": {"all": True}}
        else:
            auth["scope"] = "unscoped"
        r = self.request("POST", "/identity/v3/auth/tokens", json={"auth": auth})
        assert r.status_code == 201, r.text
        return r.headers["X-Subject-Token"]


@pytest.fixture
def api(cloud: Cloud) -> Iterator[Api]:
    client = Api(cloud)
    yield client
    client.client.close()


@pytest.fixture
def admin_token(api: Api) -> str:
    return api.token()
