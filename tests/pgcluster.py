"""A throwaway PostgreSQL cluster for tests, built from Debian's postgresql binaries.

Usage::

    with ThrowawayPostgres() as pg:
        url = create_database(pg.url, "picocloud_identity")

The cluster lives in a temporary directory, listens on 127.0.0.1 on a free port with
``trust`` authentication and fsync off, and is stopped (``-m immediate``) and deleted on
exit. When run as root, initdb and pg_ctl run as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

DATABASE = "picocloud_test"
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _find_bindir() -> Path:
    """Return the bin directory of the highest installed Debian PostgreSQL version."""
    candidates = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        bindir = Path(initdb).parent
        version = bindir.parent.name
        if (bindir / "pg_ctl").exists() and version.replace(".", "").isdigit():
            candidates.append((tuple(int(p) for p in version.split(".")), bindir))
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; "
            "run `apt-get install postgresql` to use the PostgreSQL tests"
        )
    return max(candidates)[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _psql(url: str, sql: str) -> None:
    psql = shutil.which("psql")
    if psql is None:
        raise RuntimeError("psql not found; run `apt-get install postgresql-client`")
    subprocess.run(
        [psql, "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
    )


def create_database(url_of_cluster: str, name: str) -> str:
    """Create database ``name`` in the cluster at ``url_of_cluster``; return its URL.

    The URL of any database of the cluster will do: the new one replaces its path.
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid database name: {name!r}")
    parts = urlsplit(url_of_cluster)
    try:
        import psycopg  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        _psql(url_of_cluster, f'CREATE DATABASE "{name}"')
    else:
        with psycopg.connect(url_of_cluster, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class ThrowawayPostgres:
    """A temporary PostgreSQL cluster; ``url`` points at database ``picocloud_test``."""

    def __init__(self) -> None:
        self.bindir: Path | None = None
        self.tmpdir: Path | None = None
        self.port: int | None = None
        self.url: str = ""
        self._running = False

    @property
    def datadir(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "data"

    def _run(self, *args: str) -> None:
        """Run a server binary, as the postgres user when we are root."""
        assert self.bindir is not None
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd="/",
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}")

    def start(self) -> ThrowawayPostgres:
        self.bindir = _find_bindir()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="picocloud-pg-"))
        try:
            if os.geteuid() == 0:
                pw = pwd.getpwnam("postgres")
                os.chown(self.tmpdir, pw.pw_uid, pw.pw_gid)
            self._run(
                "initdb", "-D", str(self.datadir), "-U", "postgres",
                "--auth=trust", "--encoding=UTF8", "--no-sync",
            )  # fmt: skip
            self.port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port}"
                f" -c unix_socket_directories={self.tmpdir}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            self._running = True  # a failed or timed-out start may leave a server
            self._run(
                "pg_ctl", "-D", str(self.datadir), "-w", "-t", "60",
                "-l", str(self.tmpdir / "postgres.log"), "-o", options, "start",
            )  # fmt: skip
            cluster = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
            self.url = create_database(cluster, DATABASE)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            if self._running and (self.datadir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.datadir), "-w", "-m", "immediate", "stop")
        finally:
            self._running = False
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
                self.tmpdir = None

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
