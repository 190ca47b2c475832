"""Credentials (and their OS-EC2 view), policies, OAuth1 consumers and endpoint groups
(OS-EP-FILTER): Keystone resources with no behaviour beyond storage, kept as `Document`s."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated, Any

from pydantic import StrictStr, StringConstraints

from picocloud.errors import BadRequest, Forbidden, Unauthorized
from picocloud.http import Ctx, Reply, Route
from picocloud.identity.api.catalog import endpoint_json
from picocloud.identity.api.common import collection, identity, project_json, self_link
from picocloud.identity.catalog import Catalog
from picocloud.identity.errors import not_found
from picocloud.identity.models import Document, Endpoint, Project, User
from picocloud.identity.schemas import Closed, Id, Name255, Open

NO_CONTENT = Reply(None, status=204)
EC2 = "ec2"
Type255 = Annotated[StrictStr, StringConstraints(min_length=1, max_length=255)]


def _changes(model: Open | Closed, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields an update request sets, extras included; 400 when it sets none, or nulls a
    field that may not be null."""
    changes = {**model.model_dump(exclude_unset=True), **(model.model_extra or {})}
    if not changes:
        raise BadRequest("Invalid input for field 'body': at least one attribute is required")
    for name in required:
        if name in changes and changes[name] is None:
            raise BadRequest(f"Invalid input for field '{name}': None is not of type 'string'")
    return changes


def _same_id(changes: dict[str, Any], ident: str) -> None:
    if changes.pop("id", ident) != ident:
        raise BadRequest("Invalid input for field 'id': the id cannot be changed")


def _delegated(ctx: Ctx) -> bool:
    return bool(ctx.token.payload.trust_id or ctx.token.payload.app_cred_id)


def _in_token_project(ctx: Ctx, project_id: str | None) -> bool:
    """A trust or application credential token reaches only its own project's credentials."""
    return not _delegated(ctx) or project_id == ctx.token.project_id


def _check_token_project(ctx: Ctx, project_id: str | None) -> None:
    if not _in_token_project(ctx, project_id):
        raise Forbidden("A credential outside the project of a delegated token cannot be "
                        "managed with it.")


def _refuse_restricted_app_cred(ctx: Ctx) -> None:
    app_cred = ctx.token.app_cred
    if app_cred is not None and app_cred["restricted"]:
        raise Forbidden("Using method 'application_credential' is not allowed for managing "
                        "EC2 credentials.")


# -- credentials ----------------------------------------------------------------------------
class CredentialCreate(Open):
    type: Type255
    blob: StrictStr
    user_id: Id
    project_id: Id | None = None


class CredentialUpdate(Open):
    type: Type255 | None = None
    blob: StrictStr | None = None
    user_id: Id | None = None
    project_id: Id | None = None


def credential_json(ctx: Ctx, doc: Document) -> dict[str, Any]:
    return {**doc.body, "id": doc.id, "links": self_link(ctx, f"credentials/{doc.id}")}


def _credential_target(ctx: Ctx, cred: dict[str, Any]) -> dict[str, Any]:
    user_id = cred.get("user_id")
    user = identity(ctx).store.get(User, user_id) if isinstance(user_id, str) else None
    return {"target": {
        "credential": {"user_id": user_id, "project_id": cred.get("project_id")},
        "user": {"id": user_id},
        "domain_id": user.domain_id if user else None,
    }}


def _ec2_blob(raw: Any) -> dict[str, Any]:
    """An EC2 credential's blob: a JSON object carrying at least the access key."""
    try:
        blob = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise BadRequest("Invalid input for field 'blob': the blob is not valid JSON") from None
    if not isinstance(blob, dict) or not blob:
        raise BadRequest("Invalid input for field 'blob': expected a JSON object")
    if not isinstance(blob.get("access"), str):
        raise BadRequest("Invalid input for field 'blob': 'access' is a required property")
    return blob


