"""The host agent: reconciles this host's guests with the desired state in the database.

Every couple of seconds (and at once when the API wakes it) the agent reads the servers
placed on its host, starts the work their task_state asks for (spawn, power, reboot, pause,
suspend, rebuild, resize, snapshot, backup, delete) on a small thread pool, and compares every
other server's recorded power state with what the hypervisor reports: a QEMU that died shows
up as SHUTOFF within one pass, and guests nobody owns any more are destroyed. After a restart
the same pass re-adopts the QEMUs that kept running.
"""

from __future__ import annotations

import base64
import logging
import shutil
import socket
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from picocloud.compute import states
from picocloud.compute.models import InstanceAction, Server
from picocloud.compute.service import hostname_of, mark_deleted, utcnow
from picocloud.compute.virt.base import ConfigDrive, GuestSpec, Hypervisor, PowerState
from picocloud.errors import Forbidden
from picocloud.image import locations as image_locations
from picocloud.image.inspect import check_upload
from picocloud.image.models import Image
from picocloud.image.service import ImageService

if TYPE_CHECKING:
    from picocloud.cloud import Cloud

log = logging.getLogger("picocloud.agent")
PASS_SECONDS = 2.0

# task_state -> (vm_state when done, power state when done)
DONE: dict[str, tuple[str, PowerState]] = {
    states.SPAWNING: (states.ACTIVE, PowerState.RUNNING),
    states.POWERING_OFF: (states.STOPPED, PowerState.SHUTDOWN),
    states.POWERING_ON: (states.ACTIVE, PowerState.RUNNING),
    states.REBOOTING: (states.ACTIVE, PowerState.RUNNING),
    states.REBOOTING_HARD: (states.ACTIVE, PowerState.RUNNING),
    states.PAUSING: (states.PAUSED, PowerState.PAUSED),
    states.UNPAUSING: (states.ACTIVE, PowerState.RUNNING),
    states.SUSPENDING: (states.SUSPENDED, PowerState.SUSPENDED),
    states.RESUMING: (states.ACTIVE, PowerState.RUNNING),
    states.REBUILDING: (states.ACTIVE, PowerState.RUNNING),
    states.RESIZE_PREP: (states.RESIZED, PowerState.RUNNING),
    states.RESIZE_REVERTING: (states.ACTIVE, PowerState.RUNNING),
    states.RESIZE_CONFIRMING: (states.ACTIVE, PowerState.RUNNING),
}
# Tasks after which a guest that does not run is a stopped server.
ENDS_AS_IT_RUNS = (states.RESIZE_REVERTING, states.RESIZE_CONFIRMING, states.REBUILDING)
FAILS_TO_ERROR = {states.SPAWNING, states.REBUILDING, states.RESIZE_PREP}
SNAPSHOTS = (states.IMAGE_SNAPSHOT, states.IMAGE_BACKUP)  # tasks that fill a queued image


