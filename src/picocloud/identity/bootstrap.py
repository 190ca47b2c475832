"""First start: the default domain, admin and service projects, the admin user, the three
default roles with their implied chain, the region and the catalog; then client config files."""

from __future__ import annotations

import os
import secrets
import shlex
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from picocloud.identity.models import (
    Assignment,
    CatalogService,
    Domain,
    Endpoint,
    ImpliedRole,
    Project,
    Region,
    Role,
    User,
)
from picocloud.identity.passwords import hash_password
from picocloud.identity.service import DEFAULT_DOMAIN, new_id, utcnow
from picocloud.settings import Settings

CLOUD_NAME = "picocloud"
DEFAULT_ROLES = ("admin", "member", "reader", "service")
IMPLIED = (("admin", "member"), ("member", "reader"))

# (type, name, path under the base URL) of each API picocloud serves; later services add here.
SERVICES: list[tuple[str, str, str]] = [
    ("identity", "keystone", "/identity"),
    ("image", "glance", "/image"),
    ("compute", "nova", "/compute/v2.1"),
]


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def admin_password(settings: Settings) -> str:
    path = settings.data_dir / "admin-password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(18)
    _write_private(path, password + "\n")
    return password


def bootstrap(db: Session, settings: Settings) -> None:
    """Create what a fresh cloud needs; idempotent, so every start runs it."""
    if db.get(Domain, DEFAULT_DOMAIN) is None:
        db.add(
            Domain(
                id=DEFAULT_DOMAIN,
                name="Default",
                description="The default domain",
                enabled=True,
                extra={},
            )
        )
        db.flush()
    roles: dict[str, Role] = {}
    for name in DEFAULT_ROLES:
        role = db.query(Role).filter_by(name=name, domain_id="").first()
        if role is None:
            role = Role(id=new_id(), name=name, domain_id="", options={})
            db.add(role)
        roles[name] = role
    db.flush()
    for prior, implied in IMPLIED:
        key = (roles[prior].id, roles[implied].id)
        if db.get(ImpliedRole, key) is None:
            db.add(ImpliedRole(prior_role_id=key[0], implied_role_id=key[1]))
    projects = {}
    for name, description in (
        ("admin", "Bootstrap project for the admin user"),
        ("service", "Project of the services' own users"),
    ):
        project = db.query(Project).filter_by(name=name, domain_id=DEFAULT_DOMAIN).first()
        if project is None:
            project = Project(
                id=new_id(),
                name=name,
                domain_id=DEFAULT_DOMAIN,
                description=description,
                enabled=True,
                tags=[],
                extra={},
            )
            db.add(project)
        projects[name] = project
    db.flush()
    admin = db.query(User).filter_by(name="admin", domain_id=DEFAULT_DOMAIN).first()
    if admin is None:
        now = utcnow()
        admin = User(
            id=new_id(),
            name="admin",
            domain_id=DEFAULT_DOMAIN,
            enabled=True,
            password_hash=hash_password(admin_password(settings), settings.password_hash_rounds),
            password_changed_at=now,
            default_project_id=projects["admin"].id,
            extra={},
            options={},
            created_at=now,
        )
        db.add(admin)
        db.flush()
        for kind, target in (
            ("UserProject", projects["admin"].id),
            ("UserDomain", DEFAULT_DOMAIN),
            ("UserSystem", "system"),
        ):
            db.add(
                Assignment(
                    kind=kind,
                    actor_id=admin.id,
                    target_id=target,
                    role_id=roles["admin"].id,
                    inherited=False,
                )
            )
    if db.get(Region, settings.region) is None:
        db.add(Region(id=settings.region, description="", extra={}))
    db.flush()
    reconcile_catalog(db, settings)
    db.commit()


def reconcile_catalog(db: Session, settings: Settings) -> None:
    """Each API picocloud serves is in the catalog at this start's URL, on all interfaces."""
    for kind, name, path in SERVICES:
        service = db.query(CatalogService).filter_by(type=kind).first()
        if service is None:
            service = CatalogService(
                id=new_id(),
                type=kind,
                enabled=True,
                extra={"name": name, "description": f"picocloud {kind}"},
            )
            db.add(service)
            db.flush()
        url = settings.base_url + path
        for interface in ("public", "internal", "admin"):
            ep = db.query(Endpoint).filter_by(service_id=service.id, interface=interface).first()
            if ep is None:
                db.add(
                    Endpoint(
                        id=new_id(),
                        service_id=service.id,
                        interface=interface,
                        url=url,
                        region_id=settings.region,
                        enabled=True,
                        extra={},
                    )
                )
            elif ep.url != url:
                ep.url = url
    db.flush()


def client_config(settings: Settings) -> dict[str, Any]:
    return {
        "auth": {
            "auth_url": f"{settings.base_url}/identity/v3",
            "username": "admin",
            "password": admin_password(settings),
            "project_name": "admin",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": settings.region,
        "identity_api_version": 3,
        "interface": "public",
    }


def write_client_files(settings: Settings) -> Path:
    """Write clouds.yaml and openrc into the data dir (and merge into the user's clouds.yaml)."""
    entry = client_config(settings)
    clouds = settings.data_dir / "clouds.yaml"
    _write_private(clouds, yaml.safe_dump({"clouds": {CLOUD_NAME: entry}}, sort_keys=False))
    auth = entry["auth"]
    openrc = "".join(
        f"export {k}={shlex.quote(str(v))}\n"
        for k, v in (
            ("OS_AUTH_URL", auth["auth_url"]),
            ("OS_USERNAME", auth["username"]),
            ("OS_PASSWORD", auth["password"]),
            ("OS_PROJECT_NAME", auth["project_name"]),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_PROJECT_DOMAIN_NAME", "Default"),
            ("OS_REGION_NAME", settings.region),
            ("OS_IDENTITY_API_VERSION", 3),
            ("OS_INTERFACE", "public"),
        )
    )
    _write_private(settings.data_dir / "openrc", openrc)
    if settings.write_user_clouds_yaml:
        merge_user_clouds_yaml(Path.home() / ".config" / "openstack" / "clouds.yaml", entry)
    return clouds


def merge_user_clouds_yaml(path: Path, entry: dict[str, Any]) -> None:
    """Set our entry in the user's clouds.yaml, keeping every other cloud as it was."""
    doc: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if isinstance(loaded, dict):
            doc = loaded
    clouds = doc.get("clouds")
    if not isinstance(clouds, dict):
        clouds = doc["clouds"] = {}
    clouds[CLOUD_NAME] = entry
    _write_private(path, yaml.safe_dump(doc, sort_keys=False))
