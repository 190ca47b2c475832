"""The compute API (Nova v2.1), mounted at /compute."""

from __future__ import annotations

import importlib

from picocloud.compute import microversion
from picocloud.compute.errors import render
from picocloud.http import Route, Service

MODULES = ("versions", "flavors", "keypairs", "quotas", "infra", "servers", "actions")


def service() -> Service:
    routes: list[Route] = []
    for name in MODULES:
        try:
            module = importlib.import_module(f"picocloud.compute.api.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"picocloud.compute.api.{name}":
                raise
            continue  # TODO(compute): every module lands; then import them statically
        routes.extend(module.ROUTES)
    return Service("/compute", routes, render, prepare=microversion.negotiate)
