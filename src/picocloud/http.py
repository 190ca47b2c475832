"""HTTP plumbing shared by every service: route tables, request context, dispatch, request log.

A service is a list of `Route`s (path, method, handler, policy rule) mounted under a prefix.
Handlers are plain synchronous functions of a `Ctx`; the dispatcher parses the request, runs
authentication, policy and the handler in a worker thread inside one database transaction, and
renders any `ApiError` in the service's own error format.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from picocloud.errors import ApiError, BadRequest, MethodNotAllowed, Unauthorized

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from picocloud.cloud import Cloud
    from picocloud.identity.tokens import AuthContext

log = logging.getLogger("picocloud.request")

MAX_JSON_BODY = 1 << 20


class Reply:
    """What a handler returns when 200 with a JSON body is not the answer."""

    __slots__ = ("body", "headers", "media_type", "status")

    def __init__(
        self,
        body: Any = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
        media_type: str = "application/json",
    ) -> None:
        self.body = body
        self.status = status
        self.headers = headers or {}
        self.media_type = media_type


Handler = Callable[[Any], Any]  # Ctx -> result, or StreamCtx -> Awaitable[Response]


@dataclass(frozen=True)
class Route:
    """One API operation: the policy rule checked for it sits beside the handler."""

    method: str
    path: str
    handler: Handler
    rule: str | None = None  # policy rule name; None means any authenticated caller
    auth: bool = True  # False: no token needed (version discovery, token issue)
    stream: bool = False  # True: an async handler of a StreamCtx (raw request body)


@dataclass
class BaseCtx:
    """What every handler sees of a request: who calls, with which parameters."""

    cloud: Cloud
    request: Request
    route: Route
    params: dict[str, str]
    query: QueryParams
    request_id: str
    auth: AuthContext | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    version: tuple[int, int] = (0, 0)  # the request's microversion, where the service has them
    _authorized: bool = False

    @property
    def token(self) -> AuthContext:
        if self.auth is None:
            raise Unauthorized("The request you have made requires authentication.")
        return self.auth

    def authorize(self, target: dict[str, Any] | None = None, rule: str | None = None) -> None:
        """Check the route's policy rule (or `rule`) for this caller against `target`."""
        name = rule or self.route.rule
        if name is None:
            return
        self.cloud.policy.enforce(name, self.token.credentials(), target or {})
        self._authorized = True

    def allowed(self, rule: str, target: dict[str, Any] | None = None) -> bool:
        """Whether the caller passes `rule`, without failing."""
        return self.cloud.policy.allowed(rule, self.token.credentials(), target or {})

    def q(self, name: str) -> str | None:
        """A query value, treating the literal 'None' that clients send as absent."""
        value = self.query.get(name)
        if value is None or value == "None":
            return None
        return value


@dataclass
class Ctx(BaseCtx):
    """A request whose JSON body is parsed and whose handler runs in one DB transaction."""

    body: Any = None
    db: Session = None  # type: ignore[assignment]  # always set by the dispatcher

    def parse(self, model: type[BaseModel], key: str | None = None) -> Any:
        """Validate the JSON body (or body[key]) against `model`; 400 naming the field."""
        return validate(model, self.body, key)


T = TypeVar("T")


@dataclass
class StreamCtx(BaseCtx):
    """A request whose body is a byte stream (image data); the handler is async and reaches
    the database only through `call`, each call one transaction in a worker thread."""

    async def call(self, fn: Callable[[Session], T]) -> T:
        return await anyio.to_thread.run_sync(self.cloud.transaction, fn)


