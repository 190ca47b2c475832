"""Default identity policy rules, Keystone's semantics; an operator's policy file overrides any.

A project-scoped or system-scoped `admin` is a cloud admin (as in Keystone, so that Tempest's
and the CLI's admin users work); a domain-scoped `admin` manages only its domain. Targets
always carry `target.domain_id`, the domain the resource belongs to.
"""

from __future__ import annotations

BASE = {
    "cloud_admin": "role:admin and not scope:domain",
    "domain_admin": "role:admin and scope:domain and domain_id:%(target.domain_id)s",
    "admin_required": "rule:cloud_admin or rule:domain_admin",
    "system_reader": "role:reader and system_scope:all",
    "domain_reader": "role:reader and scope:domain and domain_id:%(target.domain_id)s",
    "reader": "rule:cloud_admin or rule:system_reader or rule:domain_reader",
    "manager": "rule:cloud_admin or rule:domain_admin",
    "service_role": "role:service",
    "owner": "user_id:%(target.user.id)s",
    "token_subject": "user_id:%(target.token.user_id)s",
}


def _crud(names: list[str], read: str, write: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in names:
        out[f"identity:get_{name}"] = read
        out[f"identity:list_{name}s"] = read
        for verb in ("create", "update", "delete"):
            out[f"identity:{verb}_{name}"] = write
    return out


DEFAULT_RULES: dict[str, str] = {
    **BASE,
    # domains
    **_crud(["domain"], "rule:cloud_admin or rule:system_reader", "rule:cloud_admin"),
    "identity:get_domain": (
        "rule:cloud_admin or rule:system_reader or domain_id:%(target.domain.id)s"
        " or project_domain_id:%(target.domain.id)s"
    ),
    # projects, users, groups: managed by cloud admins and their domain's admins
    **_crud(["project", "user", "group"], "rule:reader", "rule:manager"),
    "identity:get_project": "rule:reader or project_id:%(target.project.id)s",
    "identity:get_user": "rule:reader or rule:owner",
    "identity:get_group": "rule:reader",
    "identity:list_user_projects": "rule:reader or rule:owner",
    "identity:list_groups_for_user": "rule:reader or rule:owner",
    "identity:list_users_in_group": "rule:reader",
    "identity:check_user_in_group": "rule:reader",
    "identity:add_user_to_group": "rule:manager",
    "identity:remove_user_from_group": "rule:manager",
    "identity:get_project_tag": "rule:reader or project_id:%(target.project.id)s",
    "identity:list_project_tags": "rule:reader or project_id:%(target.project.id)s",
    "identity:update_project_tags": "rule:manager",
    "identity:create_project_tag": "rule:manager",
    "identity:delete_project_tag": "rule:manager",
    "identity:delete_project_tags": "rule:manager",
    "identity:list_projects_for_user": "@",
    "identity:list_domains_for_user": "@",
    "identity:get_auth_catalog": "@",
    "identity:get_auth_projects": "@",
    "identity:get_auth_domains": "@",
    "identity:get_auth_system": "@",
    # roles and grants
    **_crud(["role", "domain_role", "implied_role"],
            "rule:cloud_admin or rule:system_reader or rule:domain_reader", "rule:cloud_admin"),
    "identity:list_role_inference_rules": "rule:cloud_admin or rule:system_reader",
    "identity:check_implied_role": "rule:cloud_admin or rule:system_reader",
    "identity:list_role_assignments": "rule:reader or rule:owner",
    "identity:list_role_assignments_for_tree": "rule:reader",
    "identity:check_grant": "rule:reader",
    "identity:list_grants": "rule:reader",
    "identity:create_grant": "rule:manager",
    "identity:revoke_grant": "rule:manager",
    "identity:check_system_grant": "rule:cloud_admin or rule:system_reader",
    "identity:list_system_grants": "rule:cloud_admin or rule:system_reader",
    "identity:create_system_grant": "rule:cloud_admin",
    "identity:revoke_system_grant": "rule:cloud_admin",
    # catalog
    **_crud(["region"], "@", "rule:cloud_admin"),
    **_crud(["service", "endpoint", "endpoint_group", "policy", "consumer"],
            "rule:cloud_admin or rule:system_reader", "rule:cloud_admin"),
    "identity:list_policies": "rule:cloud_admin or rule:system_reader",
    "identity:list_projects_associated_with_endpoint_group": (
        "rule:cloud_admin or rule:system_reader"
    ),
    "identity:list_endpoints_associated_with_endpoint_group": (
        "rule:cloud_admin or rule:system_reader"
    ),
    "identity:get_endpoint_group_in_project": "rule:cloud_admin or rule:system_reader",
    "identity:list_endpoint_groups_for_project": "rule:cloud_admin or rule:system_reader",
    "identity:add_endpoint_group_to_project": "rule:cloud_admin",
    "identity:remove_endpoint_group_from_project": "rule:cloud_admin",
    "identity:get_domain_config": "rule:cloud_admin or rule:system_reader",
    "identity:create_domain_config": "rule:cloud_admin",
    "identity:update_domain_config": "rule:cloud_admin",
    "identity:delete_domain_config": "rule:cloud_admin",
    "identity:get_domain_config_default": "@",
    # tokens
    "identity:validate_token": (
        "rule:cloud_admin or rule:system_reader or rule:service_role or rule:token_subject"
    ),
    "identity:check_token": (
        "rule:cloud_admin or rule:system_reader or rule:service_role or rule:token_subject"
    ),
    "identity:revoke_token": "rule:cloud_admin or rule:service_role or rule:token_subject",
    # credentials and application credentials: their owner, or a cloud admin
    "identity:get_credential": "rule:cloud_admin or rule:system_reader or rule:owner",
    "identity:list_credentials": "rule:cloud_admin or rule:system_reader or rule:owner",
    "identity:create_credential": "rule:cloud_admin or rule:owner",
    "identity:update_credential": "rule:cloud_admin or rule:owner",
    "identity:delete_credential": "rule:cloud_admin or rule:owner",
    "identity:ec2_get_credential": "rule:cloud_admin or rule:system_reader or rule:owner",
    "identity:ec2_list_credentials": "rule:cloud_admin or rule:system_reader or rule:owner",
    "identity:ec2_create_credential": "rule:cloud_admin or rule:owner",
    "identity:ec2_delete_credential": "rule:cloud_admin or rule:owner",
    "identity:get_application_credential": "rule:cloud_admin or rule:system_reader or rule:owner",
    "identity:list_application_credentials": (
        "rule:cloud_admin or rule:system_reader or rule:owner"
    ),
    "identity:create_application_credential": "rule:owner",
    "identity:delete_application_credential": "rule:cloud_admin or rule:owner",
    "identity:get_access_rule": "rule:cloud_admin or rule:system_reader or rule:owner",
    "identity:list_access_rules": "rule:cloud_admin or rule:system_reader or rule:owner",
    "identity:delete_access_rule": "rule:cloud_admin or rule:owner",
    # trusts
    "identity:create_trust": "user_id:%(target.trust.trustor_user_id)s",
    "identity:list_trusts": "rule:cloud_admin or rule:system_reader",
    "identity:list_trusts_for_trustor": (
        "rule:cloud_admin or rule:system_reader or user_id:%(target.trust.trustor_user_id)s"
    ),
    "identity:list_trusts_for_trustee": (
        "rule:cloud_admin or rule:system_reader or user_id:%(target.trust.trustee_user_id)s"
    ),
    "identity:get_trust": (
        "rule:cloud_admin or rule:system_reader or user_id:%(target.trust.trustor_user_id)s"
        " or user_id:%(target.trust.trustee_user_id)s"
    ),
    "identity:list_roles_for_trust": (
        "rule:cloud_admin or rule:system_reader or user_id:%(target.trust.trustor_user_id)s"
        " or user_id:%(target.trust.trustee_user_id)s"
    ),
    "identity:get_role_for_trust": (
        "rule:cloud_admin or rule:system_reader or user_id:%(target.trust.trustor_user_id)s"
        " or user_id:%(target.trust.trustee_user_id)s"
    ),
    "identity:delete_trust": "rule:cloud_admin or user_id:%(target.trust.trustor_user_id)s",
}