def _ec2_id(access: str) -> str:
    """EC2 credentials are found by access key, so their id is its hash (as in Keystone)."""
    return hashlib.sha256(access.encode()).hexdigest()


def list_credentials(ctx: Ctx) -> dict[str, Any]:
    token = ctx.token
    ctx.authorize(_credential_target(ctx, {"user_id": token.user_id}))
    kind = ctx.q("type")
    creds = token.credentials()
    out = []
    for doc in identity(ctx).store.documents("credential", ctx.q("user_id")):
        if kind is not None and doc.body.get("type") != kind:
            continue
        target = _credential_target(ctx, doc.body)
        if (ctx.cloud.policy.allowed("identity:get_credential", creds, target)
                and _in_token_project(ctx, doc.body.get("project_id"))):
            out.append(credential_json(ctx, doc))
    return collection(ctx, "credentials", out)


def create_credential(ctx: Ctx) -> Reply:
    req = ctx.parse(CredentialCreate, "credential")
    ctx.authorize(_credential_target(ctx, {"user_id": req.user_id, "project_id": req.project_id}))
    _check_token_project(ctx, req.project_id)
    extra = {k: v for k, v in (req.model_extra or {}).items() if k != "id"}
    body = {**extra, "user_id": req.user_id, "project_id": req.project_id, "type": req.type,
            "blob": req.blob}
    ident = None
    if req.type.lower() == EC2:
        _refuse_restricted_app_cred(ctx)
        if req.project_id is None:
            raise BadRequest("Invalid input for field 'project_id': an ec2 credential "
                             "requires a project_id")
        blob = _ec2_blob(req.blob)
        ident = _ec2_id(blob["access"])
        # a delegated token's EC2 credential authenticates within the same delegation
        payload = ctx.token.payload
        if payload.trust_id:
            blob["trust_id"] = payload.trust_id
        if payload.app_cred_id:
            blob["app_cred_id"] = payload.app_cred_id
        body["blob"] = json.dumps(blob)
    doc = identity(ctx).create_document("credential", body, owner_id=req.user_id, ident=ident)
    return Reply({"credential": credential_json(ctx, doc)}, status=201)


def _credential(ctx: Ctx) -> Document:
    doc = identity(ctx).document("credential", ctx.params["credential_id"])
    ctx.authorize(_credential_target(ctx, doc.body))
    _check_token_project(ctx, doc.body.get("project_id"))
    return doc


def get_credential(ctx: Ctx) -> dict[str, Any]:
    return {"credential": credential_json(ctx, _credential(ctx))}


def update_credential(ctx: Ctx) -> dict[str, Any]:
    doc = _credential(ctx)
    changes = _changes(ctx.parse(CredentialUpdate, "credential"), ("type", "blob", "user_id"))
    _same_id(changes, doc.id)
    merged = {**doc.body, **changes}
    if str(merged.get("type", "")).lower() == EC2:
        if not merged.get("project_id"):
            raise BadRequest("Invalid input for field 'project_id': an ec2 credential "
                             "requires a project_id")
        new, old = _ec2_blob(merged["blob"]), _ec2_blob(doc.body["blob"])
        for key in ("trust_id", "app_cred_id", "access_token_id"):
            if new.get(key) != old.get(key):
                raise BadRequest(f"Invalid input for field 'blob': {key} can not be updated "
                                 "for credential")
    if merged["user_id"] != doc.body["user_id"]:  # giving it away needs the right over both
        target = _credential_target(ctx, merged)
        if not ctx.cloud.policy.allowed("identity:update_credential",
                                        ctx.token.credentials(), target):
            raise Forbidden("You are not authorized to perform the requested action: "
                            "identity:update_credential.")
    doc.body = merged
    doc.owner_id = merged["user_id"]
    identity(ctx).db.flush()
    return {"credential": credential_json(ctx, doc)}


def delete_credential(ctx: Ctx) -> Reply:
    doc = _credential(ctx)
    identity(ctx).store.remove(doc)
    return NO_CONTENT


