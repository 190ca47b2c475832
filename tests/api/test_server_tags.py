"""In-process API tests for server tags (microversion 2.26, both databases): the six routes
checked against Tempest's 2.26 schemas, Nova's tag rules and limit (400), unknown tags (404),
servers in a state whose tags may not change (409), the routes' absence below 2.26, tags in
the server views, the four list filters, policy, and tags going with their server."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from nova_checks import fault, valid
from sqlalchemy import select
from tempest.lib.api_schema.response.compute.v2_1 import servers as servers21
from tempest.lib.api_schema.response.compute.v2_26 import servers as servers226
from test_servers_api import WAIT, Compute
from test_servers_api import compute as compute  # fixtures: a cloud with the fake driver
from test_servers_api import disk_image as disk_image

from picocloud.compute import tags
from picocloud.compute.models import Server, ServerTag
from picocloud.compute.virt.errors import HypervisorError

V225 = {"OpenStack-API-Version": "compute 2.25"}
V226 = {"OpenStack-API-Version": "compute 2.26"}


def call(c: Compute, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
    headers = {**V226, **(kw.pop("headers", None) or {})}
    return c.call(method, path, token, headers=headers, **kw)


def tag_list(c: Compute, token: str, server_id: str) -> list[str]:
    r = call(c, "GET", f"/servers/{server_id}/tags", token)
    return list(valid(servers226.list_tags, r)["tags"])


def put_tag(c: Compute, token: str, server_id: str, tag: str) -> httpx.Response:
    return call(c, "PUT", f"/servers/{server_id}/tags/{quote(tag, safe='')}", token)


def replace(c: Compute, token: str, server_id: str, body: Any) -> httpx.Response:
    return call(c, "PUT", f"/servers/{server_id}/tags", token, json=body)


def listed(c: Compute, query: str, path: str = "/servers/detail",
           headers: dict[str, str] | None = None) -> set[str]:  # fmt: skip
    r = call(c, "GET", f"{path}?{query}", c.admin, headers=headers)
    schema = servers226.list_servers_detail if path.endswith("detail") else (
        servers226.list_servers)
    return {s["id"] for s in valid(schema, r)["servers"]}


def test_tag_crud_matches_tempest(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    base = f"/servers/{server_id}/tags"
    assert tag_list(c, c.admin, server_id) == []
    added = put_tag(c, c.admin, server_id, "web")
    valid(servers226.update_tag, added)  # 201 with the tag's Location
    assert added.status_code == 201
    assert added.headers["location"].endswith(f"/compute/v2.1/servers/{server_id}/tags/web")
    again = put_tag(c, c.admin, server_id, "web")  # present already: 204, as Nova, no Location
    assert again.status_code == 204 and not again.content
    assert "location" not in again.headers
    valid(servers226.check_tag_existence, call(c, "GET", f"{base}/web", c.admin))
    missing = call(c, "GET", f"{base}/db", c.admin)
    assert fault(missing, 404, "itemNotFound") == f"Server {server_id} has no tag 'db'"
    # Replace: duplicates count once, the answer is the new set.
    r = replace(c, c.admin, server_id, {"tags": ["b", "a", "b", "prod env"]})
    assert valid(servers226.update_all_tags, r)["tags"] == ["a", "b", "prod env"]
    assert tag_list(c, c.admin, server_id) == ["a", "b", "prod env"]
    # A tag may hold anything but '/' and ',': spaces, unicode, URL-special characters.
    odd = "café ?#%"
    created = put_tag(c, c.admin, server_id, odd)
    valid(servers226.update_tag, created)
    assert created.headers["location"].endswith(f"/tags/{quote(odd, safe='')}")
    assert c.api.get(urlsplit(created.headers["location"]).path, c.admin,
                     headers=V226).status_code == 204  # fmt: skip
    valid(servers226.delete_tag,
          call(c, "DELETE", f"{base}/{quote(odd, safe='')}", c.admin))  # fmt: skip
    valid(servers226.delete_tag, call(c, "DELETE", f"{base}/a", c.admin))
    gone = call(c, "DELETE", f"{base}/a", c.admin)
    assert fault(gone, 404, "itemNotFound") == f"Instance {server_id} has no tag 'a'"
    assert tag_list(c, c.admin, server_id) == ["b", "prod env"]
    valid(servers226.delete_all_tags, call(c, "DELETE", base, c.admin))
    assert tag_list(c, c.admin, server_id) == []
    valid(servers226.delete_all_tags, call(c, "DELETE", base, c.admin))  # nothing left: 204
    # Tags of a server that is not there (or not the caller's): 404 on every route.
    other, _ = c.member("tag-stranger")
    for method, path in [("GET", base), ("PUT", f"{base}/x"), ("DELETE", base),
                         ("GET", f"{base}/b"), ("DELETE", f"{base}/b")]:  # fmt: skip
        fault(call(c, method, path, other), 404, "itemNotFound")
    fault(replace(c, other, server_id, {"tags": []}), 404, "itemNotFound")
    fault(call(c, "GET", "/servers/00000000-0000-0000-0000-000000000000/tags", c.admin), 404,
          "itemNotFound")  # fmt: skip


def test_tag_rules_and_the_limit_of_50(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    for bad in ("a,b", "x" * 61):
        message = fault(put_tag(c, c.admin, server_id, bad), 400, "badRequest")
        assert message.startswith(f"Tag '{bad}' is invalid. It must be a non empty string")
    assert put_tag(c, c.admin, server_id, "x" * 60).status_code == 201
    # A slash cannot be in a tag's URL at all: that is another (unknown) resource.
    fault(call(c, "PUT", f"/servers/{server_id}/tags/a%2Fb", c.admin), 404, "itemNotFound")
    body = call(c, "PUT", f"/servers/{server_id}/tags/y", c.admin, json={"tag": "y"})
    fault(body, 400, "badRequest")  # this PUT has no body
    for bad_body, field in [
        ({"tags": "a"}, "tags"), ({"tags": [1]}, "tags/0"), ({"tags": [""]}, "tags/0"),
        ({"tags": ["ok", "a/b"]}, "tags/1"), ({"tags": ["t" * 61]}, "tags/0"),
        ({"tags": [f"t{i}" for i in range(51)]}, "tags"),
    ]:  # fmt: skip
        message = fault(replace(c, c.admin, server_id, bad_body), 400, "badRequest")
        assert message.startswith(f"Invalid input for field/attribute {field}."), message
    fault(replace(c, c.admin, server_id, {}), 400, "badRequest")
    fault(replace(c, c.admin, server_id, {"tags": [], "more": 1}), 400, "badRequest")
    assert tag_list(c, c.admin, server_id) == ["x" * 60]  # nothing changed by a refusal
    fifty = [f"t{i:02}" for i in range(50)]
    assert valid(servers226.update_all_tags, replace(c, c.admin, server_id, {"tags": fifty}))[
        "tags"] == fifty  # fmt: skip
    over = put_tag(c, c.admin, server_id, "one-more")
    assert fault(over, 400, "badRequest") == "The number of tags exceeded the per-server limit 50"
    # Adding a tag the server has is no addition, even at the limit.
    assert put_tag(c, c.admin, server_id, "t00").status_code == 204
    assert len(tag_list(c, c.admin, server_id)) == 50


def test_tags_change_only_in_stable_states(compute: Compute) -> None:
    c = compute
    c.driver.fail["spawn"] = HypervisorError("no room")
    broken = valid(servers21.create_server, c.create(c.admin))["server"]["id"]
    c.wait(c.admin, broken, "ERROR")
    base = f"/servers/{broken}/tags"
    for r, action in [
        (put_tag(c, c.admin, broken, "x"), "update tag"),
        (replace(c, c.admin, broken, {"tags": ["x"]}), "update tags"),
        (call(c, "DELETE", f"{base}/x", c.admin), "delete tag"),
        (call(c, "DELETE", base, c.admin), "delete tags"),
    ]:  # fmt: skip
        assert fault(r, 409, "conflictingRequest") == (
            f"Cannot '{action}' instance {broken} while it is in vm_state error")
    assert tag_list(c, c.admin, broken) == []  # reading is always allowed
    # A stopped (or paused, suspended) server's tags change. (The failure was for one spawn.)
    server_id = c.boot(c.admin)
    c.act(c.admin, server_id, "os-stop")
    c.wait(c.admin, server_id, "SHUTOFF")
    assert put_tag(c, c.admin, server_id, "cold").status_code == 201


def test_absent_below_2_26(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    replace(c, c.admin, server_id, {"tags": ["kept"]})
    base = f"/servers/{server_id}/tags"
    for method, path, body in [
        ("GET", base, None), ("PUT", base, {"tags": ["x"]}), ("DELETE", base, None),
        ("GET", f"{base}/kept", None), ("PUT", f"{base}/x", None),
        ("DELETE", f"{base}/kept", None),
    ]:  # fmt: skip
        r = c.call(method, path, c.admin, headers=V225, json=body)
        assert fault(r, 404, "itemNotFound") == "The resource could not be found.", method
    assert tag_list(c, c.admin, server_id) == ["kept"]
    old = c.call("GET", f"/servers/{server_id}", c.admin, headers=V225).json()["server"]
    assert "tags" not in old
    # The list filters do not exist either: ignored, as Nova ignores unknown filters.
    assert listed(c, "tags=nosuchtag", "/servers", headers=V225) == {server_id}
    assert listed(c, "tags=nosuchtag", "/servers") == set()


def test_tags_in_server_views(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    plain = c.boot(c.admin, "plain")
    replace(c, c.admin, server_id, {"tags": ["z", "a"]})
    shown = call(c, "GET", f"/servers/{server_id}", c.admin)
    assert valid(servers226.get_server, shown)["server"]["tags"] == ["a", "z"]
    detail = valid(servers226.list_servers_detail, call(c, "GET", "/servers/detail", c.admin))
    assert {s["id"]: s["tags"] for s in detail["servers"]} == {server_id: ["a", "z"],
                                                               plain: []}  # fmt: skip
    index = valid(servers226.list_servers, call(c, "GET", "/servers", c.admin))["servers"]
    assert all("tags" not in s for s in index)
    renamed = call(c, "PUT", f"/servers/{server_id}", c.admin, json={"server": {"name": "n"}})
    assert valid(servers226.update_server, renamed)["server"]["tags"] == ["a", "z"]
    rebuilt = c.act(c.admin, server_id, "rebuild", {"imageRef": c.image_id})
    assert valid(servers226.rebuild_server, rebuilt)["server"]["tags"] == ["a", "z"]


def test_list_filters(compute: Compute) -> None:
    c = compute
    ids = {name: c.boot(c.admin, name) for name in ("xy", "x", "yz", "none")}
    for name, tag_set in (("xy", ["x", "y"]), ("x", ["x"]), ("yz", ["y", "z"])):
        assert replace(c, c.admin, ids[name], {"tags": tag_set}).status_code == 200

    def names(query: str, path: str = "/servers/detail") -> set[str]:
        found = listed(c, query, path)
        return {name for name, server_id in ids.items() if server_id in found}

    assert names("tags=x,y") == {"xy"}
    assert names("tags=x") == {"xy", "x"}
    assert names("tags-any=x,z") == {"xy", "x", "yz"}
    assert names("not-tags=x,y") == {"x", "yz", "none"}
    assert names("not-tags-any=x,z") == {"none"}
    assert names("tags=y&not-tags-any=z") == {"xy"}
    assert names("tags-any=x&not-tags=x,y", "/servers") == {"x"}
    assert names("tags=nosuch") == set() and names("not-tags-any=nosuch") == set(ids)
    # A filter combines with paging: the page holds filtered servers only.
    page = call(c, "GET", "/servers?tags-any=y&limit=1", c.admin)
    first = valid(servers226.list_servers, page)
    assert len(first["servers"]) == 1 and first["servers_links"]
    assert first["servers"][0]["id"] in (ids["xy"], ids["yz"])


def test_policy_reader_reads_member_writes(compute: Compute) -> None:
    c = compute
    owner, project = c.member("tag-owner")
    server_id = c.boot(owner)
    reader, _ = c.member("tag-reader", "reader", project)
    valid(servers226.update_tag, put_tag(c, owner, server_id, "mine"))
    assert tag_list(c, reader, server_id) == ["mine"]
    assert call(c, "GET", f"/servers/{server_id}/tags/mine", reader).status_code == 204
    for r in (put_tag(c, reader, server_id, "x"),
              replace(c, reader, server_id, {"tags": []}),
              call(c, "DELETE", f"/servers/{server_id}/tags/mine", reader),
              call(c, "DELETE", f"/servers/{server_id}/tags", reader)):  # fmt: skip
        fault(r, 403, "forbidden")
    assert tag_list(c, owner, server_id) == ["mine"]


def test_tags_go_with_their_server(compute: Compute) -> None:
    c = compute
    server_id = c.boot(c.admin)
    kept = c.boot(c.admin, "kept")
    for sid in (server_id, kept):
        replace(c, c.admin, sid, {"tags": ["doomed", "shared"]})
    assert call(c, "DELETE", f"/servers/{server_id}", c.admin).status_code == 204
    deadline = time.monotonic() + WAIT
    while call(c, "GET", f"/servers/{server_id}", c.admin).status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    fault(call(c, "GET", f"/servers/{server_id}/tags", c.admin), 404, "itemNotFound")
    with c.cloud.session() as db:
        rows = db.execute(select(ServerTag.server_id, ServerTag.tag)).all()
    assert sorted(rows) == [(kept, "doomed"), (kept, "shared")]
    assert listed(c, "tags=doomed") == {kept}
    # The deleted server, listed by an admin, shows no tags.
    deleted = call(c, "GET", "/servers/detail?changes-since=2000-01-01T00:00:00Z", c.admin)
    by_id = {s["id"]: s for s in valid(servers226.list_servers_detail, deleted)["servers"]}
    assert by_id[server_id]["status"] == "DELETED" and by_id[server_id]["tags"] == []


def test_concurrent_adds_of_one_tag(compute: Compute) -> None:
    """Two requests adding the same tag at once: one adds it, the other finds it there (no
    duplicate-key error), because a tag writer holds the server until it commits."""
    c = compute
    server_id = c.boot(c.admin)
    outcomes: list[bool] = []

    def add() -> None:
        with c.cloud.session() as db:
            server = db.get(Server, server_id)
            assert server is not None
            outcomes.append(tags.add(db, server, "race"))
            time.sleep(0.3)
            db.commit()

    threads = [threading.Thread(target=add) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [False, True]
    assert tag_list(c, c.admin, server_id) == ["race"]
