"""Nova's server states: vm_state + task_state stored, status derived, as Nova derives it."""

from __future__ import annotations

# vm_states
BUILDING = "building"
ACTIVE = "active"
STOPPED = "stopped"
PAUSED = "paused"
SUSPENDED = "suspended"
RESIZED = "resized"
ERROR = "error"
DELETED = "deleted"

# task_states the API sets and the host agent clears
SCHEDULING = "scheduling"
SPAWNING = "spawning"
POWERING_OFF = "powering-off"
POWERING_ON = "powering-on"
REBOOTING = "rebooting"
REBOOTING_HARD = "rebooting_hard"
PAUSING = "pausing"
UNPAUSING = "unpausing"
SUSPENDING = "suspending"
RESUMING = "resuming"
REBUILDING = "rebuilding"
RESIZE_PREP = "resize_prep"
RESIZE_REVERTING = "resize_reverting"
RESIZE_CONFIRMING = "resize_confirming"
IMAGE_SNAPSHOT = "image_snapshot"
IMAGE_BACKUP = "image_backup"
DELETING = "deleting"

_BY_VM_STATE = {
    BUILDING: "BUILD",
    ACTIVE: "ACTIVE",
    STOPPED: "SHUTOFF",
    PAUSED: "PAUSED",
    SUSPENDED: "SUSPENDED",
    RESIZED: "VERIFY_RESIZE",
    ERROR: "ERROR",
    DELETED: "DELETED",
}
_BY_TASK = {
    REBOOTING: "REBOOT",
    REBOOTING_HARD: "HARD_REBOOT",
    REBUILDING: "REBUILD",
    RESIZE_PREP: "RESIZE",
    RESIZE_REVERTING: "REVERT_RESIZE",
}


def status(vm_state: str, task_state: str | None) -> str:
    """The API `status` of a server."""
    if vm_state in (ACTIVE, STOPPED) and task_state in _BY_TASK:
        return _BY_TASK[task_state]
    return _BY_VM_STATE.get(vm_state, "UNKNOWN")


def vm_states_for(status_filter: str) -> list[str]:
    """The vm_states behind a `status=` list filter (unknown → empty)."""
    return [vm for vm, st in _BY_VM_STATE.items() if st == status_filter.upper()]
