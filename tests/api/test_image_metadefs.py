"""In-process tests of the image metadata definitions API (both databases): namespaces and
their objects, properties, tags and resource types; visibility, protection and policy."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import Api

V2 = "/image/v2"
NS = f"{V2}/metadefs/namespaces"


def create_ns(api: Api, token: str, name: str, **body: Any) -> dict[str, Any]:
    r = api.post(NS, token, json={"namespace": name, **body})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_resource_types_are_seeded(api: Api, admin_token: str) -> None:
    r = api.get(f"{V2}/metadefs/resource_types", admin_token)
    assert r.status_code == 200
    names = [t["name"] for t in r.json()["resource_types"]]
    assert names[0] == "OS::Glance::Image"
    assert {"OS::Cinder::Volume", "OS::Nova::Flavor", "OS::Nova::Server",
            "OS::Nova::Aggregate"} <= set(names)


def test_namespace_lifecycle(api: Api, admin_token: str) -> None:
    created = create_ns(
        api, admin_token, "OS::Compute::Hypervisor", display_name="Hypervisor", visibility="public",
        protected=True, description="Pick a hypervisor",
        resource_type_associations=[{"name": "OS::Glance::Image", "prefix": "hw_"}],
        properties={"type": {"title": "Type", "type": "string", "enum": ["kvm", "qemu"]}},
        objects=[{"name": "CPU", "properties": {"cores": {"title": "Cores", "type": "integer"}},
                  "required": ["cores"]}],
        tags=[{"name": "fast"}],
    )
    assert created["self"] == "/v2/metadefs/namespaces/OS::Compute::Hypervisor"
    assert created["visibility"] == "public" and created["protected"] is True
    assert created["owner"]
    shown = api.get(f"{NS}/OS::Compute::Hypervisor", admin_token).json()
    assert shown["properties"]["type"]["enum"] == ["kvm", "qemu"]
    assert shown["objects"][0]["name"] == "CPU"
    assert shown["tags"] == [{"name": "fast"}]
    assert shown["resource_type_associations"][0]["prefix"] == "hw_"
    # viewed as applied to images, property names carry the association's prefix
    r = api.get(f"{NS}/OS::Compute::Hypervisor?resource_type=OS::Glance::Image", admin_token)
    assert set(r.json()["properties"]) == {"hw_type"}
    assert r.json()["objects"][0]["required"] == ["hw_cores"]
    r = api.get(f"{NS}/OS::Compute::Hypervisor/properties/hw_type"
                "?resource_type=OS::Glance::Image", admin_token)
    assert r.status_code == 200 and r.json()["name"] == "hw_type"

    listed = api.get(NS, admin_token).json()
    assert listed["schema"] == "/v2/schemas/metadefs/namespaces"
    assert "OS::Compute::Hypervisor" in [n["namespace"] for n in listed["namespaces"]]
    r = api.get(f"{NS}?resource_types=OS::Nova::Flavor", admin_token)
    assert "OS::Compute::Hypervisor" not in [n["namespace"] for n in r.json()["namespaces"]]

    # protected: neither it nor its contents can be deleted
    assert api.request("DELETE", f"{NS}/OS::Compute::Hypervisor", admin_token).status_code == 403
    assert api.request("DELETE", f"{NS}/OS::Compute::Hypervisor/tags",
                       admin_token).status_code == 403
    r = api.request("PUT", f"{NS}/OS::Compute::Hypervisor", admin_token,
                    json={"namespace": "OS::Compute::Hyper", "visibility": "private",
                          "protected": False})
    assert r.status_code == 200, r.text
    assert r.json()["visibility"] == "private" and r.json()["protected"] is False
    assert "display_name" not in r.json()  # PUT replaces: omitted attributes are cleared
    assert api.get(f"{NS}/OS::Compute::Hypervisor", admin_token).status_code == 404
    # renaming keeps the contents
    assert api.get(f"{NS}/OS::Compute::Hyper/objects/CPU", admin_token).status_code == 200
    assert api.request("DELETE", f"{NS}/OS::Compute::Hyper", admin_token).status_code == 204
    assert api.get(f"{NS}/OS::Compute::Hyper", admin_token).status_code == 404
    assert api.get(f"{NS}/OS::Compute::Hyper/tags", admin_token).status_code == 404


def test_bad_namespaces_are_refused(api: Api, admin_token: str) -> None:
    create_ns(api, admin_token, "dup")
    assert api.post(NS, admin_token, json={"namespace": "dup"}).status_code == 409
    for body, status in [
        ({}, 400),
        ({"namespace": "x" * 81}, 400),
        ({"namespace": "n", "visibility": "shared"}, 400),
        ({"namespace": "n", "bogus": 1}, 400),
        ({"namespace": "n", "self": "/x"}, 403),
        ({"namespace": "n", "properties": {"p": {"type": "string"}}}, 400),  # no title
        ({"namespace": "n", "properties": {"p": {"title": "P", "type": "str"}}}, 400),
    ]:
        r = api.post(NS, admin_token, json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["code"].startswith(str(status))
    # nothing half-created by a refused request
    assert api.get(f"{NS}/n", admin_token).status_code == 404
    assert api.get(f"{NS}?visibility=shared", admin_token).status_code == 400
    assert api.get(f"{NS}?sort_key=bogus", admin_token).status_code == 400
    assert api.get(f"{NS}?limit=x", admin_token).status_code == 400


def test_objects_crud(api: Api, admin_token: str) -> None:
    create_ns(api, admin_token, "objs")
    base = f"{NS}/objs/objects"
    r = api.post(base, admin_token, json={"name": "CPU Limits", "description": "limits",
                                         "properties": {"quota:cpu": {"title": "Q",
                                                                      "type": "integer"}}})
    assert r.status_code == 201, r.text
    assert r.json()["self"] == "/v2/metadefs/namespaces/objs/objects/CPU Limits"
    assert api.post(base, admin_token, json={"name": "CPU Limits"}).status_code == 409
    assert api.post(base, admin_token, json={"name": "x", "created_at": "now"}).status_code == 403
    assert api.get(f"{base}/CPU Limits", admin_token).json()["description"] == "limits"
    r = api.request("PUT", f"{base}/CPU Limits", admin_token, json={"name": "Renamed"})
    assert r.status_code == 200 and r.json()["name"] == "Renamed"
    assert "description" not in r.json()
    listed = api.get(base, admin_token).json()
    assert [o["name"] for o in listed["objects"]] == ["Renamed"]
    assert api.request("DELETE", f"{base}/Renamed", admin_token).status_code == 204
    assert api.get(f"{base}/Renamed", admin_token).status_code == 404
    assert api.request("DELETE", f"{base}/Renamed", admin_token).status_code == 404


def test_properties_crud(api: Api, admin_token: str) -> None:
    create_ns(api, admin_token, "props")
    base = f"{NS}/props/properties"
    body = {"name": "OS::Glance::Image", "title": "T", "type": "string", "enum": ["a", "b"]}
    r = api.post(base, admin_token, json=body)
    assert r.status_code == 201, r.text
    assert r.json() == body
    assert api.post(base, admin_token, json=body).status_code == 409
    assert api.post(base, admin_token, json={**body, "name": "n", "x": 1}).status_code == 400
    assert api.post(base, admin_token, json={"title": "T", "type": "string"}).status_code == 400
    r = api.get(f"{base}/OS::Glance::Image", admin_token)
    assert r.status_code == 200 and r.json()["name"] == "OS::Glance::Image"
    r = api.request("PUT", f"{base}/OS::Glance::Image", admin_token,
                    json={**body, "title": "New", "maximum": 3})
    assert r.status_code == 200 and r.json()["title"] == "New" and r.json()["maximum"] == 3
    listed = api.get(base, admin_token).json()["properties"]
    assert listed == {"OS::Glance::Image": {"title": "New", "type": "string", "enum": ["a", "b"],
                                            "maximum": 3}}
    assert api.request("DELETE", f"{base}/OS::Glance::Image", admin_token).status_code == 204
    assert api.get(base, admin_token).json()["properties"] == {}


def test_tags(api: Api, admin_token: str) -> None:
    create_ns(api, admin_token, "tags")
    base = f"{NS}/tags/tags"
    r = api.post(base, admin_token, json={"tags": [{"name": "a"}, {"name": "b"}]})
    assert r.status_code == 201 and r.json() == {"tags": [{"name": "a"}, {"name": "b"}]}
    # a new list replaces the tags, unless asked to append
    api.post(base, admin_token, json={"tags": [{"name": "c"}]})
    assert [t["name"] for t in api.get(base, admin_token).json()["tags"]] == ["c"]
    r = api.post(base, admin_token, json={"tags": [{"name": "d"}]},
                 headers={"X-OpenStack-Append": "True"})
    assert r.status_code == 201
    names = api.get(f"{base}?sort_key=name&sort_dir=asc", admin_token).json()["tags"]
    assert [t["name"] for t in names] == ["c", "d"]
    assert api.post(base, admin_token, json={"tags": [{"name": "e"}, {"name": "e"}]}
                    ).status_code == 409
    r = api.post(f"{base}/single", admin_token)
    assert r.status_code == 201 and r.json()["name"] == "single" and "created_at" in r.json()
    assert api.post(f"{base}/single", admin_token).status_code == 409
    r = api.request("PUT", f"{base}/single", admin_token, json={"name": "renamed"})
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    assert api.get(f"{base}/single", admin_token).status_code == 404
    assert api.request("DELETE", f"{base}/renamed", admin_token).status_code == 204
    assert api.request("DELETE", base, admin_token).status_code == 204
    assert api.get(base, admin_token).json()["tags"] == []


def test_resource_type_associations(api: Api, admin_token: str) -> None:
    create_ns(api, admin_token, "assoc")
    base = f"{NS}/assoc/resource_types"
    r = api.post(base, admin_token, json={"name": "OS::Nova::Flavor", "prefix": "hw:"})
    assert r.status_code == 201 and r.json()["name"] == "OS::Nova::Flavor"
    assert api.post(base, admin_token, json={"name": "OS::Nova::Flavor"}).status_code == 409
    # an unknown resource type comes into being when first associated
    assert api.post(base, admin_token, json={"name": "My::Thing"}).status_code == 201
    types = api.get(f"{V2}/metadefs/resource_types", admin_token).json()["resource_types"]
    assert "My::Thing" in [t["name"] for t in types]
    listed = api.get(base, admin_token).json()["resource_type_associations"]
    assert {a["name"] for a in listed} == {"OS::Nova::Flavor", "My::Thing"}
    r = api.get(f"{NS}?resource_types=My::Thing,Other", admin_token)
    assert [n["namespace"] for n in r.json()["namespaces"]] == ["assoc"]
    assert api.request("DELETE", f"{base}/OS::Nova::Flavor", admin_token).status_code == 204
    assert api.request("DELETE", f"{base}/OS::Nova::Flavor", admin_token).status_code == 404
    assert [a["name"] for a in api.get(base, admin_token).json()["resource_type_associations"]
            ] == ["My::Thing"]


def test_visibility_and_admin_only_writes(api: Api, admin_token: str) -> None:
    alice = api.member(admin_token, "alice")[0]
    create_ns(api, admin_token, "pub", visibility="public")
    create_ns(api, admin_token, "priv")
    names = [n["namespace"] for n in api.get(NS, alice).json()["namespaces"]]
    assert "pub" in names and "priv" not in names
    assert api.get(f"{NS}/pub", alice).status_code == 200
    assert api.get(f"{NS}/pub/objects", alice).status_code == 200
    # a private namespace of another project does not exist for alice, whatever she tries
    for method, path in [("GET", f"{NS}/priv"), ("GET", f"{NS}/priv/tags"),
                         ("DELETE", f"{NS}/priv"), ("POST", f"{NS}/priv/tags/t")]:
        assert api.request(method, path, alice).status_code == 404, (method, path)
    # writes are for admins by default
    assert api.post(NS, alice, json={"namespace": "mine"}).status_code == 403
    assert api.request("DELETE", f"{NS}/pub", alice).status_code == 403
    assert api.post(f"{NS}/pub/objects", alice, json={"name": "o"}).status_code == 403
    assert api.get(f"{NS}/pub", None).status_code == 401


@pytest.mark.parametrize("limit", [1, 2])
def test_namespace_pagination(api: Api, admin_token: str, limit: int) -> None:
    for name in ("p1", "p2", "p3"):
        create_ns(api, admin_token, name)
    seen: list[str] = []
    url = f"{NS}?sort_key=namespace&sort_dir=asc&limit={limit}"
    while url:
        body = api.get(url, admin_token).json()
        seen += [n["namespace"] for n in body["namespaces"]]
        url = V2[: -len("/v2")] + body["next"] if "next" in body else ""
    assert seen == ["p1", "p2", "p3"]


@pytest.mark.parametrize("name", ["namespace", "namespaces", "object", "objects", "property",
                                  "properties", "tag", "tags", "resource_type",
                                  "resource_types"])
def test_schemas(api: Api, admin_token: str, name: str) -> None:
    r = api.get(f"{V2}/schemas/metadefs/{name}", admin_token)
    assert r.status_code == 200
    expected = {"resource_type": "resource_type_association",
                "resource_types": "resource_type_associations"}.get(name, name)
    assert r.json()["name"] == expected
    assert api.get(f"{V2}/schemas/metadefs/bogus", admin_token).status_code == 404
