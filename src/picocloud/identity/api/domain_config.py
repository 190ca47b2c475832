"""Domain-specific configuration (`/v3/domains/{domain_id}/config`), Keystone's semantics.

Only the `identity` and `ldap` groups and their whitelisted options may be set; `ldap.password`
is kept but never shown. picocloud stores the options (one `Document` per domain) and does
not yet act on them. Keystone answers an unsupported group or option with 403.
"""

from __future__ import annotations

import copy
from typing import Any

from picocloud.errors import BadRequest, Forbidden, NotFound
from picocloud.http import Ctx, Reply, Route
from picocloud.identity.api.common import identity
from picocloud.identity.models import Document

NO_CONTENT = Reply(None, status=204)
KIND = "domain_config"

# Keystone's defaults for every option a domain may override.
DEFAULTS: dict[str, dict[str, Any]] = {
    "identity": {"driver": "sql", "list_limit": None},
    "ldap": {
        "url": "ldap://localhost", "user": None, "suffix": "cn=example,cn=com",
        "query_scope": "one", "page_size": 0, "alias_dereferencing": "default",
        "debug_level": None, "chase_referrals": None, "user_tree_dn": None, "user_filter": None,
        "user_objectclass": "inetOrgPerson", "user_id_attribute": "cn",
        "user_name_attribute": "sn", "user_mail_attribute": "mail",
        "user_description_attribute": "description", "user_pass_attribute": "userPassword",
        "user_enabled_attribute": "enabled", "user_enabled_invert": False,
        "user_enabled_mask": 0, "user_enabled_default": "True",
        "user_attribute_ignore": ["default_project_id"],
        "user_default_project_id_attribute": None, "user_enabled_emulation": False,
        "user_enabled_emulation_dn": None, "user_enabled_emulation_use_group_config": False,
        "user_additional_attribute_mapping": [], "group_tree_dn": None, "group_filter": None,
        "group_objectclass": "groupOfNames", "group_id_attribute": "cn",
        "group_name_attribute": "ou", "group_members_are_ids": False,
        "group_member_attribute": "member", "group_desc_attribute": "description",
        "group_attribute_ignore": [], "group_additional_attribute_mapping": [],
        "tls_cacertfile": None, "tls_cacertdir": None, "use_tls": False,
        "tls_req_cert": "demand", "use_pool": True, "pool_size": 10, "pool_retry_max": 3,
        "pool_retry_delay": 0.1, "pool_connection_timeout": -1,
        "pool_connection_lifetime": 600, "use_auth_pool": True, "auth_pool_size": 100,
        "auth_pool_connection_lifetime": 60,
    },
}
SENSITIVE: dict[str, set[str]] = {"identity": set(), "ldap": {"password"}}


def invalid(reason: str) -> Forbidden:
    return Forbidden(f"Invalid domain specific configuration: {reason}.")


def config_not_found(domain_id: str, group: str | None, option: str | None) -> NotFound:
    what = (f"option {option} in group {group}" if option
            else f"group {group}" if group else "any options")
    return NotFound(f"Could not find {what} in domain configuration for domain {domain_id}.")


def check_group_option(group: str | None, option: str | None) -> None:
    if group is None:
        return
    if group not in DEFAULTS:
        raise invalid(f"Group {group} is not supported for domain specific configurations")
    if option is not None and option not in DEFAULTS[group] and option not in SENSITIVE[group]:
        raise invalid(f"Option {option} in group {group} is not supported for domain "
                      "specific configurations")


def check_config(config: dict[str, Any]) -> None:
    if not config:
        raise invalid("No options specified")
    for group, options in config.items():
        if not isinstance(options, dict) or not options:
            raise invalid(f"The value of group {group} specified in the config should be a "
                          "dictionary of options")
        for option in options:
            check_group_option(group, option)


def visible(config: dict[str, Any]) -> dict[str, Any]:
    """The config without its sensitive options."""
    out: dict[str, Any] = {}
    for group, options in config.items():
        shown = {k: v for k, v in options.items() if k not in SENSITIVE.get(group, set())}
        if shown:
            out[group] = shown
    return out


def _body_config(ctx: Ctx) -> dict[str, Any]:
    config = ctx.body.get("config", {}) if isinstance(ctx.body, dict) else {}
    if not isinstance(config, dict):
        raise BadRequest("Invalid input for field 'config': expected an object")
    return config


def _stored(ctx: Ctx, domain_id: str) -> Document | None:
    return identity(ctx).store.document(KIND, domain_id)


def _target(ctx: Ctx) -> tuple[str, str | None, str | None]:
    """Authorize against the domain in the path, then make sure it exists."""
    domain_id = ctx.params["domain_id"]
    ctx.authorize({"target": {"domain": {"id": domain_id}, "domain_id": domain_id}})
    identity(ctx).domain(domain_id)
    return domain_id, ctx.params.get("group"), ctx.params.get("option")


