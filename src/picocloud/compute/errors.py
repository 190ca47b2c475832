"""Compute faults rendered as Nova does: {"itemNotFound": {"code": 404, "message": "..."}}."""

from __future__ import annotations

from typing import Any

from picocloud.errors import ApiError, Forbidden, NotFound

FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    406: "notAcceptable",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    501: "notImplemented",
}


def render(exc: ApiError) -> dict[str, Any]:
    name = FAULT_NAMES.get(exc.status, "computeFault")
    return {name: {"code": exc.status, "message": exc.message}}


def server_not_found(server_id: str) -> NotFound:
    return NotFound(f"Instance {server_id} could not be found.")


def flavor_not_found(flavor_id: str) -> NotFound:
    return NotFound(f"Flavor {flavor_id} could not be found.")


def quota_exceeded(resource: str, requested: int, used: int, limit: int) -> Forbidden:
    return Forbidden(
        f"Quota exceeded for {resource}: Requested {requested}, but already used {used} of "
        f"{limit} {resource}"
    )
