"""Request bodies of the identity API, validated as Keystone's JSON schemas do."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

Name64 = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=False)]
Name255 = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^,/]*$")]


class Open(BaseModel):
    """Keystone accepts extra attributes on these resources and stores them."""

    model_config = ConfigDict(extra="allow")


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DomainCreate(Open):
    name: Name64
    description: str | None = None
    enabled: StrictBool = True
    tags: list[Tag] = Field(default_factory=list, max_length=80)
    options: dict[str, Any] = Field(default_factory=dict)
    explicit_domain_id: Id | None = None


class DomainUpdate(Open):
    name: Name64 | None = None
    description: str | None = None
    enabled: StrictBool | None = None
    tags: list[Tag] | None = None
    options: dict[str, Any] | None = None


class ProjectCreate(Open):
    name: Name64
    description: str | None = None
    enabled: StrictBool = True
    domain_id: Id | None = None
    parent_id: Id | None = None
    is_domain: StrictBool = False
    tags: list[Tag] = Field(default_factory=list, max_length=80)
    options: dict[str, Any] = Field(default_factory=dict)


class ProjectUpdate(Open):
    name: Name64 | None = None
    description: str | None = None
    enabled: StrictBool | None = None
    tags: list[Tag] | None = None
    options: dict[str, Any] | None = None
    domain_id: Id | None = None
    parent_id: Id | None = None
    is_domain: StrictBool | None = None


class UserCreate(Open):
    name: Name255
    domain_id: Id | None = None
    password: str | None = Field(default=None, max_length=4096)
    enabled: StrictBool = True
    default_project_id: Id | None = None
    description: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class UserUpdate(Open):
    name: Name255 | None = None
    domain_id: Id | None = None
    password: str | None = Field(default=None, max_length=4096)
    enabled: StrictBool | None = None
    default_project_id: Id | None = None
    description: str | None = None
    options: dict[str, Any] | None = None


class PasswordChange(Closed):
    password: str = Field(max_length=4096)
    original_password: str = Field(max_length=4096)


class GroupCreate(Open):
    name: Name64
    domain_id: Id | None = None
    description: str | None = None


class GroupUpdate(Open):
    name: Name64 | None = None
    description: str | None = None
    domain_id: Id | None = None


class RoleCreate(Open):
    name: Name255
    domain_id: Id | None = None
    description: str | None = Field(default=None, max_length=255)
    options: dict[str, Any] = Field(default_factory=dict)


class RoleUpdate(Open):
    name: Name255 | None = None
    description: str | None = Field(default=None, max_length=255)
    options: dict[str, Any] | None = None
    domain_id: Id | None = None