def _save(ctx: Ctx, domain_id: str, doc: Document | None, config: dict[str, Any]) -> None:
    svc = identity(ctx)
    if doc is None:
        svc.create_document(KIND, config, owner_id=domain_id, ident=domain_id)
    elif config:
        doc.body = config
        svc.db.flush()
    else:  # nothing left: gone, so that the next PUT creates again
        svc.store.remove(doc)


def create_config(ctx: Ctx) -> Reply:
    domain_id, _, _ = _target(ctx)
    config = _body_config(ctx)
    check_config(config)
    doc = _stored(ctx, domain_id)
    existed = doc is not None and bool(doc.body)
    _save(ctx, domain_id, doc, copy.deepcopy(config))
    return Reply({"config": visible(config)}, status=200 if existed else 201)


def get_config(ctx: Ctx) -> dict[str, Any]:
    domain_id, group, option = _target(ctx)
    check_group_option(group, option)
    doc = _stored(ctx, domain_id)
    config = visible(doc.body) if doc else {}
    if group is not None:
        config = {group: config[group]} if group in config else {}
    if option is not None:
        if option not in config.get(group or "", {}):
            raise config_not_found(domain_id, group, option)
        return {"config": {option: config[group or ""][option]}}
    if not config:
        raise config_not_found(domain_id, group, option)
    return {"config": config}


def update_config(ctx: Ctx) -> dict[str, Any]:
    """Merge options into the config; on a group or option path, only that group or option,
    which must already be set."""
    domain_id, group, option = _target(ctx)
    update = _body_config(ctx)
    if group is not None and option is not None:
        update = {group: update}
    check_config(update)
    check_group_option(group, option)
    doc = _stored(ctx, domain_id)
    current: dict[str, Any] = copy.deepcopy(doc.body) if doc else {}
    if group is not None:
        if len(update) != 1 or (option is not None and len(update.get(group, {})) != 1):
            only = f"option {option} in group {group}" if option else f"group {group}"
            raise invalid(f"Trying to update {only}, so that, and only that, "
                          f"{'option' if option else 'group'} must be specified in the config")
        if group not in update:
            raise invalid(f"request to update group {group}, but config provided contains "
                          f"group {next(iter(update))} instead")
        if option is not None and option not in update[group]:
            raise invalid(f"Trying to update option {option} in group {group}, but config "
                          f"provided contains option {next(iter(update[group]))} instead")
        if group not in current or (option is not None and option not in current[group]):
            raise config_not_found(domain_id, group, option)
    for name, options in update.items():
        current[name] = {**current.get(name, {}), **options}
    _save(ctx, domain_id, doc, current)
    return {"config": visible(current)}


def delete_config(ctx: Ctx) -> Reply:
    domain_id, group, option = _target(ctx)
    check_group_option(group, option)
    doc = _stored(ctx, domain_id)
    current: dict[str, Any] = copy.deepcopy(doc.body) if doc else {}
    if group is None:
        current = {}
    elif option is None:
        if not current.get(group):
            raise config_not_found(domain_id, group, None)
        del current[group]
    else:
        if option not in current.get(group, {}):
            raise config_not_found(domain_id, group, option)
        del current[group][option]
        if not current[group]:
            del current[group]
    if doc is not None:
        _save(ctx, domain_id, doc, current)
    return NO_CONTENT


def get_default(ctx: Ctx) -> dict[str, Any]:
    ctx.authorize()
    group, option = ctx.params.get("group"), ctx.params.get("option")
    check_group_option(group, option)
    if group is None:
        return {"config": copy.deepcopy(DEFAULTS)}
    if option is None:
        return {"config": {group: copy.deepcopy(DEFAULTS[group])}}
    if option not in DEFAULTS[group]:
        raise invalid(f"Reading the default for option {option} in group {group} is not "
                      "supported")
    return {"config": {option: copy.deepcopy(DEFAULTS[group][option])}}


_CONFIG = "/v3/domains/{domain_id}/config"
_DEFAULT = "/v3/domains/config"

# The defaults come first: /v3/domains/config/... must never be read as a domain id.
ROUTES = [
    Route("GET", _DEFAULT + "/default", get_default, "identity:get_domain_config_default"),
    Route("GET", _DEFAULT + "/{group}/default", get_default,
          "identity:get_domain_config_default"),
    Route("GET", _DEFAULT + "/{group}/{option}/default", get_default,
          "identity:get_domain_config_default"),
]
for _path in (_CONFIG, _CONFIG + "/{group}", _CONFIG + "/{group}/{option}"):
    ROUTES += [
        Route("GET", _path, get_config, "identity:get_domain_config"),
        Route("PATCH", _path, update_config, "identity:update_domain_config"),
        Route("DELETE", _path, delete_config, "identity:delete_domain_config"),
    ]
ROUTES.append(Route("PUT", _CONFIG, create_config, "identity:create_domain_config"))
