"""Host aggregates (os-aggregates): CRUD and the add_host / remove_host / set_metadata actions.
Mounted through `infra`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from picocloud.compute import aggregates
from picocloud.compute import validation as v
from picocloud.compute.api.common import own_target
from picocloud.compute.models import Aggregate
from picocloud.errors import BadRequest
from picocloud.http import Ctx, Route

P = "os_compute_api:os-aggregates:"


def iso(ts: datetime | None) -> str | None:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f") if ts is not None else None


def aggregate_json(agg: Aggregate, full: bool = True) -> dict[str, Any]:
    """Nova's view (below 2.41, so no uuid); create answers without hosts and metadata."""
    body: dict[str, Any] = {
        "id": agg.id,
        "name": agg.name,
        "availability_zone": agg.metadata_.get(aggregates.AZ_KEY),
        "created_at": iso(agg.created_at),
        "updated_at": iso(agg.updated_at),
        "deleted": False,
        "deleted_at": None,
    }
    if full:
        body["hosts"] = list(agg.hosts)
        body["metadata"] = dict(agg.metadata_)
    return body


def _zone(value: Any) -> str | None:
    if value is None:
        return None
    return v.name("availability_zone", value)


def index(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    return {"aggregates": [aggregate_json(a) for a in aggregates.listing(ctx.db)]}


def create(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    body = v.obj(ctx.body, "aggregate")
    v.only(body, ("name", "availability_zone"))
    v.required(body, "name")
    agg = aggregates.create(ctx.db, v.name("name", body["name"]),
                            _zone(body.get("availability_zone")))
    return {"aggregate": aggregate_json(agg, full=False)}


def show(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    return {"aggregate": aggregate_json(aggregates.get(ctx.db, ctx.params["aggregate_id"]))}


def update(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize(own_target(ctx))
    body = v.obj(ctx.body, "aggregate")
    v.only(body, ("name", "availability_zone"))
    if not body:
        raise BadRequest("Invalid input for field/attribute aggregate. Value: {}. {} does not "
                         "have enough properties")
    agg = aggregates.get(ctx.db, ctx.params["aggregate_id"])
    name = v.name("name", body["name"]) if "name" in body else None
    aggregates.update(ctx.db, agg, name, _zone(body.get("availability_zone")),
                      "availability_zone" in body)
    return {"aggregate": aggregate_json(agg)}


def delete(ctx: Ctx) -> None:
    ctx.authorize(own_target(ctx))
    aggregates.remove(ctx.db, aggregates.get(ctx.db, ctx.params["aggregate_id"]))


def _metadata(raw: Any) -> dict[str, str | None]:
    if not isinstance(raw, dict):
        raise v.invalid("metadata", raw, f"{raw!r} is not of type 'object'")
    changes: dict[str, str | None] = {}
    for key, value in raw.items():
        if not 1 <= len(key) <= 255:
            raise v.invalid("metadata", key, "metadata keys are 1-255 characters")
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise v.invalid(key, value, "metadata values are strings of up to 255 characters "
                            "(or null to remove the key)")
        changes[key] = value
    return changes


def action(ctx: Ctx) -> dict[str, Any]:
    body = ctx.body if isinstance(ctx.body, dict) else {}
    names = [k for k in ("add_host", "remove_host", "set_metadata") if k in body]
    if len(names) != 1 or len(body) != 1:
        ctx.authorize(own_target(ctx), rule=f"{P}index")
        raise BadRequest("Expected exactly one of the actions add_host, remove_host, "
                         "set_metadata.")
    name = names[0]
    ctx.authorize(own_target(ctx), rule=P + name)
    args = v.obj(body, name)
    agg = aggregates.get(ctx.db, ctx.params["aggregate_id"])
    if name == "set_metadata":
        v.only(args, ("metadata",))
        v.required(args, "metadata")
        aggregates.set_metadata(ctx.db, agg, _metadata(args["metadata"]))
    else:
        v.only(args, ("host",))
        v.required(args, "host")
        host = v.name("host", args["host"])
        if name == "add_host":
            aggregates.add_host(ctx.db, agg, host)
        else:
            aggregates.remove_host(ctx.db, agg, host)
    return {"aggregate": aggregate_json(agg)}


A = "/v2.1/os-aggregates"
ROUTES = [
    Route("GET", A, index, f"{P}index"),
    Route("POST", A, create, f"{P}create"),
    Route("GET", f"{A}/{{aggregate_id}}", show, f"{P}show"),
    Route("PUT", f"{A}/{{aggregate_id}}", update, f"{P}update"),
    Route("DELETE", f"{A}/{{aggregate_id}}", delete, f"{P}delete"),
    Route("POST", f"{A}/{{aggregate_id}}/action", action),  # rule chosen by the action
]
