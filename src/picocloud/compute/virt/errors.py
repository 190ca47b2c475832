"""Errors a hypervisor driver raises; the agent turns them into a server fault."""

from __future__ import annotations


class HypervisorError(Exception):
    """A driver operation failed; the message says what and why, for the server's fault."""


class GuestNotFound(HypervisorError):
    """No guest with this uuid exists on this host."""

    def __init__(self, uuid: str) -> None:
        super().__init__(f"guest {uuid} does not exist on this host")
        self.uuid = uuid


class InvalidGuestState(HypervisorError):
    """The operation does not apply to the guest in its current power state."""
