"""End-to-end fixtures: a real `picocloud up` process on a free loopback port with its own data
dir, and the real `openstack` CLI pointed at it through the clouds.yaml it writes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
PICOCLOUD = BIN / "picocloud"
OPENSTACK = BIN / "openstack"
REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0

# Subcommand words whose output `-f json` can format; `run` adds the flag after them.
FORMATTABLE = {"create", "issue", "list", "show"}


@dataclass(frozen=True)
class CliFailure:
    """A CLI command that exited non-zero, as `run(..., check=False)` returns it."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        return self.stderr + self.stdout


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers}


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command_words(args: tuple[str, ...]) -> list[str]:
    """The leading positional words of a CLI invocation, skipping `--os-*` global options."""
    words: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--os-"):
            i += 1 if "=" in arg else 2
            continue
        if arg.startswith("-"):
            break
        words.append(arg)
        i += 1
    return words


class Picocloud:
    """One `picocloud up` process: start, stop (SIGINT, must exit cleanly), restart in place."""

    def __init__(self, data_dir: Path, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.env = dict(env or {})  # PICOCLOUD_* settings for this server only
        self.proc: subprocess.Popen[bytes] | None = None
        self._admin_token: str | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        # The CLI gets a scrubbed environment: no OS_* from the caller, no ~/.config/openstack.
        self.cli_home = data_dir.parent / f"{data_dir.name}-cli-home"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def identity_url(self) -> str:
        return f"{self.url}/identity/v3"

    @property
    def pid(self) -> int:
        """The `picocloud up` process, e.g. to read its memory from /proc."""
        assert self.proc is not None, "not running"
        return self.proc.pid

    @property
    def admin_password(self) -> str:
        return (self.data_dir / "admin-password").read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        assert self.proc is None, "already running"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PICOCLOUD_")}
        env |= {"PICOCLOUD_WRITE_USER_CLOUDS_YAML": "0", "PICOCLOUD_PASSWORD_HASH_ROUNDS": "4"}
        env |= self.env
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(PICOCLOUD), "up", "--data-dir", str(self.data_dir), "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                pytest.fail(f"picocloud up exited with {code} while starting:\n{self.log()}")
            try:
                if self.http("GET", "/healthz", timeout=1).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self._kill()
        pytest.fail(f"picocloud did not answer /healthz within {START_TIMEOUT}s:\n{self.log()}")

    def stop(self) -> None:
        """Interrupt like Ctrl-C would: the server must shut down by itself, promptly, without a
        traceback and with status 0."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._kill()
            pytest.fail(f"picocloud ignored SIGINT for {STOP_TIMEOUT}s:\n{self.log()}")
        self.proc = None
        assert code == 0, f"picocloud exited with {code} after SIGINT:\n{self.log()}"
        assert "Traceback" not in self.log(), self.log()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def cli_env(self, env: dict[str, str] | None = None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        self.cli_home.mkdir(exist_ok=True)
        base |= {
            "OS_CLIENT_CONFIG_FILE": str(self.data_dir / "clouds.yaml"),
            "OS_CLOUD": "picocloud",
            "XDG_CONFIG_HOME": str(self.cli_home / "config"),
            "XDG_CACHE_HOME": str(self.cli_home / "cache"),
        }
        return base | (env or {})

    def run(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> Any:
        """Run the real `openstack` CLI as the admin of clouds.yaml (global `--os-*` options
        override). Adds `-f json` to create/issue/list/show commands and returns the parsed
        output (text if not JSON, None if empty). A failure raises, or with check=False is
        returned as a `CliFailure`."""
        argv = list(args)
        if FORMATTABLE & set(_command_words(args)) and "-f" not in argv:
            argv += ["-f", "json"]
        proc = subprocess.run(
            [str(OPENSTACK), *argv], env=self.cli_env(env), capture_output=True, text=True,
            timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            failure = CliFailure(proc.returncode, proc.stdout, proc.stderr)
            if check:
                pytest.fail(f"openstack {' '.join(argv)} failed ({proc.returncode}):\n"
                            f"{failure.message}")
            return failure
        out = proc.stdout.strip()
        if not out:
            return None
        try:
            return json.loads(out)
        except json.JSONDecodeError:
            return out

    def run_text(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run a CLI command that has no `-f` option (e.g. `console log show`) and return what
        it printed; a failure fails the test."""
        proc = subprocess.run(
            [str(OPENSTACK), *args], env=self.cli_env(env), capture_output=True, text=True,
            timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            pytest.fail(f"openstack {' '.join(args)} failed ({proc.returncode}):\n"
                        f"{proc.stderr}{proc.stdout}")
        return proc.stdout

    def fail(self, *args: str, env: dict[str, str] | None = None) -> CliFailure:
        """Run a CLI command that must fail; returns what it printed."""
        result = self.run(*args, env=env, check=False)
        assert isinstance(result, CliFailure), f"openstack {' '.join(args)} succeeded: {result}"
        return result

    def token(self, *auth: str) -> str:
        """A token issued through the CLI; `auth` are global options such as --os-username."""
        return str(self.run(*auth, "token", "issue")["id"])

    def run_with_token(self, token: str, *args: str, check: bool = True) -> Any:
        """Run the CLI authenticated by an existing token instead of clouds.yaml's password.
        (The auth URL goes in the environment: with `--os-auth-url` and no cloud, the CLI hands
        the token plugin a `username` it rejects.)"""
        return self.run("--os-auth-type", "token", "--os-token", token, *args,
                        env={"OS_CLOUD": "", "OS_AUTH_URL": self.identity_url}, check=check)

    def admin_token(self) -> str:
        """A token of clouds.yaml's admin, issued over HTTP once (it outlives restarts)."""
        if self._admin_token is None:
            auth = {"identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": self.admin_password}}},
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}
            reply = self.http("POST", "/identity/v3/auth/tokens",
                              body=json.dumps({"auth": auth}).encode())
            assert reply.status == 201, reply.body
            self._admin_token = reply.headers["x-subject-token"]
        return self._admin_token

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """An admin call to the identity API: fast setup for what a test is not about."""
        data = None if body is None else json.dumps(body).encode()
        reply = self.http(method, "/identity/v3" + path, token=self.admin_token(), body=data)
        assert 200 <= reply.status < 300, f"{method} {path}: {reply.status} {reply.body!r}"
        return reply.json() if reply.body else None

    def http(self, method: str, path: str, *, token: str | None = None,
             body: bytes | None = None, headers: dict[str, str] | None = None,
             timeout: float = 10) -> HttpReply:
        """A raw request to picocloud, for what the CLI cannot send or does not show."""
        hdrs = dict(headers or {})
        if token:
            hdrs["X-Auth-Token"] = token
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url + path, data=body, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return HttpReply(resp.status, _lower(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as err:
            with err:
                return HttpReply(err.code, _lower(err.headers.items()), err.read())


PicocloudFactory = Callable[..., Picocloud]


@pytest.fixture(scope="module")
def picocloud_factory() -> Iterator[PicocloudFactory]:
    """Builds `Picocloud`s in one temp dir, stopping them and removing the dir afterwards."""
    root = Path(tempfile.mkdtemp(prefix="picocloud-e2e-"))
    made: list[Picocloud] = []

    def make(name: str = "cloud", env: dict[str, str] | None = None) -> Picocloud:
        pc = Picocloud(root / name, env=env)
        made.append(pc)
        return pc

    try:
        yield make
    finally:
        errors = []
        for pc in made:
            try:
                pc.stop()
            except BaseException as exc:  # keep stopping the others, then report
                pc._kill()
                errors.append(exc)
        shutil.rmtree(root, ignore_errors=True)
        if errors:
            raise errors[0]


@pytest.fixture(scope="module")
def cloud(picocloud_factory: PicocloudFactory) -> Iterator[Picocloud]:
    """The module's picocloud, started once and stopped (cleanly) after its last test."""
    pc = picocloud_factory("cloud")
    pc.start()
    yield pc
    pc.stop()


def run_tempest(service: str, data_dir: Path, services: str | None = None
                ) -> tuple[dict[str, int], list[str]]:
    """`tools/tempest.sh SERVICE DATA_DIR` as an operator runs it (no OS_* variables):
    the passed/failed/skipped counts it printed and the names of the failed tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    if services:
        env["TEMPEST_SERVICES"] = services
    out = subprocess.run(
        [str(REPO / "tools" / "tempest.sh"), service, str(data_dir)],
        capture_output=True, text=True, env=env, timeout=1800, check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    counts = {k: int(v) for k, v in re.findall(r"^(passed|failed|skipped): (\d+)$",
                                                out.stdout, re.M)}
    print(counts)
    return counts, re.findall(r"^\{\d+\} (\S+) .*FAILED", out.stdout, re.M)