# -- OS-EC2: a user's credentials of type ec2, addressed by access key ---------------------------
def _ec2_json(ctx: Ctx, doc: Document) -> dict[str, Any]:
    blob = _ec2_blob(doc.body["blob"])
    user_id = doc.body["user_id"]
    return {
        "user_id": user_id,
        "tenant_id": doc.body.get("project_id"),
        "access": blob["access"],
        "secret": blob.get("secret"),
        "trust_id": blob.get("trust_id"),
        "links": self_link(ctx, f"users/{user_id}/credentials/OS-EC2/{blob['access']}"),
    }


def list_ec2(ctx: Ctx) -> dict[str, Any]:
    user_id = ctx.params["user_id"]
    ctx.authorize(_credential_target(ctx, {"user_id": user_id}))
    svc = identity(ctx)
    svc.user(user_id)
    docs = [d for d in svc.store.documents("credential", user_id)
            if d.body.get("type") == EC2 and _in_token_project(ctx, d.body.get("project_id"))]
    return collection(ctx, "credentials", [_ec2_json(ctx, d) for d in docs])


def create_ec2(ctx: Ctx) -> Reply:
    user_id = ctx.params["user_id"]
    ctx.authorize(_credential_target(ctx, {"user_id": user_id}))
    _refuse_restricted_app_cred(ctx)
    svc = identity(ctx)
    svc.user(user_id)
    tenant_id = ctx.body.get("tenant_id") if isinstance(ctx.body, dict) else None
    if not isinstance(tenant_id, str):
        raise BadRequest("Invalid input for field 'tenant_id': 'tenant_id' is a required property")
    svc.project(tenant_id)
    _check_token_project(ctx, tenant_id)
    access = uuid.uuid4().hex
    blob = {"access": access, "secret": uuid.uuid4().hex, "trust_id": ctx.token.payload.trust_id}
    body = {"user_id": user_id, "project_id": tenant_id, "type": EC2, "blob": json.dumps(blob)}
    doc = svc.create_document("credential", body, owner_id=user_id, ident=_ec2_id(access))
    return Reply({"credential": _ec2_json(ctx, doc)}, status=201)


def _ec2(ctx: Ctx) -> Document:
    user_id, access = ctx.params["user_id"], ctx.params["access"]
    svc = identity(ctx)
    doc = svc.store.document("credential", _ec2_id(access))
    if doc is None or doc.body.get("user_id") != user_id:
        raise not_found("credential", access)
    ctx.authorize(_credential_target(ctx, doc.body))
    svc.user(user_id)
    if doc.body.get("type") != EC2:
        raise Unauthorized("EC2 access key not found.")
    _check_token_project(ctx, doc.body.get("project_id"))
    return doc


def get_ec2(ctx: Ctx) -> dict[str, Any]:
    return {"credential": _ec2_json(ctx, _ec2(ctx))}


def delete_ec2(ctx: Ctx) -> Reply:
    doc = _ec2(ctx)
    identity(ctx).store.remove(doc)
    return NO_CONTENT


# -- policies (blobs stored for other services; picocloud does not read them) -----------------
class PolicyCreate(Open):
    blob: StrictStr
    type: Type255


class PolicyUpdate(Open):
    blob: StrictStr | None = None
    type: Type255 | None = None


def policy_json(ctx: Ctx, doc: Document) -> dict[str, Any]:
    return {**doc.body, "id": doc.id, "links": self_link(ctx, f"policies/{doc.id}")}


