"""QemuDriver: each guest a QEMU process under its own supervisor, controlled over QMP.

A guest lives in `state_dir/<uuid>/` (see `layout`). QEMU is started paused by the detached
supervisor (`supervisor.py`, which also keeps the size-capped console log), continued over
QMP, and survives a restart of picocloud; a new driver on the same state_dir finds it again
by pidfile, /proc cmdline and QMP. Operations on one guest are serialised by a lock file, so
threads, and a new picocloud overlapping an old one, never interleave them.

Power operations as the real driver does them:
- stop: ACPI power button (repeated every ACPI_RETRY s), then QMP quit, then SIGTERM/SIGKILL;
- soft reboot: a graceful stop and a new start; if the guest ignores ACPI, system_reset;
- hard reboot: system_reset (or a fresh start when it is not running);
- suspend: stop, migrate RAM and device state to `memory.state` through a passed fd (no
  `exec:`, which the sandbox forbids), quit; resume starts QEMU with `-incoming defer`;
- snapshot: of a running guest, paused for the copy (QEMU flushes on stop, so the copy is
  consistent as after a power cut): `qemu-img convert` to a standalone qcow2.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from picocloud.compute.virt import imagecache
from picocloud.compute.virt.base import GuestSpec, HostInfo, PowerState, register
from picocloud.compute.virt.errors import GuestNotFound, HypervisorError, InvalidGuestState
from picocloud.compute.virt.qemu import devices, process, supervisor
from picocloud.compute.virt.qemu.cmdline import QEMU_BINARY, build_argv, detect_accel
from picocloud.compute.virt.qemu.layout import (
    GuestFiles,
    load_spec,
    save_spec,
    valid_uuid,
)
from picocloud.compute.virt.qemu.qmp import QMPClient, QMPDisconnected
from picocloud.reverter import Reverter
from picocloud.runner import CommandError, run

log = logging.getLogger(__name__)

GiB = devices.GiB
ACPI_RETRY = 10.0  # seconds between presses of the power button, as Nova does
QMP_TIMEOUT = 10.0
LOCK_TIMEOUT = 600.0
MIGRATE_TIMEOUT = 600.0
SUPERVISOR_SCRIPT = Path(supervisor.__file__).resolve()

# QEMU run states (query-status) as Nova power states; transient start-up states are NOSTATE.
POWER_STATES = {
    "running": PowerState.RUNNING,
    "paused": PowerState.PAUSED,
    "postmigrate": PowerState.PAUSED,
    "finish-migrate": PowerState.PAUSED,
    "save-vm": PowerState.PAUSED,
    "io-error": PowerState.PAUSED,
    "watchdog": PowerState.PAUSED,
    "debug": PowerState.PAUSED,
    "suspended": PowerState.SUSPENDED,  # guest-initiated ACPI S3 sleep
    "shutdown": PowerState.SHUTDOWN,
    "internal-error": PowerState.CRASHED,
    "guest-panicked": PowerState.CRASHED,
}


def _qemu_version(binary: str) -> int:
    try:
        out = run([binary, "--version"], timeout=30).stdout.decode()
    except (CommandError, OSError):
        return 0
    found = re.search(r"version (\d+)\.(\d+)\.(\d+)", out)
    if not found:
        return 0
    major, minor, micro = (int(g) for g in found.groups())
    return major * 1_000_000 + minor * 1_000 + micro


def _cpu_info(vcpus: int) -> dict[str, object]:
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
            if not line.strip():
                break
    return {
        "arch": os.uname().machine,
        "model": fields.get("model name", ""),
        "vendor": fields.get("vendor_id", ""),
        "topology": {"sockets": 1, "cores": vcpus, "threads": 1},
        "features": sorted(fields.get("flags", "").split()),
    }


def _memory_mb() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


@register("qemu")
class QemuDriver:
    """Real guests on this host. `image_cache_dir` also holds the formatted blank bases."""

    def __init__(
        self,
        state_dir: Path,
        image_cache_dir: Path,
        *,
        shutdown_timeout: float = 60.0,
        soft_reboot_timeout: float = 60.0,
        accel: str | None = None,
        qemu_binary: str = QEMU_BINARY,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        self.locks_dir = self.state_dir / ".locks"
        self.locks_dir.mkdir(mode=0o700, exist_ok=True)
        self.images = imagecache.ImageCache(image_cache_dir)
        self.shutdown_timeout = shutdown_timeout
        self.soft_reboot_timeout = soft_reboot_timeout
        self.accel = accel or detect_accel()
        self.qemu_binary = qemu_binary
        self._version: int | None = None
        self._last_status: dict[str, str] = {}

    # --- files, locks, processes -------------------------------------------------------

    def _files(self, uuid: str) -> GuestFiles:
        if not valid_uuid(uuid):
            raise GuestNotFound(uuid)
        return GuestFiles(self.state_dir / uuid)

    def _existing(self, uuid: str) -> GuestFiles:
        files = self._files(uuid)
        if not files.spec.exists():
            raise GuestNotFound(uuid)
        return files

    @contextlib.contextmanager
    def _flock(self, path: Path, timeout: float) -> Iterator[None]:
        """An exclusive lock on `path` that survives the file being removed by its holder."""
        deadline = time.monotonic() + timeout
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() > deadline:
                    raise HypervisorError(f"{path.name} is busy (another operation)") from None
                time.sleep(0.05)
                continue
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed it (guest destroyed): lock the new file
        try:
            yield
        finally:
            os.close(fd)

    def _locked(self, uuid: str) -> contextlib.AbstractContextManager[None]:
        return self._flock(self.locks_dir / uuid, LOCK_TIMEOUT)

    @contextlib.contextmanager
    def _qmp(self, files: GuestFiles, timeout: float = QMP_TIMEOUT) -> Iterator[QMPClient]:
        """A monitor session; QEMU serves one at a time, so sessions take a lock."""
        with (
            self._flock(self.locks_dir / f"{files.uuid}.qmp", timeout),
            QMPClient.connect(files.qmp, timeout) as qmp,
        ):
            yield qmp

    def _execute(self, files: GuestFiles, command: str, **arguments: object) -> object:
        with self._qmp(files) as qmp:
            return qmp.execute(command, arguments or None)

    def _pid(self, files: GuestFiles) -> int | None:
        return supervisor.guest_qemu_pid(files.dir)

    def _is_qemu(self, files: GuestFiles) -> process.Verify:
        return lambda pid: supervisor.is_guest_qemu(pid, files.dir)

    def _status(self, files: GuestFiles) -> str | None:
        """QEMU's run state, or None when no QEMU runs. A QEMU too busy to answer (a boot
        storm on a small host) keeps the state it last reported ("running" if none)."""
        if self._pid(files) is None:
            return None
        try:
            with self._qmp(files, timeout=5.0) as qmp:
                status = str(qmp.execute("query-status")["status"])
        except HypervisorError as exc:
            if self._pid(files) is None:
                return None
            log.warning("guest %s: QEMU does not answer (%s)", files.uuid, exc)
            return self._last_status.get(files.uuid, "running")
        self._last_status[files.uuid] = status
        return status

    def _wait_exit(self, files: GuestFiles, timeout: float) -> bool:
        pid = self._pid(files)
        return pid is None or process.wait_exit(pid, self._is_qemu(files), timeout)

    def _supervisor_pid(self, files: GuestFiles) -> int | None:
        pid = supervisor.read_pid(files.supervisor_pid)
        if pid is not None and supervisor.is_guest_supervisor(pid, files.dir):
            return pid
        return None

    def _stop_supervisor(self, files: GuestFiles) -> None:
        """Let the supervisor finish the console log after QEMU exited; end it if it lingers."""
        pid = self._supervisor_pid(files)
        if pid is None:
            return

        def verify(p: int) -> bool:
            return supervisor.is_guest_supervisor(p, files.dir)

        if not process.wait_exit(pid, verify, 5.0):
            process.terminate(pid, verify)

    def _adopt_supervisor(self, files: GuestFiles) -> None:
        """Restart a dead supervisor of a running QEMU (QEMU reconnects its console in 1 s)."""
        if self._supervisor_pid(files) is not None:
            return
        try:
            run([sys.executable, "-I", "-S", SUPERVISOR_SCRIPT, files.dir, "--adopt"], timeout=30)
            log.info("guest %s: console supervisor restarted", files.uuid)
        except CommandError as exc:
            log.warning("guest %s: cannot restart its console supervisor: %s", files.uuid, exc)

    # --- starting and stopping QEMU ----------------------------------------------------

    def _start(self, files: GuestFiles, spec: GuestSpec, *, resume: bool = False) -> None:
        """Start QEMU (booting, or restoring `memory.state`) and let the guest run."""
        self._stop_supervisor(files)
        argv = build_argv(
            spec, files, self.accel, config_drive=files.config_iso.exists(),
            incoming=resume, qemu_binary=self.qemu_binary,
        )  # fmt: skip
        files.qemu_pid.unlink(missing_ok=True)
        try:
            run(
                [sys.executable, "-I", "-S", SUPERVISOR_SCRIPT, files.dir, "--launch", "--", *argv],
                timeout=supervisor.CONNECT_TIMEOUT + 30,
            )
        except CommandError as exc:
            raise HypervisorError(f"QEMU did not start: {exc.stderr.strip()[-1000:]}") from exc
        except subprocess.TimeoutExpired as exc:
            self._hard_stop(files)
            raise HypervisorError("QEMU did not start in time (the host is overloaded?)") from exc
        try:
            self._wait_monitor(files)
            with self._qmp(files) as qmp:
                if resume:
                    self._restore(files, qmp)
                qmp.execute("cont")
        except BaseException:
            self._hard_stop(files)
            raise
        if resume:  # running on from it now: never restore it again over the changing disk
            files.memory_state.unlink()

    def _wait_monitor(self, files: GuestFiles) -> None:
        """Until QEMU has finished starting and answers on QMP; its own error if it died."""
        deadline = time.monotonic() + supervisor.CONNECT_TIMEOUT
        while True:
            if self._pid(files) is None:
                raise HypervisorError(f"QEMU exited while starting: {self._qemu_error(files)}")
            try:
                with self._qmp(files, timeout=max(1.0, deadline - time.monotonic())):
                    return
            except QMPDisconnected:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _qemu_error(self, files: GuestFiles) -> str:
        try:
            lines = files.qemu_log.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        errors = [line for line in lines if "picocloud-supervisor:" not in line]
        return " / ".join(errors[-3:]) or "no message"

    def _restore(self, files: GuestFiles, qmp: QMPClient) -> None:
        fd = os.open(files.memory_state, os.O_RDONLY | os.O_CLOEXEC)
        try:
            qmp.execute("getfd", {"fdname": "resume"}, fds=(fd,))
        finally:
            os.close(fd)
        qmp.execute("migrate-incoming", {"uri": "fd:resume"})
        self._wait_migration(qmp, "resume")

    def _wait_migration(self, qmp: QMPClient, what: str) -> None:
        deadline = time.monotonic() + MIGRATE_TIMEOUT
        while True:
            info = qmp.execute("query-migrate")
            status = info.get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise HypervisorError(f"{what} failed: {info.get('error-desc', status)}")
            if time.monotonic() > deadline:
                raise HypervisorError(f"{what} did not finish in {MIGRATE_TIMEOUT:.0f} s")
            time.sleep(0.05)

    def _hard_stop(self, files: GuestFiles) -> None:
        """QMP quit, then SIGTERM and SIGKILL to the verified QEMU; returns once it is gone."""
        pid = self._pid(files)
        if pid is None:
            return
        with contextlib.suppress(HypervisorError):
            self._execute(files, "quit")
        if not process.wait_exit(pid, self._is_qemu(files), 5.0):
            process.terminate(pid, self._is_qemu(files))
        log.info("guest %s: QEMU stopped", files.uuid)

    def _graceful_stop(self, files: GuestFiles, timeout: float) -> bool:
        """Press the ACPI power button until QEMU exits or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._pid(files) is None
            try:
                self._execute(files, "system_powerdown")
            except HypervisorError:
                if self._pid(files) is None:
                    return True
            if self._wait_exit(files, min(ACPI_RETRY, remaining)):
                return True

    def _stop(self, files: GuestFiles, timeout: float) -> None:
        status = self._status(files)
        if status is None:
            return
        if status == "running" and timeout > 0 and self._graceful_stop(files, timeout):
            return
        self._hard_stop(files)

    # --- the protocol ------------------------------------------------------------------

    def host_info(self) -> HostInfo:
        if self._version is None:
            self._version = _qemu_version(self.qemu_binary)
        vcpus = os.cpu_count() or 1
        fs = os.statvfs(self.state_dir)
        return HostInfo(
            hostname=socket.gethostname(),
            vcpus=vcpus,
            memory_mb=_memory_mb(),
            disk_gb=fs.f_blocks * fs.f_frsize // GiB,
            accel=self.accel,
            hypervisor_type="QEMU",
            hypervisor_version=self._version,
            cpu_info=_cpu_info(vcpus),
        )

    def _create_disks(self, files: GuestFiles, spec: GuestSpec, suffix: str, r: Reverter) -> None:
        """Root, ephemeral and swap overlays and the config drive, each at its name + suffix."""

        def made(path: Path) -> Path:
            target = path.with_name(path.name + suffix)
            r.add(lambda: target.unlink(missing_ok=True))
            return target

        size = max(spec.root_gb * GiB, devices.virtual_size(spec.base_image, spec.base_format))
        devices.create_overlay(spec.base_image, spec.base_format, made(files.disk), size)
        cache = self.images.dir
        if spec.ephemeral_gb > 0:
            base = devices.formatted_base(cache, "ephemeral", spec.ephemeral_gb * GiB)
            devices.create_overlay(base, "raw", made(files.ephemeral))
        if spec.swap_mb > 0:
            base = devices.formatted_base(cache, "swap", spec.swap_mb * devices.MiB)
            devices.create_overlay(base, "raw", made(files.swap))
        if spec.config_drive is not None:
            devices.build_config_drive(spec.config_drive, made(files.config_iso))

    def spawn(self, spec: GuestSpec) -> None:
        files = self._files(spec.uuid)
        with self._locked(spec.uuid):
            if files.spec.exists() and files.disk.exists():
                if self._pid(files) is None:  # spawned before: just make sure it runs
                    self._start(files, load_spec(files), resume=files.memory_state.exists())
                return
            self._remove(files)  # what a spawn that died half-way left
            with Reverter() as r:
                files.dir.mkdir(mode=0o700)
                r.add(lambda: self._remove(files))
                save_spec(files, spec)
                self._create_disks(files, spec, "", r)
                self._start(files, spec)
                r.success()
            log.info("guest %s: spawned", spec.uuid)

    def _remove(self, files: GuestFiles) -> None:
        if files.dir.exists():
            self._hard_stop(files)
            self._stop_supervisor(files)
            shutil.rmtree(files.dir)

    def destroy(self, uuid: str) -> None:
        if not valid_uuid(uuid):
            return
        files = self._files(uuid)
        with self._locked(uuid):
            if files.dir.exists():
                self._remove(files)
                log.info("guest %s: destroyed", uuid)
            self._last_status.pop(uuid, None)
            (self.locks_dir / f"{uuid}.qmp").unlink(missing_ok=True)
            (self.locks_dir / uuid).unlink(missing_ok=True)

    def power_on(self, uuid: str) -> None:
        """Start a stopped guest; a suspended one is resumed (as libvirt's start does)."""
        files = self._existing(uuid)
        with self._locked(uuid):
            if self._pid(files) is None:
                self._start(files, load_spec(files), resume=files.memory_state.exists())
            else:
                self._adopt_supervisor(files)

    def power_off(self, uuid: str, timeout: float = 30.0) -> None:
        """Also discards a suspended guest's saved state: it boots afresh next time."""
        files = self._existing(uuid)
        with self._locked(uuid):
            self._stop(files, timeout)
            files.memory_state.unlink(missing_ok=True)

    def reboot(self, uuid: str, hard: bool) -> None:
        files = self._existing(uuid)
        with self._locked(uuid):
            status = self._status(files)
            if status is None or status == "shutdown":
                self._hard_stop(files)
                files.memory_state.unlink(missing_ok=True)
                self._start(files, load_spec(files))
                return
            if not hard and status == "running":
                if self._graceful_stop(files, self.soft_reboot_timeout):
                    self._start(files, load_spec(files))
                    return
                log.info("guest %s: ignored the power button; resetting it", uuid)
            try:
                self._execute(files, "system_reset")
                if self._status(files) not in ("running", None):
                    self._execute(files, "cont")
            except HypervisorError:
                if self._pid(files) is not None:
                    raise
                self._start(files, load_spec(files))  # it stopped just as we reset it

    def pause(self, uuid: str) -> None:
        files = self._existing(uuid)
        with self._locked(uuid):
            status = self._status(files)
            if status is None:
                raise InvalidGuestState(f"guest {uuid} is not running; it cannot be paused")
            if status != "paused":
                self._execute(files, "stop")

    def unpause(self, uuid: str) -> None:
        files = self._existing(uuid)
        with self._locked(uuid):
            status = self._status(files)
            if status is None:
                raise InvalidGuestState(f"guest {uuid} is not running; it cannot be unpaused")
            if status == "paused":
                self._execute(files, "cont")

    def suspend(self, uuid: str) -> None:
        files = self._existing(uuid)
        with self._locked(uuid):
            status = self._status(files)
            if status is None:
                if files.memory_state.exists():
                    return
                raise InvalidGuestState(f"guest {uuid} is not running; it cannot be suspended")
            partial = files.memory_state.with_name(f".{files.memory_state.name}.partial")
            try:
                with self._qmp(files) as qmp:
                    qmp.execute("stop")
                    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    try:
                        qmp.execute("migrate-set-parameters", {"max-bandwidth": 1 << 40})
                        qmp.execute("getfd", {"fdname": "suspend"}, fds=(fd,))
                        qmp.execute("migrate", {"uri": "fd:suspend"})
                        self._wait_migration(qmp, "suspend")
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    os.replace(partial, files.memory_state)
                    with contextlib.suppress(HypervisorError):
                        qmp.execute("quit")
            except BaseException:
                partial.unlink(missing_ok=True)
                if status == "running" and not files.memory_state.exists():
                    with contextlib.suppress(HypervisorError):
                        self._execute(files, "cont")
                raise
            self._hard_stop(files)  # normally already gone after quit

    def resume(self, uuid: str) -> None:
        files = self._existing(uuid)
        with self._locked(uuid):
            status = self._status(files)
            if status == "suspended":  # the guest put itself to sleep (ACPI S3)
                self._execute(files, "system_wakeup")
                return
            if status is not None:
                return
            if not files.memory_state.exists():
                raise InvalidGuestState(f"guest {uuid} is not suspended; it cannot be resumed")
            self._start(files, load_spec(files), resume=True)

    def rebuild(self, spec: GuestSpec, start: bool = True) -> None:
        files = self._existing(spec.uuid)
        with self._locked(spec.uuid):
            names = (files.disk, files.ephemeral, files.swap, files.config_iso)
            with Reverter() as r:
                self._create_disks(files, spec, ".rebuild", r)
                self._stop(files, self.shutdown_timeout)
                files.memory_state.unlink(missing_ok=True)
                for path in names:
                    new = path.with_name(path.name + ".rebuild")
                    if new.exists():
                        os.replace(new, path)
                    else:
                        path.unlink(missing_ok=True)
                r.success()
            save_spec(files, spec)
            if start:
                self._start(files, spec)
            log.info("guest %s: rebuilt", spec.uuid)

    def resize(self, spec: GuestSpec) -> None:
        """Disks only grow. Copies of the disks and the spec are kept in `before-resize/`
        for a revert (copies of qcow2 overlays: as large as what the guest wrote)."""
        files = self._existing(spec.uuid)
        with self._locked(spec.uuid):
            self._stop(files, self.shutdown_timeout)
            files.memory_state.unlink(missing_ok=True)
            self._keep_for_revert(files)
            self._apply_sizes(files, spec)

    def _apply_sizes(self, files: GuestFiles, spec: GuestSpec) -> None:
        """The stopped guest's disks and spec to `spec`'s sizes (disks only grow)."""
        old = load_spec(files)
        spec = replace(spec, root_gb=max(spec.root_gb, old.root_gb))
        devices.grow(files.disk, spec.root_gb * GiB)
        if spec.ephemeral_gb > 0 or files.ephemeral.exists():
            spec = replace(spec, ephemeral_gb=max(spec.ephemeral_gb, old.ephemeral_gb))
            if files.ephemeral.exists():
                devices.grow(files.ephemeral, spec.ephemeral_gb * GiB)
            else:
                base = devices.formatted_base(
                    self.images.dir, "ephemeral", spec.ephemeral_gb * GiB
                )
                devices.create_overlay(base, "raw", files.ephemeral)
        if spec.swap_mb != old.swap_mb:
            files.swap.unlink(missing_ok=True)  # swap holds nothing to keep
            if spec.swap_mb > 0:
                base = devices.formatted_base(
                    self.images.dir, "swap", spec.swap_mb * devices.MiB
                )
                devices.create_overlay(base, "raw", files.swap)
        save_spec(files, spec)
        log.info("guest %s: resized to %d vCPU, %d MiB", spec.uuid, spec.vcpus, spec.memory_mb)

    def _keep_for_revert(self, files: GuestFiles) -> None:
        kept = files.before_resize
        shutil.rmtree(kept, ignore_errors=True)  # an older resize's, never confirmed here
        staging = kept.with_name(kept.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        for path in (files.disk, files.ephemeral, files.swap, files.spec):
            if path.exists():
                devices.sparse_copy(path, staging / path.name)
        os.replace(staging, kept)

    def confirm_resize(self, uuid: str) -> None:
        files = self._files(uuid)
        with self._locked(uuid):
            shutil.rmtree(files.before_resize, ignore_errors=True)

    def revert_resize(self, spec: GuestSpec) -> None:
        files = self._existing(spec.uuid)
        with self._locked(spec.uuid):
            self._stop(files, self.shutdown_timeout)
            files.memory_state.unlink(missing_ok=True)
            kept = files.before_resize
            if not (kept / files.spec.name).exists():  # resized before revert kept anything
                self._apply_sizes(files, spec)
                return
            for path in (files.disk, files.ephemeral, files.swap):
                if (kept / path.name).exists():
                    os.replace(kept / path.name, path)
                else:
                    path.unlink(missing_ok=True)  # made by the resize
            os.replace(kept / files.spec.name, files.spec)
            shutil.rmtree(kept, ignore_errors=True)
            log.info("guest %s: resize reverted", spec.uuid)

    def snapshot(self, uuid: str, dest: Path) -> None:
        files = self._existing(uuid)
        with self._locked(uuid):
            paused_here = self._status(files) == "running"
            if paused_here:
                self._execute(files, "stop")  # QEMU drains and flushes the disk on stop
            try:
                devices.standalone_copy(files.disk, Path(dest))
            finally:
                if paused_here:
                    self._execute(files, "cont")

    def _power(self, files: GuestFiles, status: str | None) -> PowerState:
        if status is None:
            if not files.dir.exists():
                raise GuestNotFound(files.uuid)
            return PowerState.SUSPENDED if files.memory_state.exists() else PowerState.SHUTDOWN
        return POWER_STATES.get(status, PowerState.NOSTATE)

    def state(self, uuid: str) -> PowerState:
        files = self._existing(uuid)
        return self._power(files, self._status(files))

    def guests(self) -> dict[str, PowerState]:
        found = {}
        for path in sorted(self.state_dir.iterdir()):
            if not (valid_uuid(path.name) and (path / "spec.json").exists()):
                continue
            try:
                found[path.name] = self._adopt(GuestFiles(path))
            except GuestNotFound:
                continue  # destroyed meanwhile
        return found

    def _adopt(self, files: GuestFiles) -> PowerState:
        """The guest's state, after finishing what a picocloud that stopped mid-way left
        (only when no operation holds the guest's lock)."""
        status = self._status(files)
        try:
            with self._flock(self.locks_dir / files.uuid, 0):
                if status == "prelaunch":  # started but never continued
                    self._execute(files, "cont")
                    status = "running"
                elif status == "inmigrate":  # a resume that did not finish: state kept
                    self._hard_stop(files)
                    status = None
                elif status is not None:
                    files.memory_state.unlink(missing_ok=True)  # stale: the guest ran on
                    self._adopt_supervisor(files)
        except HypervisorError as exc:
            log.debug("guest %s: not adopted now: %s", files.uuid, exc)
        return self._power(files, status)

    def console_log(self, uuid: str, length: int | None = None) -> str:
        files = self._existing(uuid)
        text = supervisor.read_console(files.dir).decode(errors="replace")
        if length is None:
            return text
        lines = text.splitlines(keepends=True)
        return "".join(lines[-length:]) if length > 0 else ""
