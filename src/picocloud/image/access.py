"""Who asks the image API, and the policy target an image presents: one place for both."""

from __future__ import annotations

from typing import Any

from picocloud.http import BaseCtx
from picocloud.image.models import Image
from picocloud.image.service import Caller


def caller(ctx: BaseCtx) -> Caller:
    return Caller(ctx.token.project_id, ctx.allowed("context_is_admin"))


def target(image: Image, **extra: Any) -> dict[str, Any]:
    return {"target": {"owner": image.owner, "visibility": image.visibility, **extra}}
