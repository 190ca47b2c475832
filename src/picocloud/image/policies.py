"""Default image policy rules, named as Glance names them; visibility is enforced in code.

`target.owner` is the image's owning project, `target.member_id` a member project.
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
    "add_task": "role:admin",
}
