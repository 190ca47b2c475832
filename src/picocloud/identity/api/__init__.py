"""The identity API (Keystone v3), mounted at /identity."""

from __future__ import annotations

from picocloud.http import Service
from picocloud.identity.api import (
    auth,
    catalog,
    delegation,
    domain_config,
    extras,
    resources,
    roles,
)
from picocloud.identity.errors import render


def service() -> Service:
    return Service(
        "/identity",
        [*auth.ROUTES, *domain_config.ROUTES, *resources.ROUTES, *roles.ROUTES, *catalog.ROUTES,
         *extras.ROUTES, *delegation.ROUTES],
        render,
    )
