"""Checks shared by the compute API tests: Tempest's response validation and Nova faults."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
from tempest.lib.common.jsonschema_validator import FORMAT_CHECKER, JSONSCHEMA_VALIDATOR


def valid(schema: dict[str, Any], r: httpx.Response) -> Any:
    """Check a response as Tempest's rest client does: status, body, then headers."""
    assert r.status_code in schema["status_code"], r.text
    header_schema = schema.get("response_header")
    if header_schema is not None:
        headers = {k.lower(): v for k, v in r.headers.items()}
        jsonschema.validate(headers, header_schema, cls=JSONSCHEMA_VALIDATOR,
                            format_checker=FORMAT_CHECKER)  # fmt: skip
    body_schema = schema.get("response_body")
    if body_schema is None:
        assert not r.content, r.text
        return None
    body = r.json()
    jsonschema.validate(body, body_schema, cls=JSONSCHEMA_VALIDATOR, format_checker=FORMAT_CHECKER)
    return body


def fault(r: httpx.Response, status: int, name: str) -> str:
    """The message of a Nova fault body {name: {code, message}} with this status."""
    assert r.status_code == status, r.text
    body = r.json()[name]
    assert body["code"] == status
    return str(body["message"])