class HostAgent:
    def __init__(self, cloud: Cloud, driver: Hypervisor, host: str | None = None) -> None:
        from picocloud.compute.virt.imagecache import ImageCache

        self.cloud = cloud
        self.driver = driver
        self.host = host or cloud.settings.compute_host or socket.gethostname()
        self.images = ImageCache(cloud.settings.data_dir / "compute" / "base")
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="picocloud-agent")
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.register()
        self._thread = threading.Thread(target=self._loop, name="picocloud-agent", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def register(self) -> None:
        from picocloud.compute.hosts import register_host

        info = self.driver.host_info()
        with self.cloud.session() as db:
            register_host(db, info, self.host)
            db.commit()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
            except Exception:
                log.exception("reconcile pass failed")
            self.wake.wait(PASS_SECONDS)
            self.wake.clear()

    # -- one pass --------------------------------------------------------------------------
    def reconcile(self) -> None:
        from picocloud.compute.hosts import heartbeat

        with self.cloud.session() as db:
            if not heartbeat(db, self.host):
                self.register()  # the host row was deleted (os-services delete): come back
            servers = db.scalars(
                select(Server).where(Server.host == self.host, Server.deleted.is_(False))
            ).all()
            known = {s.id for s in servers}
            # Ask the hypervisor only after reading the rows: a server read as ACTIVE was
            # committed after its spawn finished, so its guest is in this snapshot.
            actual = self.driver.guests()
            for server in servers:
                with self._lock:
                    busy = server.id in self._in_flight
                if busy:
                    continue
                task = server.task_state
                if task in DONE or task == states.DELETING or task in SNAPSHOTS:
                    self._submit(server.id, task)
                elif task is None:
                    self._sync_power(server, actual.get(server.id, PowerState.NOSTATE))
            db.commit()
        for uuid in set(actual) - known:
            with self._lock:
                busy = uuid in self._in_flight
            if not busy:
                log.info("destroying guest %s: no server owns it", uuid)
                self.driver.destroy(uuid)

    def _sync_power(self, server: Server, actual: PowerState) -> None:
        """Reality wins for power: a guest that stopped by itself (or whose QEMU died) is
        SHUTOFF; the recorded power state always follows the hypervisor."""
        if server.vm_state in (states.ACTIVE, states.PAUSED) and actual in (
            PowerState.SHUTDOWN,
            PowerState.CRASHED,
            PowerState.NOSTATE,
        ):
            log.info("server %s stopped outside picocloud: now SHUTOFF", server.id)
            server.vm_state = states.STOPPED
            server.updated_at = utcnow()
        if server.vm_state in (states.BUILDING, states.ERROR):
            return
        if server.power_state != int(actual):
            server.power_state = int(actual)
            server.updated_at = utcnow()

    def _submit(self, server_id: str, task: str) -> None:
        with self._lock:
            self._in_flight.add(server_id)
        self._pool.submit(self._run_task, server_id, task)

    # -- tasks -----------------------------------------------------------------------------
    def _run_task(self, server_id: str, task: str) -> None:
        started = utcnow()
        error: str | None = None
        tb: str | None = None
        try:
            self._do(server_id, task)
        except Exception as exc:
            error, tb = str(exc) or type(exc).__name__, traceback.format_exc()
            log.exception("task %s of server %s failed", task, server_id)
        finally:
            try:
                self._finish(server_id, task, started, error, tb)
            finally:
                with self._lock:
                    self._in_flight.discard(server_id)
                self.wake.set()

    def _server(self, db: Session, server_id: str) -> Server:
        server = db.get(Server, server_id)
        if server is None:
            raise LookupError(f"server {server_id} vanished")
        return server

    def _do(self, server_id: str, task: str) -> None:
        d = self.driver
        with self.cloud.session() as db:
            server = self._server(db, server_id)
            spec = (
                self._spec(db, server, revert=task == states.RESIZE_REVERTING)
                if task
                in (states.SPAWNING, states.REBUILDING, states.RESIZE_PREP, states.RESIZE_REVERTING)
                else None
            )
            was_running = server.power_state == PowerState.RUNNING
            was_stopped = server.vm_state == states.STOPPED  # and stays so through a rebuild
            snapshot = self._snapshot_image(db, server) if task in SNAPSHOTS else None
            args = dict(server.task_args or {})
        timeout = self.cloud.settings.graceful_shutdown_timeout
        actions: dict[str, Callable[[], Any]] = {
            states.POWERING_OFF: lambda: d.power_off(server_id, timeout),
            states.POWERING_ON: lambda: d.power_on(server_id),
            states.REBOOTING: lambda: d.reboot(server_id, hard=False),
            states.REBOOTING_HARD: lambda: d.reboot(server_id, hard=True),
            states.PAUSING: lambda: d.pause(server_id),
            states.UNPAUSING: lambda: d.unpause(server_id),
            states.SUSPENDING: lambda: d.suspend(server_id),
            states.RESUMING: lambda: d.resume(server_id),
            states.DELETING: lambda: d.destroy(server_id),
        }
        if task in actions:
            actions[task]()
        elif task == states.SPAWNING and spec is not None:
            d.spawn(spec)
        elif task == states.REBUILDING and spec is not None:
            d.rebuild(spec, start=not was_stopped)
        elif task in (states.RESIZE_PREP, states.RESIZE_REVERTING) and spec is not None:
            if task == states.RESIZE_PREP:
                d.resize(spec)
            else:
                d.revert_resize(spec)
            if was_running:  # a stopped server stays stopped through resize and revert
                d.power_on(server_id)
        elif task == states.RESIZE_CONFIRMING:
            d.confirm_resize(server_id)
        elif task in SNAPSHOTS:
            self._take_snapshot(server_id, snapshot)
            if task == states.IMAGE_BACKUP and snapshot is not None:
                self._rotate_backups(server_id, snapshot, args["backup_type"], args["rotation"])

    def _finish(
        self, server_id: str, task: str, started: Any, error: str | None, tb: str | None
    ) -> None:
        unwanted: str | None = None
        with self.cloud.session() as db:
            server = db.get(Server, server_id)
            if server is None:
                return
            now = utcnow()
            if server.task_state != task:
                # Superseded while it ran: a delete (or an admin's reset-state) came in; the
                # new task's state stands, and the agent carries it out next.
                if error is not None and task in SNAPSHOTS:
                    unwanted = self._drop_unfilled_image(db, server)
            elif error is None:
                if task == states.DELETING:
                    mark_deleted(server)
                elif task in SNAPSHOTS:
                    server.task_state = None
                else:
                    vm_state, power = DONE[task]
                    actual = self.driver.state(server_id)
                    if task in ENDS_AS_IT_RUNS and actual != PowerState.RUNNING:
                        vm_state = states.STOPPED
                    server.vm_state, server.task_state = vm_state, None
                    server.power_state = int(actual) or int(power)
                    if task == states.SPAWNING:
                        server.launched_at = now
                    if task == states.RESIZE_CONFIRMING:
                        server.old_flavor = None
                    if task == states.RESIZE_REVERTING and server.old_flavor:
                        server.flavor, server.flavor_id = (
                            server.old_flavor,
                            str(server.old_flavor["id"]),
                        )
                        server.old_flavor = None
            else:
                server.task_state = None
                if task in SNAPSHOTS:
                    unwanted = self._drop_unfilled_image(db, server)
                if task in FAILS_TO_ERROR:
                    server.vm_state = states.ERROR
                    server.fault = {
                        "code": 500,
                        "message": error[:255],
                        "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "details": tb or "",
                    }
                    if task == states.SPAWNING:
                        self.driver.destroy(server_id)
                elif task == states.DELETING:
                    server.vm_state = states.ERROR
            if server.task_state is None or server.task_state == task:
                server.task_args = None
            server.updated_at = now
            self._record_event(db, server_id, task, started, error, tb)
            db.commit()
        self.cloud.after_commit(db)
        if unwanted is not None:
            self.cloud.images.delete(unwanted)

    def _record_event(
        self,
        db: Session,
        server_id: str,
        task: str,
        started: Any,
        error: str | None,
        tb: str | None,
    ) -> None:
        action = db.scalars(
            select(InstanceAction)
            .where(InstanceAction.server_id == server_id)
            .order_by(InstanceAction.id.desc())
        ).first()
        if action is None:
            return
        fmt = "%Y-%m-%dT%H:%M:%S.%f"
        action.events = [
            *action.events,
            {
                "event": f"compute_{task.replace('-', '_')}",
                "start_time": started.strftime(fmt),
                "finish_time": utcnow().strftime(fmt),
                "result": "Success" if error is None else "Error",
                "traceback": tb,
            },
        ]
        action.finish_time = utcnow()
        if error is not None:
            action.message = "Error"

    # -- building specs --------------------------------------------------------------------
    def _spec(self, db: Session, server: Server, revert: bool = False) -> GuestSpec:
        image = db.get(Image, server.image_id)
        if image is None or image.status != "active" or not image.checksum:
            raise RuntimeError(f"image {server.image_id} is not available")
        source = self.cloud.images.path(image.id)
        web = image_locations.urls(db, image.id) if source is None else []
        if source is None and not web:
            raise RuntimeError(f"image {image.id} has no data")
        disk_format, max_size = image.disk_format or "", self.cloud.settings.image_max_virtual_size

        def fetch(dest: Path) -> None:
            if source is not None:  # a store's copy: inspected when it was uploaded
                shutil.copyfile(source, dest)
                return
            with dest.open("wb") as f:  # a URL's bytes: inspected here, as an upload is
                for chunk in image_locations.open_first(self.cloud, web):
                    f.write(chunk)
            check_upload(dest, disk_format, max_size)

        base = self.images.ensure(image.checksum, fetch)
        flavor = server.old_flavor if revert and server.old_flavor else server.flavor
        drive = None
        if server.config_drive:
            drive = ConfigDrive(
                meta_data=metadata_document(server),
                user_data=base64.b64decode(server.user_data) if server.user_data else None,
            )
        return GuestSpec(
            uuid=server.id,
            name=server.name,
            vcpus=int(flavor["vcpus"]),
            memory_mb=int(flavor["ram"]),
            root_gb=int(flavor["disk"]),
            base_image=base,
            base_format=image.disk_format or "qcow2",
            ephemeral_gb=int(flavor.get("ephemeral", 0)),
            swap_mb=int(flavor.get("swap", 0)),
            config_drive=drive,
            extra_specs=dict(flavor.get("extra_specs", {})),
        )

    def _snapshot_image(self, db: Session, server: Server) -> str | None:
        """The queued image the API added for this snapshot or backup."""
        if server.task_args and server.task_args.get("image_id"):
            return str(server.task_args["image_id"])
        for image in db.scalars(  # a snapshot asked for before task_args existed
            select(Image).where(Image.status == "queued", Image.owner == server.project_id)
        ).all():
            if image.properties.get("instance_uuid") == server.id:
                return image.id
        return None

    def _take_snapshot(self, server_id: str, image_id: str | None) -> None:
        from picocloud.image.hostfiles import publish_file

        if image_id is None:
            return
        work = self.cloud.settings.data_dir / "compute" / "snapshots"
        work.mkdir(parents=True, exist_ok=True)
        dest = work / f"{image_id}.qcow2"
        try:
            self.driver.snapshot(server_id, dest)
            publish_file(self.cloud, image_id, dest)
        finally:
            Path(dest).unlink(missing_ok=True)

    def _drop_unfilled_image(self, db: Session, server: Server) -> str | None:
        """After a failed snapshot or backup, delete its image unless it became active (as
        Nova's delete_image_on_error); the id whose stored data to delete after commit."""
        image_id = self._snapshot_image(db, server)
        image = db.get(Image, image_id) if image_id else None
        if image is None or image.status == "active":
            return None
        try:
            ImageService(db, self.cloud.settings).delete(image)
        except Forbidden as exc:  # protected meanwhile by its owner
            log.info("image %s of a failed snapshot kept: %s", image.id, exc)
            return None
        return image.id

    def _rotate_backups(self, server_id: str, new_id: str, backup_type: str, rotation: int) -> None:
        """Delete this server's backups of `backup_type` beyond the `rotation` newest, as Nova
        does once a backup is taken; a protected one stays (Nova logs that and goes on)."""
        with self.cloud.session() as db:
            server = self._server(db, server_id)
            backups = [
                image
                for image in db.scalars(select(Image).where(Image.owner == server.project_id))
                if image.properties.get("image_type") == "backup"
                and image.properties.get("instance_uuid") == server_id
                and image.properties.get("backup_type") == backup_type
            ]
            # Newest first; created_at counts whole seconds, so the new backup leads its second.
            backups.sort(key=lambda i: (i.created_at, i.id == new_id, i.id), reverse=True)
            images, deleted = ImageService(db, self.cloud.settings), []
            for image in backups[rotation:]:
                try:
                    images.delete(image)
                except Forbidden as exc:
                    log.info("backup %s of server %s kept: %s", image.id, server_id, exc)
                    continue
                deleted.append(image.id)
            db.commit()
        for image_id in deleted:
            self.cloud.images.delete(image_id)
        if deleted:
            log.info("server %s: rotated out backups %s", server_id, ", ".join(deleted))

    def console_log(self, server_id: str, length: int | None) -> str:
        return self.driver.console_log(server_id, length)


def metadata_document(server: Server) -> dict[str, Any]:
    """OpenStack's meta_data.json for a server (config drive and metadata service)."""
    doc: dict[str, Any] = {
        "uuid": server.id,
        "name": server.name,
        "hostname": hostname_of(server.name),
        "launch_index": server.launch_index,
        "availability_zone": server.availability_zone or "nova",
        "project_id": server.project_id,
        "meta": dict(server.metadata_),
        "devices": [],
    }
    if server.key_name and server.key_data:
        doc["public_keys"] = {server.key_name: server.key_data}
        doc["keys"] = [{"name": server.key_name, "type": "ssh", "data": server.key_data}]
    return doc

