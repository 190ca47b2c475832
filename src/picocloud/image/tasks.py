"""Image tasks (Glance API 2.12): the record of each asynchronous job on an image — an
interoperable import (`api_image_import`) or a location import (`location_import`, 2.17).

A task is `processing` while its worker runs, then `success` or `failure` with a message, and
expires 48 hours after it finished; the image's task list shows the ones not yet expired.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from picocloud.errors import NotFound
from picocloud.http import Ctx, Route
from picocloud.image.access import caller as _caller
from picocloud.image.access import target as _target
from picocloud.image.models import Image, ImageTask
from picocloud.image.service import ImageService, utcnow

KEEP = timedelta(hours=48)  # how long a finished task stays listed


def new_task(ctx: Ctx, image: Image, kind: str, task_input: dict[str, Any]) -> ImageTask:
    now = utcnow()
    task = ImageTask(
        id=str(uuid.uuid4()), image_id=image.id, type=kind, status="processing",
        owner=ctx.token.project_id, user_id=ctx.token.user_id,
        request_id=ctx.request_id,
        input=task_input, result=None, message="", created_at=now, updated_at=now,
        expires_at=None,
    )
    ctx.db.add(task)
    return task


def finish_task(db: Session, task_id: str, error: str | None) -> None:
    """Mark the task done: `success`, or `failure` saying why."""
    task = db.get(ImageTask, task_id)
    if task is None or task.status not in ("pending", "processing"):
        return
    now = utcnow()
    task.status = "failure" if error else "success"
    task.message = error or ""
    task.result = None if error else {"image_id": task.image_id}
    task.updated_at = now
    task.expires_at = now + KEEP


def _iso(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value is not None else None


def task_json(task: ImageTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "type": task.type,
        "status": task.status,
        "owner": task.owner,
        "image_id": task.image_id,
        "user_id": task.user_id,
        "request_id": task.request_id,
        "input": task.input,
        "result": task.result,
        "message": task.message,
        "created_at": _iso(task.created_at),
        "updated_at": _iso(task.updated_at),
        "expires_at": _iso(task.expires_at),
        "deleted": False,
        "deleted_at": None,
    }


def _unexpired() -> Select[ImageTask]:
    expires = ImageTask.expires_at
    return select(ImageTask).where(expires.is_(None) | (expires > utcnow()))


def image_tasks(ctx: Ctx) -> dict[str, Any]:
    """`GET /v2/images/{id}/tasks`: the image's unexpired tasks (a non-admin sees the ones
    their project started)."""
    caller = _caller(ctx)
    image = ImageService(ctx.db, ctx.cloud.settings).get(ctx.params["image_id"], caller)
    ctx.authorize(_target(image))
    stmt = _unexpired().where(ImageTask.image_id == image.id)
    if not caller.is_admin:
        stmt = stmt.where(ImageTask.owner == caller.project_id)
    return {"tasks": [task_json(t) for t in ctx.db.scalars(stmt.order_by(ImageTask.created_at))]}


def list_tasks(ctx: Ctx) -> dict[str, Any]:
    """`GET /v2/tasks` (admins): every unexpired task, newest first, in Glance's short form."""
    ctx.authorize()
    rows = ctx.db.scalars(_unexpired().order_by(ImageTask.created_at.desc()))
    short = ("id", "type", "status", "owner", "created_at", "updated_at", "expires_at")
    return {
        "tasks": [{**{k: v for k, v in task_json(t).items() if k in short},
                   "self": f"/v2/tasks/{t.id}", "schema": "/v2/schemas/task"}
                  for t in rows],
        "first": "/v2/tasks",
        "schema": "/v2/schemas/tasks",
    }


def get_task(ctx: Ctx) -> dict[str, Any]:
    """`GET /v2/tasks/{id}` (admins): one task, whole."""
    ctx.authorize()
    task = ctx.db.get(ImageTask, ctx.params["task_id"])
    if task is None:
        raise NotFound(f"Task with identifier {ctx.params['task_id']} not found")
    return {**task_json(task), "self": f"/v2/tasks/{task.id}", "schema": "/v2/schemas/task"}


ROUTES = [
    Route("GET", "/v2/images/{image_id}/tasks", image_tasks, "get_image"),
    Route("GET", "/v2/tasks", list_tasks, "get_tasks"),
    Route("GET", "/v2/tasks/{task_id}", get_task, "get_task"),
]
