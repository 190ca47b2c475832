"""Default compute policy rules, named as Nova names them (os_compute_api:...).

Targets carry `target.project_id` (the resource's project) and `target.user_id`.
"""

from __future__ import annotations

ADMIN = "role:admin"
MEMBER = "role:admin or (role:member and project_id:%(target.project_id)s)"
READER = "role:admin or (role:reader and project_id:%(target.project_id)s)"
ANY = "@"
P = "os_compute_api:"

DEFAULT_RULES: dict[str, str] = {
    # servers
    **{f"{P}servers:{a}": MEMBER for a in (
        "create", "delete", "update", "start", "stop", "reboot", "rebuild", "resize",
        "confirm_resize", "revert_resize", "create_image", "trigger_crash_dump",
    )},
    **{f"{P}servers:{a}": READER for a in ("index", "detail", "show")},
    f"{P}servers:index:get_all_tenants": ADMIN,
    f"{P}servers:detail:get_all_tenants": ADMIN,
    f"{P}servers:show:host_status": ADMIN,
    f"{P}os-extended-server-attributes": ADMIN,
    f"{P}os-pause-server:pause": MEMBER,
    f"{P}os-pause-server:unpause": MEMBER,
    f"{P}os-suspend-server:suspend": MEMBER,
    f"{P}os-suspend-server:resume": MEMBER,
    f"{P}os-lock-server:lock": MEMBER,
    f"{P}os-lock-server:unlock": MEMBER,
    f"{P}os-lock-server:unlock:unlock_override": ADMIN,
    f"{P}os-console-output": MEMBER,
    f"{P}os-create-backup": MEMBER,
    f"{P}server-metadata:index": READER,
    f"{P}server-metadata:show": READER,
    f"{P}server-metadata:create": MEMBER,
    f"{P}server-metadata:update": MEMBER,
    f"{P}server-metadata:update_all": MEMBER,
    f"{P}server-metadata:delete": MEMBER,
    f"{P}os-server-tags:index": READER,
    f"{P}os-server-tags:show": READER,
    **{f"{P}os-server-tags:{a}": MEMBER for a in (
        "update", "update_all", "delete", "delete_all",
    )},
    f"{P}os-instance-actions:list": READER,
    f"{P}os-instance-actions:show": READER,
    f"{P}os-instance-actions:events": ADMIN,
    f"{P}os-admin-actions:reset_state": ADMIN,
    f"{P}os-admin-actions:inject_network_info": ADMIN,
    f"{P}os-deferred-delete:force": MEMBER,
    # flavors
    f"{P}flavors:index": ANY,
    f"{P}flavors:show": ANY,
    f"{P}os-flavor-manage:create": ADMIN,
    f"{P}os-flavor-manage:update": ADMIN,
    f"{P}os-flavor-manage:delete": ADMIN,
    f"{P}os-flavor-extra-specs:index": ANY,
    f"{P}os-flavor-extra-specs:show": ANY,
    f"{P}os-flavor-extra-specs:create": ADMIN,
    f"{P}os-flavor-extra-specs:update": ADMIN,
    f"{P}os-flavor-extra-specs:delete": ADMIN,
    f"{P}os-flavor-access": ADMIN,
    f"{P}os-flavor-access:add_tenant_access": ADMIN,
    f"{P}os-flavor-access:remove_tenant_access": ADMIN,
    # keypairs: a user's own, or any for admins
    f"{P}os-keypairs:index": "role:admin or user_id:%(target.user_id)s",
    f"{P}os-keypairs:show": "role:admin or user_id:%(target.user_id)s",
    f"{P}os-keypairs:create": "role:admin or user_id:%(target.user_id)s",
    f"{P}os-keypairs:delete": "role:admin or user_id:%(target.user_id)s",
    # quotas and limits
    f"{P}os-quota-sets:show": READER,
    f"{P}os-quota-sets:defaults": ANY,
    f"{P}os-quota-sets:update": ADMIN,
    f"{P}os-quota-sets:delete": ADMIN,
    f"{P}limits": ANY,
    f"{P}limits:other_project": ADMIN,
    # infrastructure
    f"{P}os-availability-zone:list": ANY,
    f"{P}os-availability-zone:detail": ADMIN,
    f"{P}os-hypervisors:list": ADMIN,
    f"{P}os-hypervisors:list-detail": ADMIN,
    f"{P}os-hypervisors:show": ADMIN,
    f"{P}os-hypervisors:statistics": ADMIN,
    f"{P}os-hypervisors:uptime": ADMIN,
    f"{P}os-hypervisors:search": ADMIN,
    f"{P}os-hypervisors:servers": ADMIN,
    f"{P}os-services:list": ADMIN,
    f"{P}os-services:update": ADMIN,
    f"{P}os-services:delete": ADMIN,
    **{f"{P}os-aggregates:{a}": ADMIN for a in (
        "index", "create", "show", "update", "delete", "add_host", "remove_host",
        "set_metadata",
    )},
    f"{P}os-server-groups:index": READER,
    f"{P}os-server-groups:index:all_projects": ADMIN,
    f"{P}os-server-groups:show": READER,
    f"{P}os-server-groups:create": MEMBER,
    f"{P}os-server-groups:delete": MEMBER,
}
