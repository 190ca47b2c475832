"""The per-guest supervisor: QEMU's parent and the keeper of its serial console log.

    python -I -S supervisor.py GUEST_DIR --launch -- qemu-system-x86_64 ...   # start a guest
    python -I -S supervisor.py GUEST_DIR --adopt                            # re-attach

It detaches itself (fork, setsid, fork) so the guest outlives picocloud, starts QEMU as its
child (so QEMU is reaped and its exit status logged), and serves `console.sock`, which QEMU's
serial port connects to (`reconnect=1`: a restarted supervisor gets the console back). The
console goes to `console.log`, rotated to `console.log.0` at CONSOLE_LOG_MAX bytes: the disk
holds at most twice that, and always at least the newest CONSOLE_LOG_MAX bytes. With the
supervisor gone the guest keeps running and its console output is dropped (the serial port
does not block). The launching process exits once QEMU's console is connected (the guest is
started with -S, so nothing is lost), printing "ok <qemu pid>", or fails with QEMU's error.

Standard library only, and run by path with -I -S: about 11 MiB per guest.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CONSOLE_LOG_MAX = 1024 * 1024
QEMU_LOG_MAX = 256 * 1024
CONNECT_TIMEOUT = 120.0  # QEMU's start under a boot storm on a loaded host
CONSOLE_SOCK = "console.sock"
CONSOLE_LOG = "console.log"
CONSOLE_LOG_OLD = "console.log.0"
QEMU_LOG = "qemu.log"
QEMU_PID = "qemu.pid"
SUPERVISOR_PID = "supervisor.pid"
QEMU_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def proc_argv(pid: int) -> list[str] | None:
    """The process's argv, or None when it is gone or a zombie (which has no cmdline)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1] or None


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 1 else None


def _follows(argv: list[str], flag: str, value: str) -> bool:
    return any(a == flag and b == value for a, b in itertools.pairwise(argv))


def is_guest_qemu(pid: int, guest_dir: Path) -> bool:
    """Whether `pid` is the QEMU of this guest (-uuid and -pidfile match): a recycled pid is not."""
    argv = proc_argv(pid)
    return argv is not None and (
        _follows(argv, "-uuid", guest_dir.name)
        and _follows(argv, "-pidfile", str(guest_dir / QEMU_PID))
    )


def is_guest_supervisor(pid: int, guest_dir: Path) -> bool:
    argv = proc_argv(pid)
    return argv is not None and any(
        a.endswith("supervisor.py") and b == str(guest_dir) for a, b in itertools.pairwise(argv)
    )


def guest_qemu_pid(guest_dir: Path) -> int | None:
    pid = read_pid(guest_dir / QEMU_PID)
    return pid if pid is not None and is_guest_qemu(pid, guest_dir) else None


def read_console(guest_dir: Path) -> bytes:
    """Everything kept of the console: the rotated part, then the current file."""
    data = b""
    for name in (CONSOLE_LOG_OLD, CONSOLE_LOG):
        with contextlib.suppress(FileNotFoundError):
            data += (guest_dir / name).read_bytes()
    return data


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


