"""Compute API microversions: what we advertise, and per-request negotiation."""

from __future__ import annotations

from picocloud.errors import NotAcceptable
from picocloud.http import BaseCtx

MIN = (2, 1)
MAX = (2, 38)  # honest: only what is implemented (2.37 gives `networks: "none"`)


def text(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def parse(raw: str) -> tuple[int, int]:
    if raw.strip().lower() == "latest":
        return MAX
    major, _, minor = raw.strip().partition(".")
    try:
        version = (int(major), int(minor))
    except ValueError:
        raise NotAcceptable(f"Invalid API version request: {raw!r}") from None
    if not MIN <= version <= MAX:
        raise NotAcceptable(
            f"Version {raw} is not supported by the API. Minimum is {text(MIN)} and maximum "
            f"is {text(MAX)}."
        )
    return version


def negotiate(ctx: BaseCtx) -> None:
    """Read `OpenStack-API-Version: compute X.Y` (or the legacy Nova header) into ctx.version
    and answer with the same headers and `Vary`."""
    raw = None
    header = ctx.request.headers.get("openstack-api-version")
    if header:
        for part in header.split(","):
            service, _, value = part.strip().partition(" ")
            if service.lower() == "compute":
                raw = value
    raw = raw or ctx.request.headers.get("x-openstack-nova-api-version")
    ctx.extra_headers.update({
        "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version",
    })
    ctx.version = parse(raw) if raw else MIN
    ctx.extra_headers.update({
        "OpenStack-API-Version": f"compute {text(ctx.version)}",
        "X-OpenStack-Nova-API-Version": text(ctx.version),
    })
