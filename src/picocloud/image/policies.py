"""Default image policy rules, named as Glance names them; visibility is enforced in code.

`target.owner` is the image's owning project, `target.member_id` a member project. For metadata
definitions, `target.owner`/`target.visibility` are the namespace's (the caller's project and no
visibility when there is no namespace yet).
"""

from __future__ import annotations

OWNER_MEMBER = "role:admin or (role:member and project_id:%(target.owner)s)"
READER = "role:admin or role:reader"

DEFAULT_RULES: dict[str, str] = {
    "context_is_admin": "role:admin",
    "add_image": OWNER_MEMBER,
    "get_image": READER,
    "get_images": READER,
    "modify_image": OWNER_MEMBER,
    "delete_image": OWNER_MEMBER,
    "upload_image": OWNER_MEMBER,
    "download_image": READER,
    "copy_image": "role:admin",
    "delete_image_location": "role:admin",
    "get_image_location": "role:admin or (role:reader and project_id:%(target.owner)s)",
    "add_image_location": OWNER_MEMBER,
    "fetch_image_location": "role:admin or role:service",
    "publicize_image": "role:admin",
    "communitize_image": OWNER_MEMBER,
    "deactivate": OWNER_MEMBER,
    "reactivate": OWNER_MEMBER,
    "add_member": OWNER_MEMBER,
    "delete_member": OWNER_MEMBER,
    "get_member": READER,
    "get_members": READER,
    "modify_member": "role:admin or (role:member and project_id:%(target.member_id)s)",
    "get_image_schema": "@",
    "get_tasks": "role:admin",
    "get_task": "role:admin",
    "add_task": "role:admin",
}

# Metadata definitions: anyone may read public namespaces and their own project's; admins write.
METADEF_ADMIN = "rule:metadef_admin"
METADEF_READER = ("role:admin or (role:reader and (project_id:%(target.owner)s or "
                  "'public':%(target.visibility)s))")
DEFAULT_RULES.update({
    "metadef_admin": "role:admin",
    "get_metadef_namespace": METADEF_READER,
    "get_metadef_namespaces": "role:admin or (role:reader and project_id:%(target.owner)s)",
    "add_metadef_namespace": METADEF_ADMIN,
    "modify_metadef_namespace": METADEF_ADMIN,
    "delete_metadef_namespace": METADEF_ADMIN,
    "get_metadef_object": METADEF_READER,
    "get_metadef_objects": METADEF_READER,
    "add_metadef_object": METADEF_ADMIN,
    "modify_metadef_object": METADEF_ADMIN,
    "delete_metadef_object": METADEF_ADMIN,
    "list_metadef_resource_types": METADEF_READER,
    "get_metadef_resource_type": METADEF_READER,
    "add_metadef_resource_type_association": METADEF_ADMIN,
    "remove_metadef_resource_type_association": METADEF_ADMIN,
    "get_metadef_property": METADEF_READER,
    "get_metadef_properties": METADEF_READER,
    "add_metadef_property": METADEF_ADMIN,
    "modify_metadef_property": METADEF_ADMIN,
    "remove_metadef_property": METADEF_ADMIN,
    "get_metadef_tag": METADEF_READER,
    "get_metadef_tags": METADEF_READER,
    "add_metadef_tag": METADEF_ADMIN,
    "add_metadef_tags": METADEF_ADMIN,
    "modify_metadef_tag": METADEF_ADMIN,
    "delete_metadef_tag": METADEF_ADMIN,
    "delete_metadef_tags": METADEF_ADMIN,
})