class Supervisor:
    def __init__(self, guest_dir: Path, qemu_argv: list[str] | None) -> None:
        self.dir = guest_dir
        self.qemu_argv = qemu_argv
        self.child: subprocess.Popen[bytes] | None = None
        self.qemu_pid: int | None = None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conn: socket.socket | None = None
        self.log_fd = -1
        self.log_size = 0
        self.bound = False  # the console socket and pidfile are ours to remove

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        path = self.dir / QEMU_LOG
        fd = _open_append(path)
        try:
            if os.fstat(fd).st_size > QEMU_LOG_MAX:
                os.truncate(path, 0)
            os.write(fd, f"{stamp} picocloud-supervisor: {message}\n".encode())
        finally:
            os.close(fd)

    def start(self) -> int:
        """Serve the console socket, start (or find) QEMU; its pid once the console is up."""
        sock_path = self.dir / CONSOLE_SOCK
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with probe, contextlib.suppress(OSError):
            probe.connect(str(sock_path))
            raise RuntimeError(f"{sock_path} is already served by another supervisor")
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        self.listener.bind(str(sock_path))
        self.bound = True
        sock_path.chmod(0o600)
        self.listener.listen(2)
        pidfile = self.dir / SUPERVISOR_PID
        fd = os.open(pidfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        self.log_fd = _open_append(self.dir / CONSOLE_LOG)
        self.log_size = os.fstat(self.log_fd).st_size
        if self.qemu_argv is None:
            self.qemu_pid = guest_qemu_pid(self.dir)
            if self.qemu_pid is None:
                raise RuntimeError("no running QEMU to adopt")
            self.log(f"adopted QEMU pid {self.qemu_pid}")
            return self.qemu_pid
        err = _open_append(self.dir / QEMU_LOG)
        try:
            self.child = subprocess.Popen(
                self.qemu_argv,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                close_fds=True,
                env=QEMU_ENV,  # nothing of picocloud's environment (secrets) reaches QEMU
            )
        finally:
            os.close(err)
        self.qemu_pid = self.child.pid
        self.log(f"started QEMU pid {self.qemu_pid}")
        self.listener.settimeout(0.2)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while self.conn is None:
            with contextlib.suppress(TimeoutError):
                self.conn, _ = self.listener.accept()
                break
            if self.child.poll() is not None:
                self.log(f"QEMU exited with status {self.child.returncode} while starting")
                raise RuntimeError(self._qemu_error())
            if time.monotonic() > deadline:
                self.child.kill()
                self.child.wait()
                raise RuntimeError(f"QEMU did not connect its console in {CONNECT_TIMEOUT:.0f} s")
        return self.qemu_pid

    def _qemu_error(self) -> str:
        try:
            lines = (self.dir / QEMU_LOG).read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        errors = [ln for ln in lines if "picocloud-supervisor:" not in ln]
        return "\n".join(errors[-10:]) or "QEMU exited while starting"

    def qemu_alive(self) -> bool:
        if self.child is not None:
            return self.child.poll() is None
        return self.qemu_pid is not None and is_guest_qemu(self.qemu_pid, self.dir)

    def write_console(self, data: bytes) -> None:
        if self.log_size + len(data) > CONSOLE_LOG_MAX and self.log_size > 0:
            os.close(self.log_fd)
            os.replace(self.dir / CONSOLE_LOG, self.dir / CONSOLE_LOG_OLD)
            self.log_fd = _open_append(self.dir / CONSOLE_LOG)
            self.log_size = 0
        os.write(self.log_fd, data)
        self.log_size += len(data)

    def loop(self) -> None:
        """Copy the console until QEMU exits; accept QEMU's reconnects in between."""
        selector = selectors.DefaultSelector()
        self.listener.setblocking(False)
        selector.register(self.listener, selectors.EVENT_READ)
        if self.conn is not None:
            self.conn.setblocking(False)
            selector.register(self.conn, selectors.EVENT_READ)
        while True:
            # Disconnected means QEMU is exiting (or reconnecting): look again soon.
            for key, _ in selector.select(timeout=1.0 if self.conn is not None else 0.1):
                if key.fileobj is self.listener:
                    with contextlib.suppress(BlockingIOError):
                        conn, _ = self.listener.accept()
                        if self.conn is not None:
                            selector.unregister(self.conn)
                            self.conn.close()
                        self.conn = conn
                        conn.setblocking(False)
                        selector.register(conn, selectors.EVENT_READ)
                    continue
                assert self.conn is not None
                try:
                    data = self.conn.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    self.write_console(data)
                else:
                    selector.unregister(self.conn)
                    self.conn.close()
                    self.conn = None
            if not self.qemu_alive():
                break
        self._drain()
        status = self.child.wait() if self.child is not None else None
        self.log(f"QEMU pid {self.qemu_pid} exited" + (f" with status {status}" if status else ""))

    def _drain(self) -> None:
        """The console output QEMU wrote just before it exited (its last words)."""
        if self.conn is None:
            return
        self.conn.settimeout(1.0)
        with contextlib.suppress(OSError):
            while data := self.conn.recv(65536):
                self.write_console(data)
        self.conn.close()
        self.conn = None

    def cleanup(self) -> None:
        if not self.bound:
            return
        for name in (CONSOLE_SOCK, SUPERVISOR_PID):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / name).unlink()


def _detach_and_run(guest_dir: Path, qemu_argv: list[str] | None) -> int:
    """Report through a pipe to the launching process, which exits with the outcome."""
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            report = pipe.read().decode(errors="replace")
        if report.startswith("ok "):
            print(report)
            return 0
        print(report or "the supervisor died while starting", file=sys.stderr)
        return 1
    os.close(read_end)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.chdir("/")
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    supervisor = Supervisor(guest_dir, qemu_argv)

    def terminate(signum: int, frame: object) -> None:
        supervisor.cleanup()
        os._exit(0)

    signal.signal(signal.SIGTERM, terminate)
    try:
        pid = supervisor.start()
    except BaseException as exc:
        os.write(write_end, f"error: {exc}".encode())
        supervisor.cleanup()
        os._exit(1)
    os.write(write_end, f"ok {pid}".encode())
    os.close(write_end)
    try:
        supervisor.loop()
    finally:
        supervisor.cleanup()
    os._exit(0)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--adopt":
        return _detach_and_run(Path(argv[0]), None)
    if len(argv) >= 4 and argv[1:3] == ["--launch", "--"]:
        return _detach_and_run(Path(argv[0]), argv[3:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