def list_policies(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    kind = ctx.q("type")
    docs = [d for d in identity(ctx).store.documents("policy")
            if kind is None or d.body.get("type") == kind]
    return collection(ctx, "policies", [policy_json(ctx, d) for d in docs])


def create_policy(ctx: Ctx) -> Reply:
    ctx.authorize()
    req = ctx.parse(PolicyCreate, "policy")
    extra = {k: v for k, v in (req.model_extra or {}).items() if k != "id"}
    doc = identity(ctx).create_document("policy", {**extra, "blob": req.blob, "type": req.type})
    return Reply({"policy": policy_json(ctx, doc)}, status=201)


def get_policy(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    return {"policy": policy_json(ctx, identity(ctx).document("policy", ctx.params["policy_id"]))}


def update_policy(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    svc = identity(ctx)
    doc = svc.document("policy", ctx.params["policy_id"])
    changes = _changes(ctx.parse(PolicyUpdate, "policy"), ("blob", "type"))
    _same_id(changes, doc.id)
    doc.body = {**doc.body, **changes}
    svc.db.flush()
    return {"policy": policy_json(ctx, doc)}


def delete_policy(ctx: Ctx) -> Reply:
    ctx.authorize()
    svc = identity(ctx)
    svc.store.remove(svc.document("policy", ctx.params["policy_id"]))
    return NO_CONTENT


# -- OS-OAUTH1 consumers --------------------------------------------------------------------
class ConsumerCreate(Open):
    description: StrictStr | None = None


def consumer_json(ctx: Ctx, doc: Document) -> dict[str, Any]:
    body = {k: v for k, v in doc.body.items() if k != "secret"}
    return {**body, "id": doc.id, "links": self_link(ctx, f"OS-OAUTH1/consumers/{doc.id}")}


def list_consumers(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    docs = identity(ctx).store.documents("consumer")
    return collection(ctx, "consumers", [consumer_json(ctx, d) for d in docs])


def create_consumer(ctx: Ctx) -> Reply:
    ctx.authorize()
    body = ctx.body if isinstance(ctx.body, dict) else {}
    req = ctx.parse(ConsumerCreate, "consumer") if "consumer" in body else ConsumerCreate()
    extra = {k: v for k, v in (req.model_extra or {}).items() if k not in ("id", "secret")}
    secret = uuid.uuid4().hex
    doc = identity(ctx).create_document(
        "consumer", {**extra, "description": req.description, "secret": secret}
    )
    return Reply({"consumer": {**consumer_json(ctx, doc), "secret": secret}}, status=201)


def get_consumer(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    doc = identity(ctx).document("consumer", ctx.params["consumer_id"])
    return {"consumer": consumer_json(ctx, doc)}


def update_consumer(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    svc = identity(ctx)
    doc = svc.document("consumer", ctx.params["consumer_id"])
    changes = _changes(ctx.parse(ConsumerCreate, "consumer"))
    if "secret" in changes:
        raise BadRequest("Invalid input for field 'secret': a consumer's secret cannot be changed")
    _same_id(changes, doc.id)
    doc.body = {**doc.body, **changes}
    svc.db.flush()
    return {"consumer": consumer_json(ctx, doc)}


def delete_consumer(ctx: Ctx) -> Reply:
    ctx.authorize()
    svc = identity(ctx)
    svc.store.remove(svc.document("consumer", ctx.params["consumer_id"]))
    return NO_CONTENT


# -- OS-EP-FILTER endpoint groups -------------------------------------------------------------
FILTER_KEYS = ("service_id", "region_id", "interface")
INTERFACES = ("admin", "internal", "public")


class EndpointGroupCreate(Closed):
    name: Name255
    description: StrictStr | None = None
    filters: dict[str, Any]


class EndpointGroupUpdate(Closed):
    name: Name255 | None = None
    description: StrictStr | None = None
    filters: dict[str, Any] | None = None


def _check_filters(filters: Any) -> dict[str, Any]:
    if not isinstance(filters, dict) or not filters:
        raise BadRequest("Invalid input for field 'filters': filters is required and "
                         "cannot be empty")
    for key, value in filters.items():
        if key not in FILTER_KEYS:
            raise BadRequest("Invalid input for field 'filters': only service_id, region_id "
                             f"or interface can filter endpoints, not {key!r}")
        if key == "interface" and value not in INTERFACES:
            raise BadRequest("Invalid input for field 'filters.interface': expected one of "
                             + ", ".join(INTERFACES))
        if not isinstance(value, str) and not (key == "region_id" and value is None):
            raise BadRequest(f"Invalid input for field 'filters.{key}': expected a string")
    return filters


def endpoint_group_json(ctx: Ctx, doc: Document) -> dict[str, Any]:
    b = doc.body
    return {"id": doc.id, "name": b["name"], "description": b.get("description"),
            "filters": b["filters"],
            "links": self_link(ctx, f"OS-EP-FILTER/endpoint_groups/{doc.id}")}


def list_endpoint_groups(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    name = ctx.q("name")
    docs = [d for d in identity(ctx).store.documents("endpoint_group")
            if name is None or d.body.get("name") == name]
    return collection(ctx, "endpoint_groups", [endpoint_group_json(ctx, d) for d in docs])


def create_endpoint_group(ctx: Ctx) -> Reply:
    ctx.authorize()
    req = ctx.parse(EndpointGroupCreate, "endpoint_group")
    body = {"name": req.name, "description": req.description,
            "filters": _check_filters(req.filters), "project_ids": []}
    doc = identity(ctx).create_document("endpoint_group", body)
    return Reply({"endpoint_group": endpoint_group_json(ctx, doc)}, status=201)


def _endpoint_group(ctx: Ctx) -> Document:
    return identity(ctx).document("endpoint_group", ctx.params["endpoint_group_id"])


def get_endpoint_group(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    return {"endpoint_group": endpoint_group_json(ctx, _endpoint_group(ctx))}


def update_endpoint_group(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    doc = _endpoint_group(ctx)
    changes = _changes(ctx.parse(EndpointGroupUpdate, "endpoint_group"), ("name", "filters"))
    if "filters" in changes:
        _check_filters(changes["filters"])
    doc.body = {**doc.body, **changes}
    identity(ctx).db.flush()
    return {"endpoint_group": endpoint_group_json(ctx, doc)}


def delete_endpoint_group(ctx: Ctx) -> Reply:
    ctx.authorize()
    identity(ctx).store.remove(_endpoint_group(ctx))
    return NO_CONTENT


def _group_and_project(ctx: Ctx) -> tuple[Document, Project]:
    ctx.authorize()
    return _endpoint_group(ctx), identity(ctx).project(ctx.params["project_id"])


def add_group_to_project(ctx: Ctx) -> Reply:
    doc, project = _group_and_project(ctx)
    if project.id not in doc.body.get("project_ids", []):
        doc.body = {**doc.body, "project_ids": [*doc.body.get("project_ids", []), project.id]}
        identity(ctx).db.flush()
    return NO_CONTENT


def _association(ctx: Ctx) -> tuple[Document, Project]:
    doc, project = _group_and_project(ctx)
    if project.id not in doc.body.get("project_ids", []):
        raise not_found("endpoint group association",
                        f"endpoint group {doc.id} with project {project.id}")
    return doc, project


def get_group_in_project(ctx: Ctx) -> dict[str, Any]:
    doc, project = _association(ctx)
    return {"project_endpoint_group": {
        "endpoint_group_id": doc.id, "project_id": project.id,
        "links": self_link(ctx, f"OS-EP-FILTER/endpoint_groups/{doc.id}/projects/{project.id}"),
    }}


def remove_group_from_project(ctx: Ctx) -> Reply:
    doc, project = _association(ctx)
    doc.body = {**doc.body, "project_ids": [p for p in doc.body["project_ids"] if p != project.id]}
    identity(ctx).db.flush()
    return NO_CONTENT


def projects_of_group(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    store = identity(ctx).store
    found = (store.get(Project, p) for p in _endpoint_group(ctx).body.get("project_ids", []))
    return collection(ctx, "projects", [project_json(ctx, p) for p in found if p is not None])


def endpoints_of_group(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    filters = _endpoint_group(ctx).body["filters"]
    rows = [e for e in Catalog(ctx.db).store.list(Endpoint)
            if all(getattr(e, key) == value for key, value in filters.items())]
    return collection(ctx, "endpoints", [endpoint_json(ctx, e) for e in rows])


def groups_of_project(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    project = identity(ctx).project(ctx.params["project_id"])
    docs = [d for d in identity(ctx).store.documents("endpoint_group")
            if project.id in d.body.get("project_ids", [])]
    return collection(ctx, "endpoint_groups", [endpoint_group_json(ctx, d) for d in docs])


_EC2 = "/v3/users/{user_id}/credentials/OS-EC2"
_CONSUMERS = "/v3/OS-OAUTH1/consumers"
_GROUPS = "/v3/OS-EP-FILTER/endpoint_groups"
_GROUP = _GROUPS + "/{endpoint_group_id}"

ROUTES = [
    Route("GET", "/v3/credentials", list_credentials, "identity:list_credentials"),
    Route("POST", "/v3/credentials", create_credential, "identity:create_credential"),
    Route("GET", "/v3/credentials/{credential_id}", get_credential, "identity:get_credential"),
    Route("PATCH", "/v3/credentials/{credential_id}", update_credential,
          "identity:update_credential"),
    Route("DELETE", "/v3/credentials/{credential_id}", delete_credential,
          "identity:delete_credential"),
    Route("GET", _EC2, list_ec2, "identity:ec2_list_credentials"),
    Route("POST", _EC2, create_ec2, "identity:ec2_create_credential"),
    Route("GET", _EC2 + "/{access}", get_ec2, "identity:ec2_get_credential"),
    Route("DELETE", _EC2 + "/{access}", delete_ec2, "identity:ec2_delete_credential"),
    Route("GET", "/v3/policies", list_policies, "identity:list_policies"),
    Route("POST", "/v3/policies", create_policy, "identity:create_policy"),
    Route("GET", "/v3/policies/{policy_id}", get_policy, "identity:get_policy"),
    Route("PATCH", "/v3/policies/{policy_id}", update_policy, "identity:update_policy"),
    Route("DELETE", "/v3/policies/{policy_id}", delete_policy, "identity:delete_policy"),
    Route("GET", _CONSUMERS, list_consumers, "identity:list_consumers"),
    Route("POST", _CONSUMERS, create_consumer, "identity:create_consumer"),
    Route("GET", _CONSUMERS + "/{consumer_id}", get_consumer, "identity:get_consumer"),
    Route("PATCH", _CONSUMERS + "/{consumer_id}", update_consumer, "identity:update_consumer"),
    Route("DELETE", _CONSUMERS + "/{consumer_id}", delete_consumer, "identity:delete_consumer"),
    Route("GET", _GROUPS, list_endpoint_groups, "identity:list_endpoint_groups"),
    Route("POST", _GROUPS, create_endpoint_group, "identity:create_endpoint_group"),
    Route("GET", _GROUP, get_endpoint_group, "identity:get_endpoint_group"),
    Route("PATCH", _GROUP, update_endpoint_group, "identity:update_endpoint_group"),
    Route("DELETE", _GROUP, delete_endpoint_group, "identity:delete_endpoint_group"),
    Route("GET", _GROUP + "/projects", projects_of_group,
          "identity:list_projects_associated_with_endpoint_group"),
    Route("GET", _GROUP + "/endpoints", endpoints_of_group,
          "identity:list_endpoints_associated_with_endpoint_group"),
    Route("PUT", _GROUP + "/projects/{project_id}", add_group_to_project,
          "identity:add_endpoint_group_to_project"),
    Route("GET", _GROUP + "/projects/{project_id}", get_group_in_project,
          "identity:get_endpoint_group_in_project"),
    Route("DELETE", _GROUP + "/projects/{project_id}", remove_group_from_project,
          "identity:remove_endpoint_group_from_project"),
    Route("GET", "/v3/OS-EP-FILTER/projects/{project_id}/endpoint_groups", groups_of_project,
          "identity:list_endpoint_groups_for_project"),
]
