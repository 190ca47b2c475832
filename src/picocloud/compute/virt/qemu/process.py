"""Signals to processes we verified are ours: never to a recycled pid.

A pidfd is opened first and the process's /proc cmdline checked after, so the signal goes to
the very process that was checked (or nowhere, if it has exited since).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable

Verify = Callable[[int], bool]


def _pidfd(pid: int, verify: Verify) -> int | None:
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return None
    if not verify(pid):
        os.close(fd)
        return None
    return fd


def _wait_fd(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def wait_exit(pid: int, verify: Verify, timeout: float) -> bool:
    """Whether the verified process `pid` is gone (or was never ours) within `timeout`."""
    fd = _pidfd(pid, verify)
    if fd is None:
        return True
    try:
        return _wait_fd(fd, timeout)
    finally:
        os.close(fd)


def send(pid: int, verify: Verify, sig: int) -> bool:
    """Send `sig` if `pid` is still the verified process; whether it was sent."""
    fd = _pidfd(pid, verify)
    if fd is None:
        return False
    try:
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def terminate(pid: int, verify: Verify, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; returns once the process is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        fd = _pidfd(pid, verify)
        if fd is None:
            return
        try:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, sig)
            if _wait_fd(fd, wait):
                return
        finally:
            os.close(fd)
    raise TimeoutError(f"process {pid} survived SIGKILL")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
