"""API faults: one class per HTTP fault, rendered in the owning service's format in one place."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error a client caused or must see; carries its HTTP status and an actionable message."""

    status = 500
    title = "Internal Server Error"

    def __init__(
        self, message: str = "", *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message or self.title)
        self.message = message or self.title
        self.headers = headers or {}
        self.extra = extra


class BadRequest(ApiError):
    status = 400
    title = "Bad Request"


class Unauthorized(ApiError):
    status = 401
    title = "Unauthorized"


class Forbidden(ApiError):
    status = 403
    title = "Forbidden"


class NotFound(ApiError):
    status = 404
    title = "Not Found"


class MethodNotAllowed(ApiError):
    status = 405
    title = "Method Not Allowed"


class NotAcceptable(ApiError):
    status = 406
    title = "Not Acceptable"


class Conflict(ApiError):
    status = 409
    title = "Conflict"


class Gone(ApiError):
    status = 410
    title = "Gone"


class RequestTooLarge(ApiError):
    status = 413
    title = "Request Entity Too Large"


class UnsupportedMediaType(ApiError):
    status = 415
    title = "Unsupported Media Type"


class NotImplementedFault(ApiError):
    status = 501
    title = "Not Implemented"


class ServiceUnavailable(ApiError):
    status = 503
    title = "Service Unavailable"
