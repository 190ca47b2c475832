"""The one ASGI application: every service mounted on one port, plus /healthz."""

from __future__ import annotations

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from picocloud.cloud import Cloud
from picocloud.http import RequestLog, Service


def services() -> list[Service]:
    from picocloud.identity.api import service as identity
    from picocloud.image.api import service as image

    return [identity(), image()]


def build_app(cloud: Cloud) -> RequestLog:
    def healthz(_request: Request) -> Response:
        with cloud.session() as db:
            db.execute(text("SELECT 1"))
        return JSONResponse({"status": "ok"})

    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"])]
    for svc in services():
        routes.extend(svc.mount(cloud))
    app = Starlette(routes=routes)
    app.state.cloud = cloud
    return RequestLog(app)
