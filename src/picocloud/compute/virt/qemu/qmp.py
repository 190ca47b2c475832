"""A small synchronous QMP client over QEMU's unix socket.

    with QMPClient.connect(path, timeout=5) as qmp:
        qmp.execute("stop")
        status = qmp.execute("query-status")["status"]

Each `execute` waits for the reply carrying its own id; asynchronous events that arrive in
between are kept in `events` (the newest `MAX_EVENTS`). A QEMU that exits mid-command makes
the call raise `QMPDisconnected`, never hang: every read has a deadline. All its errors are
`QMPError`s, which are `HypervisorError`s: a fault the agent can show.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any

from picocloud.compute.virt.errors import HypervisorError

MAX_EVENTS = 100
_ids = itertools.count(1)


class QMPError(HypervisorError):
    """Talking to QEMU's monitor failed."""


class QMPCommandError(QMPError):
    """QEMU answered a command with an error."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        super().__init__(f"QMP {command}: {error_class}: {desc}")
        self.command = command
        self.error_class = error_class
        self.desc = desc


class QMPDisconnected(QMPError):
    """The monitor is gone (QEMU exited or closed the connection) or could not be reached."""


class QMPTimeout(QMPError):
    """QEMU did not answer within the deadline."""


class QMPClient:
    """One monitor session; `connect` negotiates capabilities before returning it."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._timeout = timeout
        self._buffer = b""
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.greeting: dict[str, Any] = {}

    @classmethod
    def connect(cls, path: Path, timeout: float = 10.0) -> QMPClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(path))
        except TimeoutError as exc:
            sock.close()
            raise QMPTimeout(f"QMP socket {path} did not accept within {timeout:.0f} s") from exc
        except OSError as exc:
            sock.close()
            raise QMPDisconnected(f"cannot connect to QMP socket {path}: {exc}") from exc
        client = cls(sock, timeout)
        try:
            deadline = time.monotonic() + timeout
            client.greeting = client._read_message(deadline)
            if "QMP" not in client.greeting:
                raise QMPDisconnected(f"{path} sent no QMP greeting: {client.greeting!r}")
            client.execute("qmp_capabilities")
        except BaseException:
            client.close()
            raise
        return client

    def execute(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        fds: tuple[int, ...] = (),
    ) -> Any:
        """Run `command`, return its `return` value; `fds` travel with it (SCM_RIGHTS)."""
        msg_id = f"picocloud-{next(_ids)}"
        request: dict[str, Any] = {"execute": command, "id": msg_id}
        if arguments:
            request["arguments"] = arguments
        data = json.dumps(request).encode() + b"\n"
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        try:
            self._sock.settimeout(max(0.001, deadline - time.monotonic()))
            if fds:
                socket.send_fds(self._sock, [data], list(fds))
            else:
                self._sock.sendall(data)
        except TimeoutError as exc:
            raise QMPTimeout(f"QMP {command}: could not send within the deadline") from exc
        except OSError as exc:
            raise QMPDisconnected(f"QMP {command}: monitor connection lost: {exc}") from exc
        while True:
            message = self._read_message(deadline, command)
            if "event" in message:
                self.events.append(message)
                continue
            if message.get("id") != msg_id:
                continue  # a late reply to an earlier command that timed out
            if "error" in message:
                error = message["error"]
                raise QMPCommandError(command, str(error.get("class")), str(error.get("desc")))
            return message.get("return")

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        """The first event called `name` (already received or arriving within `timeout`)."""
        for event in list(self.events):
            if event.get("event") == name:
                self.events.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline, f"waiting for {name}")
            if message.get("event") == name:
                return message
            if "event" in message:
                self.events.append(message)

    def _read_message(self, deadline: float, what: str = "greeting") -> dict[str, Any]:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QMPTimeout(f"QMP {what}: no answer within the deadline")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError as exc:
                raise QMPTimeout(f"QMP {what}: no answer within the deadline") from exc
            except OSError as exc:
                raise QMPDisconnected(f"QMP {what}: monitor connection lost: {exc}") from exc
            if not chunk:
                raise QMPDisconnected(f"QMP {what}: QEMU closed the monitor (it exited?)")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise QMPDisconnected(f"QMP {what}: unreadable message {line[:200]!r}") from exc
        if not isinstance(message, dict):
            raise QMPDisconnected(f"QMP {what}: unexpected message {line[:200]!r}")
        return message

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> QMPClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
