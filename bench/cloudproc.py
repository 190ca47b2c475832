"""The `picocloud up` a benchmark drives: started on a free loopback port with a temporary data
dir, ready once /healthz answers, stopped with SIGINT as Ctrl-C would: shared by every bench
script that needs a real server."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procstat import HOST, free_port

REPO = Path(__file__).resolve().parent.parent
PICOCLOUD = REPO / ".venv" / "bin" / "picocloud"
TOKENS_PATH = "/identity/v3/auth/tokens"


def password_auth(password: str) -> dict[str, Any]:
    """A project-scoped password auth document for admin, as `openstack token issue` sends."""
    domain = {"id": "default"}
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "admin", "domain": domain, "password": password}},
            },
            "scope": {"project": {"name": "admin", "domain": domain}},
        }
    }


@dataclass(frozen=True)
class Token:
    id: str
    project_id: str


class CloudProcess:
    """`picocloud up` in a subprocess of its own session (Ctrl-C reaches only the script, which
    then stops it), its data dir and log under a temp dir that `remove` deletes.

    `settings` are PICOCLOUD_* variables for the server on top of this process's environment,
    or instead of this process's PICOCLOUD_* ones with `inherit_settings=False`. It never
    writes the user's clouds.yaml.
    """

    def __init__(
        self, settings: Mapping[str, str] | None = None, *, prefix: str = "picocloud-bench-",
        parent: str | None = None, binary: Path = PICOCLOUD, inherit_settings: bool = True,
    ) -> None:  # fmt: skip
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self.data = self.tmp / "data"
        self.log = self.tmp / "server.log"
        self.port = free_port()
        self.binary = binary
        self.env = {k: v for k, v in os.environ.items()
                    if inherit_settings or not k.startswith("PICOCLOUD_")}  # fmt: skip
        self.env |= {"PICOCLOUD_WRITE_USER_CLOUDS_YAML": "0", **(settings or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> None:
        """Start the server and return once /healthz answers 200."""
        argv = [
            str(self.binary), "up",
            "--data-dir", str(self.data), "--host", HOST, "--port", str(self.port),
        ]  # fmt: skip
        # With sched_autogroup a session of its own also keeps the clients' CPU out of its share.
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"picocloud up exited {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.request("GET", "/healthz", timeout=30)[0] == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"picocloud up not healthy after {timeout:.0f} s:\n{self.tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def password(self) -> str:
        """The admin password `picocloud up` generated in its data dir."""
        return (self.data / "admin-password").read_text().strip()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def connection(self, timeout: float = 600, blocksize: int = 8192) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout, blocksize=blocksize)

    def request(
        self, method: str, path: str, token: str = "", body: Any = None, timeout: float = 600
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection: status, headers (lower-case names), raw body."""
        conn = self.connection(timeout)
        try:
            headers = {"X-Auth-Token": token} if token else {}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def issue_token(self) -> Token:
        """A new admin token scoped to the admin project."""
        status, headers, body = self.request("POST", TOKENS_PATH, body=password_auth(self.password))
        if status != 201:
            raise RuntimeError(f"token issue failed: {status} {body[:300]!r}")
        return Token(headers["x-subject-token"], json.loads(body)["token"]["project"]["id"])

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGINT, as Ctrl-C would; escalate only if the server has not exited after `grace`
        seconds. The exit status (None if never started or it would not die)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            self.proc.send_signal(sig)
            try:
                code = self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            if sig != signal.SIGINT:
                print(f"  warning: server needed {sig.name} to stop", file=sys.stderr)
            return code
        return None

    def remove(self) -> None:
        """Delete the temp dir: data dir, log and whatever the script put there."""
        shutil.rmtree(self.tmp, ignore_errors=True)