def validate(model: type[BaseModel], body: Any, key: str | None = None) -> Any:
    if key is not None:
        if not isinstance(body, dict) or key not in body:
            raise BadRequest(f"Invalid input for field '{key}': '{key}' is a required property")
        body = body[key]
    if not isinstance(body, dict):
        raise BadRequest(f"Invalid input for field '{key or 'body'}': expected an object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or (key or "body")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"Additional properties are not allowed ('{loc}' was unexpected)"
        raise BadRequest(f"Invalid input for field '{loc}': {msg}") from None


class Service:
    """A mounted API: its routes, its error format, and whether it needs tokens at all."""

    def __init__(
        self,
        prefix: str,
        routes: Iterable[Route],
        render_error: Callable[[ApiError], Any],
        prepare: Callable[[BaseCtx], None] | None = None,
    ) -> None:
        self.prefix = prefix
        self.routes = list(routes)
        self.render_error = render_error
        self.prepare = prepare  # per request, before auth: e.g. microversion negotiation

    def mount(self, cloud: Cloud) -> list[BaseRoute]:
        """Starlette routes with full paths (so the bare prefix itself can be a route)."""
        by_path: dict[str, dict[str, Route]] = {}
        for route in self.routes:
            by_path.setdefault(self.prefix + route.path, {})[route.method] = route
        return [
            StarletteRoute(
                path,
                endpoint=_endpoint(cloud, self, methods),
                methods=[*methods, "HEAD"] if "GET" in methods else list(methods),
            )
            for path, methods in by_path.items()
        ]

    def error_response(
        self, cloud: Cloud, exc: ApiError, request_id: str, ctx: BaseCtx | None = None
    ) -> Response:
        headers = {**(ctx.extra_headers if ctx else {}), **exc.headers}
        if exc.status == 401 and "WWW-Authenticate" not in headers:
            headers["WWW-Authenticate"] = f'Keystone uri="{cloud.settings.base_url}/identity"'
        return json_response(self.render_error(exc), exc.status, headers)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if body is None:
        return Response(status_code=status, headers=headers)
    data = json.dumps(body, separators=(",", ":"), default=str).encode()
    return Response(data, status_code=status, headers=headers, media_type="application/json")


def _endpoint(
    cloud: Cloud, service: Service, methods: dict[str, Route]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        request_id: str = request.scope["state"]["request_id"]
        method = request.method
        route = methods.get(method) or (methods.get("GET") if method == "HEAD" else None)
        if route is None:
            allowed = ", ".join(sorted(methods))
            return service.error_response(
                cloud,
                MethodNotAllowed(
                    f"The method {method} is not allowed for this resource.",
                    headers={"Allow": allowed},
                ),
                request_id,
            )
        if route.stream:
            return await _run_stream(cloud, service, route, request)
        try:
            body = await _read_json(request)
        except ApiError as exc:
            return service.error_response(cloud, exc, request_id)
        return await anyio.to_thread.run_sync(_run, cloud, service, route, request, body)

    return endpoint


async def _read_json(request: Request) -> Any:
    if request.method in ("GET", "HEAD", "DELETE"):
        return None
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BODY:
            raise BadRequest("Request body is too large.")
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Malformed request body: the body is not valid JSON.") from None


def _authenticate(cloud: Cloud, route: Route, request: Request, db: Session) -> AuthContext | None:
    """The caller's validated token, if any; 401 when the route needs one and has none."""
    token = request.headers.get("x-auth-token")
    if token:
        auth = cloud.tokens.validate(db, token)
        state = request.scope["state"]
        state["user_id"] = auth.user_id
        state["project_id"] = auth.project_id
        return auth
    if route.auth:
        raise Unauthorized("The request you have made requires authentication.")
    return None


async def _run_stream(cloud: Cloud, service: Service, route: Route, request: Request) -> Response:
    request_id: str = request.scope["state"]["request_id"]
    ctx = StreamCtx(
        cloud=cloud,
        request=request,
        route=route,
        params=dict(request.path_params),
        query=request.query_params,
        request_id=request_id,
    )
    try:
        if service.prepare is not None:
            service.prepare(ctx)
        ctx.auth = await ctx.call(lambda db: _authenticate(cloud, route, request, db))
        response: Response = await route.handler(ctx)
        if route.rule is not None and not ctx._authorized:
            raise RuntimeError(f"handler for {route.path} did not check policy {route.rule}")
        return response
    except ApiError as exc:
        return service.error_response(cloud, exc, request_id, ctx)
    except Exception:
        logging.getLogger("picocloud").exception("unhandled error in %s", route.path)
        return service.error_response(
            cloud, ApiError("An unexpected error prevented the server from completing it."),
            request_id,
        )


def _run(cloud: Cloud, service: Service, route: Route, request: Request, body: Any) -> Response:
    state = request.scope["state"]
    request_id: str = state["request_id"]
    with cloud.session() as db:
        ctx = Ctx(
            cloud=cloud,
            request=request,
            route=route,
            params=dict(request.path_params),
            query=request.query_params,
            body=body,
            db=db,
            request_id=request_id,
        )
        try:
            if service.prepare is not None:
                service.prepare(ctx)
            ctx.auth = _authenticate(cloud, route, request, db)
            result = route.handler(ctx)
            if route.rule is not None and not ctx._authorized:
                raise RuntimeError(f"handler for {route.path} did not check policy {route.rule}")
            db.commit()
        except ApiError as exc:
            db.rollback()
            return service.error_response(cloud, exc, request_id, ctx)
        except Exception:
            db.rollback()
            logging.getLogger("picocloud").exception("unhandled error in %s", route.path)
            return service.error_response(
                cloud,
                ApiError("An unexpected error prevented the server from completing it."),
                request_id,
            )
    cloud.after_commit(db)
    if isinstance(result, Response):
        return result
    if isinstance(result, Reply):
        headers = {**ctx.extra_headers, **result.headers}
        if result.media_type != "application/json":
            return Response(result.body, result.status, headers, media_type=result.media_type)
        return json_response(result.body, result.status, headers)
    return json_response(result, 200, ctx.extra_headers or None)


class RequestLog:
    """ASGI middleware: request id header on every response and one JSON log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = f"req-{uuid.uuid4()}"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        header = (b"x-openstack-request-id", request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(
                    json.dumps(
                        {
                            "request_id": request_id,
                            "user": state.get("user_id"),
                            "project": state.get("project_id"),
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": status,
                            "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                        },
                        separators=(",", ":"),
                    )
                )
