"""The compute API (Nova v2.1), mounted at /compute."""

from __future__ import annotations

from picocloud.compute import microversion
from picocloud.compute.api import (
    actions,
    flavors,
    infra,
    keypairs,
    quotas,
    servers,
    tags,
    versions,
)
from picocloud.compute.errors import render
from picocloud.http import Service


def service() -> Service:
    routes = [
        *versions.ROUTES, *flavors.ROUTES, *keypairs.ROUTES, *quotas.ROUTES, *infra.ROUTES,
        *servers.ROUTES, *tags.ROUTES, *actions.ROUTES,
    ]
    return Service("/compute", routes, render, prepare=microversion.negotiate)
