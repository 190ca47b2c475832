"""The service catalog: regions, services and endpoints, and the catalog tokens carry."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from picocloud.errors import BadRequest
from picocloud.identity.errors import duplicate, not_found
from picocloud.identity.models import CatalogService, Endpoint, Region
from picocloud.identity.service import new_id
from picocloud.identity.store import IdentityStore

INTERFACES = ("public", "internal", "admin")


def build_catalog(db: Session) -> list[dict[str, Any]]:
    services = db.scalars(select(CatalogService).order_by(CatalogService.type)).all()
    endpoints = db.scalars(select(Endpoint).order_by(Endpoint.interface)).all()
    by_service: dict[str, list[dict[str, Any]]] = {}
    for ep in endpoints:
        if ep.enabled:
            by_service.setdefault(ep.service_id, []).append(
                {
                    "id": ep.id,
                    "interface": ep.interface,
                    "region": ep.region_id,
                    "region_id": ep.region_id,
                    "url": ep.url,
                }
            )
    return [
        {
            "endpoints": by_service.get(s.id, []),
            "id": s.id,
            "type": s.type,
            "name": s.extra.get("name", ""),
        }
        for s in services
        if s.enabled
    ]


class Catalog:
    def __init__(self, db: Session) -> None:
        self.db = db
        self.store = IdentityStore(db)

    # -- regions ---------------------------------------------------------------------------
    def region(self, ident: str) -> Region:
        found = self.store.get(Region, ident)
        if found is None:
            raise not_found("region", ident)
        return found

    def create_region(self, body: dict[str, Any], ident: str | None = None) -> Region:
        ident = ident or body.get("id") or new_id()
        if self.store.get(Region, ident) is not None:
            raise duplicate("region", f"ID {ident}")
        parent = body.get("parent_region_id")
        if parent is not None:
            self._check_parent(ident, parent)
        region = Region(
            id=ident,
            description=body.get("description") or "",
            parent_region_id=parent,
            extra={
                k: v for k, v in body.items() if k not in ("id", "description", "parent_region_id")
            },
        )
        self.store.add(region)
        return region

    def _check_parent(self, ident: str, parent: str) -> None:
        seen = {ident}
        node: str | None = parent
        while node is not None:
            if node in seen:
                raise BadRequest("The specified parent region would create a circular hierarchy.")
            seen.add(node)
            found = self.store.get(Region, node)
            if found is None:
                raise BadRequest(f"The parent region {node} does not exist.")
            node = found.parent_region_id

    def update_region(self, region: Region, body: dict[str, Any]) -> Region:
        if "description" in body:
            region.description = body["description"] or ""
        if "parent_region_id" in body:
            if body["parent_region_id"] is not None:
                self._check_parent(region.id, body["parent_region_id"])
            region.parent_region_id = body["parent_region_id"]
        extra = {
            k: v for k, v in body.items() if k not in ("id", "description", "parent_region_id")
        }
        region.extra = {**region.extra, **extra}
        self.db.flush()
        return region

    def delete_region(self, region: Region) -> None:
        if self.store.list(Region, parent_region_id=region.id):
            raise BadRequest("Cannot delete a region that has child regions.")
        self.store.remove(region)

    # -- services --------------------------------------------------------------------------
    def service(self, ident: str) -> CatalogService:
        found = self.store.get(CatalogService, ident)
        if found is None:
            raise not_found("service", ident)
        return found

    def create_service(self, body: dict[str, Any]) -> CatalogService:
        kind = body.get("type")
        if not isinstance(kind, str) or not kind or len(kind) > 255:
            raise BadRequest("Invalid input for field 'type': a non-empty string is required")
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise BadRequest("Invalid input for field 'enabled': expected a boolean")
        svc = CatalogService(
            id=new_id(),
            type=kind,
            enabled=enabled,
            extra={k: v for k, v in body.items() if k not in ("id", "type", "enabled")},
        )
        self.store.add(svc)
        return svc

    def update_service(self, svc: CatalogService, body: dict[str, Any]) -> CatalogService:
        if "type" in body:
            if not isinstance(body["type"], str) or not body["type"]:
                raise BadRequest("Invalid input for field 'type': a non-empty string is required")
            svc.type = body["type"]
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                raise BadRequest("Invalid input for field 'enabled': expected a boolean")
            svc.enabled = body["enabled"]
        svc.extra = {
            **svc.extra,
            **{k: v for k, v in body.items() if k not in ("id", "type", "enabled")},
        }
        self.db.flush()
        return svc

    # -- endpoints -------------------------------------------------------------------------
    def endpoint(self, ident: str) -> Endpoint:
        found = self.store.get(Endpoint, ident)
        if found is None:
            raise not_found("endpoint", ident)
        return found

    def _endpoint_fields(self, body: dict[str, Any], partial: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "interface" in body or not partial:
            if body.get("interface") not in INTERFACES:
                raise BadRequest(
                    "Invalid input for field 'interface': expected one of public, internal, admin"
                )
            out["interface"] = body["interface"]
        if "url" in body or not partial:
            url = body.get("url")
            if not isinstance(url, str) or not url:
                raise BadRequest("Invalid input for field 'url': a URL is required")
            out["url"] = url
        if "service_id" in body or not partial:
            sid = body.get("service_id")
            if not isinstance(sid, str):
                raise BadRequest("Invalid input for field 'service_id': required")
            if self.store.get(CatalogService, sid) is None:
                raise BadRequest(f"Invalid input for field 'service_id': no service {sid}")
            out["service_id"] = sid
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                raise BadRequest("Invalid input for field 'enabled': expected a boolean")
            out["enabled"] = body["enabled"]
        region = body.get("region_id", body.get("region"))
        if region is not None:
            if not isinstance(region, str) or not region:
                raise BadRequest("Invalid input for field 'region_id': expected a region id")
            if self.store.get(Region, region) is None:  # Keystone creates it on the fly
                self.store.add(Region(id=region, description="", extra={}))
            out["region_id"] = region
        elif "region_id" in body or "region" in body:
            out["region_id"] = None
        return out

    def create_endpoint(self, body: dict[str, Any]) -> Endpoint:
        fields = self._endpoint_fields(body, partial=False)
        ep = Endpoint(id=new_id(), **fields)
        ep.extra = {
            k: v
            for k, v in body.items()
            if k
            not in (
                "id",
                "interface",
                "url",
                "service_id",
                "enabled",
                "region_id",
                "region",
                "legacy_endpoint_id",
            )
        }
        self.store.add(ep)
        return ep

    def update_endpoint(self, ep: Endpoint, body: dict[str, Any]) -> Endpoint:
        for key, value in self._endpoint_fields(body, partial=True).items():
            setattr(ep, key, value)
        self.db.flush()
        return ep
