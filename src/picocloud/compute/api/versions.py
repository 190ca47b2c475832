"""Compute version discovery at /compute and /compute/v2.1."""

from __future__ import annotations

from typing import Any

from picocloud.compute import microversion
from picocloud.http import Ctx, Reply, Route

UPDATED = "2013-07-23T11:33:21Z"


def _v21(ctx: Ctx) -> dict[str, Any]:
    base = ctx.cloud.settings.base_url
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": microversion.text(microversion.MAX),
        "min_version": microversion.text(microversion.MIN),
        "updated": UPDATED,
        "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"}],
    }


def _v20(ctx: Ctx) -> dict[str, Any]:
    return {"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": "",
            "updated": "2025-07-04T12:00:00Z",
            "links": [{"rel": "self", "href": f"{ctx.cloud.settings.base_url}/compute/v2/"}]}


def versions(ctx: Ctx) -> Reply:
    return Reply({"versions": [_v21(ctx)]}, status=200)


def version(ctx: Ctx) -> dict[str, Any]:
    body = _v21(ctx)
    body["media-types"] = [{"base": "application/json",
                            "type": "application/vnd.openstack.compute+json;version=2.1"}]
    body["links"].append({"rel": "describedby", "type": "text/html",
                          "href": "http://docs.openstack.org/"})
    return {"version": body}


ROUTES = [
    Route("GET", "", versions, auth=False),
    Route("GET", "/", versions, auth=False),
    Route("GET", "/v2.1", version, auth=False),
    Route("GET", "/v2.1/", version, auth=False),
]
