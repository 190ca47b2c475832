"""The one ASGI application: every service mounted on one port, plus /healthz."""

from __future__ import annotations

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from picocloud.cloud import Cloud
from picocloud.errors import NotFound
from picocloud.http import RequestLog, Service


def services() -> list[Service]:
    from picocloud.compute.api import service as compute
    from picocloud.identity.api import service as identity
    from picocloud.image.api import service as image

    return [identity(), image(), compute()]


def build_app(cloud: Cloud) -> RequestLog:
    mounted = services()

    def healthz(_request: Request) -> Response:
        with cloud.session() as db:
            db.execute(text("SELECT 1"))
        return JSONResponse({"status": "ok"})

    async def not_found(request: Request, exc: Exception) -> Response:
        """An unknown path answers 404 in the format of the service that owns its prefix."""
        path = request.url.path
        for svc in mounted:
            if path == svc.prefix or path.startswith(svc.prefix + "/"):
                return svc.error_response(
                    cloud, NotFound(f"The resource could not be found: {path}"),
                    request.scope["state"]["request_id"],
                )
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return PlainTextResponse("Not Found", status_code=status)

    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"])]
    for svc in mounted:
        routes.extend(svc.mount(cloud))
    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.router.redirect_slashes = False  # /v2/images/ is not /v2/images (Glance: 404)
    app.state.cloud = cloud
    return RequestLog(app)
