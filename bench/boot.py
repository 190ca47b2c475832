"""Boot benchmark: servers from the API call to ACTIVE and to the guest's ready marker.

Run as `.venv/bin/python bench/boot.py [--counts 1,10,40] [--create multi|parallel]`.
It starts one `picocloud up` on a free 127.0.0.1 port with a temporary data dir and drives the
compute API directly (http.client, a token, `OpenStack-API-Version: compute 2.37`):

- boot storms of N `tiny` servers (flavor 42, `networks: "none"`): one POST with
  min_count = max_count = N (`--create multi`, Nova's multi-create) or N POSTs at once
  (`--create parallel`); per server, the time from the POST to ACTIVE and to
  "picocloud-guest ready" in `os-getConsoleOutput`; then host memory per guest (QEMU's RSS,
  the part of it that is guest RAM, the per-guest supervisor); then delete and wait until
  every QEMU of the data dir is gone;
- provisioning from a 64 MiB and a 2 GiB image (qcow2 of random bytes, not bootable): API to
  ACTIVE for the first server (the base image enters the per-host cache) and for later ones.

Everything it started is deleted at the end (also after an error or Ctrl-C), then the server
is stopped with SIGINT and the temp dir removed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudproc import CloudProcess
from procstat import CLK_TCK, HOST, REPO, cpu_seconds, git_revision, machine_cpu, machine_summary

sys.path.insert(0, str(REPO / "src"))

from picocloud.compute.virt.qemu.cmdline import detect_accel

COMPUTE = "/compute/v2.1"
MICROVERSION = "compute 2.37"
TINY_FLAVOR = "42"  # p1.tiny: 1 vCPU, 128 MiB, 1 GB
MARKER = "picocloud-guest ready"
POLL = 0.5  # seconds between polling rounds
MiB = 1 << 20


# -- the cloud under test --------------------------------------------------------------------


class Picocloud(CloudProcess):
    """The cloud under test, with an admin token and a small JSON client."""

    def __init__(self) -> None:
        super().__init__({
            "PICOCLOUD_PASSWORD_HASH_ROUNDS": "4",
            # 40 one-vCPU servers on a 2-core host: the default ratio (4.0) places 8.
            "PICOCLOUD_CPU_ALLOCATION_RATIO": "64",
        }, prefix="picocloud-bench-boot-")  # fmt: skip
        self.token = ""
        self.project_id = ""
        self._local = threading.local()

    def start(self, timeout: float = 120) -> None:
        super().start(timeout)
        token = self.issue_token()
        self.token, self.project_id = token.id, token.project_id

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(HOST, self.port, timeout=120)
        return conn

    def call(
        self, method: str, path: str, body: Any = None, raw: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:  # fmt: skip
        """One request on this thread's keep-alive connection: status, headers, JSON body."""
        hdrs = {"Accept": "application/json", **(headers or {})}
        if self.token:
            hdrs["X-Auth-Token"] = self.token
        if path.startswith(COMPUTE):
            hdrs["OpenStack-API-Version"] = MICROVERSION
        payload = raw
        if body is not None:
            payload = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        for attempt in (1, 2):  # a keep-alive connection the server closed: reconnect once
            conn = self._conn()
            try:
                conn.request(method, path, body=payload, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (ConnectionError, http.client.RemoteDisconnected, BrokenPipeError):
                conn.close()
                self._local.conn = None
                if attempt == 2 or raw is not None:
                    raise
        out_headers = {k.lower(): v for k, v in resp.getheaders()}
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data.decode(errors="replace")
        return resp.status, out_headers, parsed

    def ok(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        status, _, reply = self.call(method, path, body)
        if status != expect:
            raise RuntimeError(f"{method} {path}: {status} {reply}")
        return reply


# -- host processes --------------------------------------------------------------------------


@dataclass
class Proc:
    pid: int
    kind: str  # "qemu" or "supervisor"
    uuid: str
    argv: list[str]


def guest_processes(data_dir: Path) -> list[Proc]:
    """The QEMUs and supervisors of guests under `data_dir` (other clouds' are not ours)."""
    marker = str(data_dir)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
        except OSError:
            continue
        if not argv or not any(marker in a for a in argv):
            continue
        uuid = next((p for p in re.findall(r"/guests/([0-9a-f-]{36})", " ".join(argv))), "")
        if os.path.basename(argv[0]).startswith("qemu-system"):
            found.append(Proc(int(entry.name), "qemu", uuid, argv))
        elif any(a.endswith("supervisor.py") for a in argv[:4]):
            found.append(Proc(int(entry.name), "supervisor", uuid, argv))
    return found


def status_kib(pid: int) -> dict[str, int]:
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[key] = int(value.split()[0])
    return out


def guest_ram_resident_kib(pid: int, ram_mib: int) -> int:
    """Resident KiB of QEMU's guest-RAM mapping: its largest anonymous mapping of at least
    the flavor's RAM (the rest of QEMU's RSS is what the host pays beyond guest RAM)."""
    best_size, best_rss = 0, 0
    size = rss = 0
    anonymous = False
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            head = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                if anonymous and size >= ram_mib * 1024 and size > best_size:
                    best_size, best_rss = size, rss
                anonymous = len(head) < 6
                size = rss = 0
            elif head[0] == "Size:":
                size = int(head[1])
            elif head[0] == "Rss:":
                rss = int(head[1])
        if anonymous and size >= ram_mib * 1024 and size > best_size:
            best_rss = rss
    return best_rss




class HostWatch(threading.Thread):
    """What the host shows, independent of the API: when each guest's QEMU process was
    created (/proc starttime) and when its console.log first held the ready marker."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(name="host-watch", daemon=True)
        self.guests = data_dir / "compute" / "guests"
        self.data_dir = data_dir
        self.qemu_start: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.panicked: dict[str, str] = {}  # uuid -> the kernel's panic line
        self.done = threading.Event()
        # CLOCK_MONOTONIC and /proc/uptime count from boot alike: map starttime onto it.
        self.offset = float(Path("/proc/uptime").read_text().split()[0]) - time.monotonic()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for p in guest_processes(self.data_dir):
                if p.kind == "qemu" and p.uuid and p.uuid not in self.qemu_start:
                    with contextlib.suppress(OSError, IndexError, ValueError):
                        stat = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1]
                        started = int(stat.split()[19]) / CLK_TCK - self.offset
                        self.qemu_start[p.uuid] = started
            for uuid in list(self.qemu_start):
                if uuid in self.ready or uuid in self.panicked:
                    continue
                with contextlib.suppress(OSError):
                    console = (self.guests / uuid / "console.log").read_bytes()
                    if MARKER.encode() in console:
                        self.ready[uuid] = time.monotonic()
                    elif panic := re.search(rb"Kernel panic - not syncing: [^\n\]]*", console):
                        self.panicked[uuid] = panic.group().decode(errors="replace").strip()


# -- one boot storm --------------------------------------------------------------------------


@dataclass
class Storm:
    count: int
    create: str
    post_s: list[float] = field(default_factory=list)
    active_s: dict[str, float] = field(default_factory=dict)
    ready_s: dict[str, float] = field(default_factory=dict)
    qemu_start_s: dict[str, float] = field(default_factory=dict)  # host: QEMU process created
    host_ready_s: dict[str, float] = field(default_factory=dict)  # host: marker in console.log
    panicked: dict[str, str] = field(default_factory=dict)  # guest kernels that panicked
    errors: dict[str, str] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    qemu_cpu_s: list[float] = field(default_factory=list)
    qemu_rss: list[float] = field(default_factory=list)  # MiB
    guest_ram: list[float] = field(default_factory=list)  # MiB of QEMU's RSS that is guest RAM
    supervisor_rss: list[float] = field(default_factory=list)
    accel_args: set[str] = field(default_factory=set)
    machine_busy: float = 0.0
    steal: float = 0.0
    picocloud_cpu: float = 0.0
    supervisor_cpu: float = 0.0
    all_qemu_cpu: float = 0.0
    delete_s: float = 0.0
    timed_out: bool = False


def create_servers(cloud: Picocloud, name: str, image: str, flavor: str, count: int,
                   create: str) -> tuple[list[str], list[float], float]:  # fmt: skip
    """Start `count` servers; their ids, the POST latencies and the start time (monotonic)."""
    server = {"name": name, "imageRef": image, "flavorRef": flavor, "networks": "none"}
    t0 = time.monotonic()
    if create == "multi":
        body = {"server": {**server, "min_count": count, "max_count": count,
                           "return_reservation_id": True}}  # fmt: skip
        reply = cloud.ok("POST", f"{COMPUTE}/servers", body, expect=202)
        post = [time.monotonic() - t0]
        listing = cloud.ok(
            "GET", f"{COMPUTE}/servers?reservation_id={reply['reservation_id']}"
        )["servers"]
        ids = [s["id"] for s in listing]
        if len(ids) != count:
            raise RuntimeError(f"asked for {count} servers, the reservation has {len(ids)}")
        return ids, post, t0

    def one(index: int) -> tuple[str, float]:
        started = time.monotonic()
        body = {"server": {**server, "name": f"{name}-{index + 1}"}}
        reply = cloud.ok("POST", f"{COMPUTE}/servers", body, expect=202)
        return reply["server"]["id"], time.monotonic() - started

    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(one, range(count)))
    return [r[0] for r in results], [r[1] for r in results], t0


Times = dict[str, float]


def wait_servers(
    cloud: Picocloud, ids: list[str], t0: float, deadline: float, console: bool,
    poll: float = POLL, given_up: Callable[[], set[str]] = set,
) -> tuple[Times, Times, dict[str, str]]:  # fmt: skip
    """Poll until every server is ACTIVE (and, with `console`, shows the ready marker), is
    in ERROR, or is in `given_up()` (guests that will never get there)."""
    active: dict[str, float] = {}
    ready: dict[str, float] = {}
    errors: dict[str, str] = {}
    wanted = set(ids)
    while time.monotonic() < deadline:
        servers = cloud.ok("GET", f"{COMPUTE}/servers/detail")["servers"]
        now = time.monotonic() - t0
        for s in servers:
            if s["id"] not in wanted or s["id"] in active or s["id"] in errors:
                continue
            if s["status"] == "ACTIVE":
                active[s["id"]] = now
            elif s["status"] == "ERROR":
                errors[s["id"]] = str(s.get("fault", {}).get("message", "ERROR"))
        if console:
            for sid in [i for i in ids if i in active and i not in ready]:
                status, _, reply = cloud.call(
                    "POST", f"{COMPUTE}/servers/{sid}/action",
                    {"os-getConsoleOutput": {"length": 50}},
                )  # fmt: skip
                if status == 200 and MARKER in reply.get("output", ""):
                    ready[sid] = time.monotonic() - t0
        done = (ready if console else active).keys() | errors.keys() | given_up()
        if wanted <= done:
            break
        time.sleep(poll)
    return active, ready, errors


def delete_all(cloud: Picocloud, timeout: float = 600) -> float:
    """Delete every server and wait until none is listed and no QEMU of ours runs."""
    t0 = time.monotonic()
    for s in cloud.ok("GET", f"{COMPUTE}/servers")["servers"]:
        status, _, reply = cloud.call("DELETE", f"{COMPUTE}/servers/{s['id']}")
        if status not in (204, 404):
            print(f"  warning: delete {s['id']}: {status} {reply}", file=sys.stderr)
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        left = cloud.ok("GET", f"{COMPUTE}/servers")["servers"]
        if not left and not guest_processes(cloud.data):
            return time.monotonic() - t0
        time.sleep(POLL)
    raise RuntimeError(f"servers or QEMUs still there {timeout:.0f} s after delete")


def storm(cloud: Picocloud, image: str, count: int, create: str, timeout: float) -> Storm:
    result = Storm(count, create)
    busy0, steal0 = machine_cpu()
    pc0 = cpu_seconds(cloud.pid)
    watch = HostWatch(cloud.data)
    watch.start()
    ids, result.post_s, t0 = create_servers(cloud, f"boot{count}", image, TINY_FLAVOR, count,
                                            create)  # fmt: skip
    result.ids = ids
    active, ready, errors = wait_servers(cloud, ids, t0, t0 + timeout, console=True,
                                         given_up=lambda: set(watch.panicked))  # fmt: skip
    result.wall_s = time.monotonic() - t0
    time.sleep(0.5)
    watch.done.set()
    watch.join()
    result.qemu_start_s = {k: v - t0 for k, v in watch.qemu_start.items()}
    result.host_ready_s = {k: v - t0 for k, v in watch.ready.items()}
    result.panicked = dict(watch.panicked)
    result.active_s, result.ready_s, result.errors = active, ready, errors
    result.timed_out = len(ready) + len(errors) + len(watch.panicked) < count
    busy1, steal1 = machine_cpu()
    result.machine_busy, result.steal = busy1 - busy0, steal1 - steal0
    result.picocloud_cpu = cpu_seconds(cloud.pid) - pc0
    procs = guest_processes(cloud.data)
    result.qemu_cpu_s = [cpu_seconds(p.pid) for p in procs
                         if p.kind == "qemu" and p.uuid not in result.panicked]  # fmt: skip
    result.all_qemu_cpu = sum(cpu_seconds(p.pid) for p in procs if p.kind == "qemu")
    result.supervisor_cpu = sum(cpu_seconds(p.pid) for p in procs if p.kind == "supervisor")
    time.sleep(2)  # the guests idle: memory as it stays, not mid-boot
    for p in guest_processes(cloud.data):
        if p.uuid in result.panicked:
            continue  # memory of booted guests only
        rss = status_kib(p.pid).get("VmRSS", 0) / 1024
        if p.kind == "qemu":
            result.qemu_rss.append(rss)
            result.guest_ram.append(guest_ram_resident_kib(p.pid, 128) / 1024)
            if "-accel" in p.argv:
                result.accel_args.add(p.argv[p.argv.index("-accel") + 1])
        else:
            result.supervisor_rss.append(rss)
    result.delete_s = delete_all(cloud)
    return result


# -- provisioning time against image size ----------------------------------------------------


@dataclass
class Provision:
    size_mib: int
    file_mib: float
    upload_s: float
    cold_s: float
    warm_s: list[float]


def make_image(path: Path, size_mib: int) -> None:
    """A qcow2 of `size_mib` MiB of random bytes (the first MiB zero: nothing to boot)."""
    raw = path.with_suffix(".raw")
    with raw.open("wb") as fh:
        fh.write(bytes(MiB))
        for _ in range(size_mib - 1):
            fh.write(os.urandom(MiB))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
                   check=True)  # fmt: skip
    raw.unlink()


def upload_image(cloud: Picocloud, name: str, path: Path) -> tuple[str, float]:
    reply = cloud.ok("POST", "/image/v2/images", {
        "name": name, "disk_format": "qcow2", "container_format": "bare",
    }, expect=201)  # fmt: skip
    image_id = reply["id"]
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(HOST, cloud.port, timeout=600)
    with path.open("rb") as fh:
        conn.request("PUT", f"/image/v2/images/{image_id}/file", body=fh, headers={
            "X-Auth-Token": cloud.token, "Content-Type": "application/octet-stream",
            "Content-Length": str(path.stat().st_size),
        })  # fmt: skip
        resp = conn.getresponse()
        resp.read()
    conn.close()
    if resp.status != 204:
        raise RuntimeError(f"upload of {name}: {resp.status}")
    elapsed = time.monotonic() - t0
    if cloud.ok("GET", f"/image/v2/images/{image_id}")["status"] != "active":
        raise RuntimeError(f"image {name} is not active after its upload")
    return image_id, elapsed


def provision_once(cloud: Picocloud, image: str, flavor: str, timeout: float) -> float:
    ids, _, t0 = create_servers(cloud, "prov", image, flavor, 1, "multi")
    active, _, errors = wait_servers(cloud, ids, t0, t0 + timeout, console=False, poll=0.1)
    delete_all(cloud)
    if errors or ids[0] not in active:
        raise RuntimeError(f"server from image {image} did not become ACTIVE: {errors}")
    return active[ids[0]]


def provisioning(cloud: Picocloud, sizes: list[int], warm: int, timeout: float) -> list[Provision]:
    largest = max(sizes)
    disk_gb = -(-largest // 1024) + 1
    flavor = cloud.ok("POST", f"{COMPUTE}/flavors", {"flavor": {
        "name": f"bench.disk{disk_gb}", "vcpus": 1, "ram": 128, "disk": disk_gb,
    }})["flavor"]["id"]  # fmt: skip
    results = []
    for size in sizes:
        path = cloud.tmp / f"blank-{size}m.qcow2"
        print(f"provisioning: making a {size} MiB image", file=sys.stderr, flush=True)
        make_image(path, size)
        file_mib = path.stat().st_size / MiB
        image, upload = upload_image(cloud, f"bench-{size}m", path)
        path.unlink()
        print(f"provisioning: {size} MiB image, first server and {warm} more",
              file=sys.stderr, flush=True)  # fmt: skip
        cold = provision_once(cloud, image, flavor, timeout)
        again = [provision_once(cloud, image, flavor, timeout) for _ in range(warm)]
        results.append(Provision(size, file_mib, upload, cold, again))
    return results


# -- report ----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def describe_machine() -> str:
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                          check=False).stdout.splitlines()[0]  # fmt: skip
    return f"{machine_summary()}, {qemu}, picocloud git {git_revision()}"


def describe_accel(hypervisors: list[dict[str, Any]], storms: list[Storm]) -> str:
    flags = set(Path("/proc/cpuinfo").read_text().split())
    reasons = []
    if not flags & {"vmx", "svm"}:
        reasons.append("no vmx/svm in the CPU flags")
    if Path("/sys/module/kvm_pvm").exists():
        reasons.append("/dev/kvm is kvm_pvm")
    argv = sorted({a for s in storms for a in s.accel_args})
    hv = ", ".join(f"{h.get('hypervisor_type')} {h.get('hypervisor_version')}"
                   for h in hypervisors)  # fmt: skip
    return (f"{detect_accel().upper()} (picocloud's detect_accel: {detect_accel()}"
            f"{'; ' + ', '.join(reasons) if reasons else ''}); QEMU argv: -accel "
            f"{' / '.join(argv) or '?'}; os-hypervisors: {hv}")


def report(storms: list[Storm], provisions: list[Provision], hypervisors: list[dict[str, Any]],
           command: str, machine: str, idle_rss: float, after_rss: float,
           exit_code: int | None) -> None:  # fmt: skip
    cores = os.cpu_count() or 1
    print(f"command: {command}")
    print(f"machine: {machine}")
    print(f"accelerator: {describe_accel(hypervisors, storms)}")
    print(f"flavor {TINY_FLAVOR} (1 vCPU, 128 MiB, 1 GB), image tiny, networks none")
    print()
    print("seconds from the POST, p50 / max over the servers of a storm")
    print(f"{'N':>3} {'create':<18} {'POST ms':>7}  {'QEMU started':>13}  {'ACTIVE (API)':>13}"
          f"  {'ready (host)':>13}  {'ready (API)':>13}  {'boot':>11}  {'QEMU→ACTIVE':>11}"
          f"  {'ok':>5} {'err':>3}")
    for s in storms:
        how = "1 POST min=max=N" if s.create == "multi" else "N parallel POSTs"
        boot = [s.host_ready_s[k] - s.qemu_start_s[k] for k in s.host_ready_s
                if k in s.qemu_start_s]  # fmt: skip
        marked = [s.active_s[k] - s.qemu_start_s[k] for k in s.active_s
                  if k in s.qemu_start_s]  # fmt: skip

        def span(values: dict[str, float] | list[float]) -> str:
            v = list(values.values()) if isinstance(values, dict) else values
            return f"{p50(v):>6.1f} {max(v, default=float('nan')):>6.1f}"

        print(f"{s.count:>3} {how:<18} {p50(s.post_s) * 1000:>7.0f}  {span(s.qemu_start_s)}"
              f"  {span(s.active_s)}  {span(s.host_ready_s)}  {span(s.ready_s)}"
              f"  {p50(boot):>5.1f} {max(boot, default=float('nan')):>5.1f}"
              f"  {p50(marked):>5.1f} {max(marked, default=float('nan')):>5.1f}"
              f"  {len(s.ready_s):>2}/{s.count:<2} {len(s.errors):>3}")
        for sid, message in list(s.errors.items())[:3]:
            print(f"{'':>4}ERROR {sid}: {message[:150]}")
        if s.timed_out:
            print(f"{'':>4}timed out: {s.count - len(s.ready_s) - len(s.errors)} not ready")
        for message in sorted(set(s.panicked.values())):
            n = sum(1 for m in s.panicked.values() if m == message)
            print(f"{'':>4}{n} guest kernel(s) panicked (server still ACTIVE): {message}")
    print(f"QEMU started: the QEMU process created (/proc starttime). ACTIVE (API): status "
          f"ACTIVE in GET /servers/detail, polled every\n{POLL} s plus the requests of a "
          "round. ready (host): the marker in the guest's console.log (read every 0.2 s); "
          "ready (API):\nthe marker in os-getConsoleOutput, asked only once the server is "
          "ACTIVE (before, the API answers 409). boot: ready (host)\n- QEMU started, per "
          "guest. QEMU→ACTIVE: ACTIVE (API) - QEMU started, per server. ok: servers with the "
          "marker.")
    print()
    print(f"{'N':>3}  {'QEMU CPU s':>10}  {'pc CPU s':>8}  {'busy':>5} {'other':>5} {'steal':>5}"
          f"  {'wall s':>6}  {'delete s':>8}")
    for s in storms:
        other = s.machine_busy - s.all_qemu_cpu - s.supervisor_cpu - s.picocloud_cpu
        print(f"{s.count:>3}  {p50(s.qemu_cpu_s):>10.1f}  {s.picocloud_cpu:>8.1f}"
              f"  {s.machine_busy / s.wall_s:>5.2f} {max(other, 0) / s.wall_s:>5.2f}"
              f" {s.steal / s.wall_s:>5.2f}  {s.wall_s:>6.1f}  {s.delete_s:>8.1f}")
    print("QEMU CPU s: median CPU of one QEMU from its start until all were ready. pc CPU s: "
          "the picocloud up process (API, agent,\nanswering this script's polls) in that "
          f"time. busy/other/steal: cores busy on average from the POST until all were ready "
          f"(of {cores}):\nthe whole machine, the part that was neither QEMU, its supervisor "
          "nor picocloud (other tenants), hypervisor steal.\ndelete s: DELETE of every server "
          "until none is listed and no QEMU or supervisor of the data dir is left.")
    print()
    print(f"{'N':>3}  {'QEMU RSS MiB p50':>16} {'max':>6}  {'RSS-128 p50':>11}"
          f"  {'guest RAM resident':>18}  {'RSS-guest RAM':>13}  {'supervisor RSS':>14}"
          f"  {'beyond guest RAM':>16}")
    for s in storms:
        if not s.qemu_rss:
            continue
        beyond = [r - g for r, g in zip(s.qemu_rss, s.guest_ram, strict=True)]
        print(f"{s.count:>3}  {p50(s.qemu_rss):>16.1f} {max(s.qemu_rss):>6.1f}"
              f"  {p50([r - 128 for r in s.qemu_rss]):>11.1f}  {p50(s.guest_ram):>18.1f}"
              f"  {p50(beyond):>13.1f}  {p50(s.supervisor_rss):>14.1f}"
              f"  {p50(beyond) + p50(s.supervisor_rss):>16.1f}")
    print("per guest, medians, MiB, 2 s after the last ready marker. guest RAM resident: the "
          "resident part of QEMU's guest-RAM mapping;\nbeyond guest RAM: (QEMU RSS - guest "
          "RAM resident) + the supervisor's RSS, i.e. what one server costs on top of the RAM "
          "its guest touched.")
    print(f"picocloud up RSS: {idle_rss:.1f} MiB before the first storm, {after_rss:.1f} MiB "
          f"after the last; exit after SIGINT: {exit_code}")
    if provisions:
        print()
        print(f"{'image':>9} {'qcow2 MiB':>10} {'upload s':>9}  {'first server s':>14}"
              f"  {'later servers s (each)':<24}")
        for p in provisions:
            warm = " ".join(f"{w:.1f}" for w in p.warm_s)
            print(f"{p.size_mib:>5} MiB {p.file_mib:>10.0f} {p.upload_s:>9.1f}  {p.cold_s:>14.1f}"
                  f"  {warm:<24}")
        print("API to ACTIVE (polled every 0.1 s), one server at a time (deleted before the "
              "next): the first "
              "copies and verifies the image into the host's cache, later ones only make a "
              "qcow2 overlay on it.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,10,40", help="servers per boot storm (1,10,40)")
    parser.add_argument("--create", choices=["multi", "parallel"], default="multi",
                        help="one POST with min_count=max_count=N, or N parallel POSTs")
    parser.add_argument("--timeout", type=float, default=0,
                        help="seconds a storm may take (default 120 + 15 per server)")
    parser.add_argument("--image-sizes", default="64,2048",
                        help="MiB of the provisioning images ('' to skip)")
    parser.add_argument("--warm", type=int, default=3, help="servers after the first, per image")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    sizes = [int(c) for c in args.image_sizes.split(",") if c.strip()]
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    machine = describe_machine()
    cloud = Picocloud()
    print(f"starting picocloud up on {HOST}:{cloud.port} in {cloud.tmp}", file=sys.stderr)
    storms: list[Storm] = []
    provisions: list[Provision] = []
    exit_code: int | None = None
    hypervisors: list[dict[str, Any]] = []
    idle_rss = after_rss = 0.0
    try:
        cloud.start()
        deadline = time.monotonic() + 300
        while True:
            images = cloud.ok("GET", "/image/v2/images?name=tiny")["images"]
            if images and images[0]["status"] == "active":
                tiny = images[0]["id"]
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the built-in image tiny did not become active")
            time.sleep(1)
        cloud.ok("PUT", f"{COMPUTE}/os-quota-sets/{cloud.project_id}", {"quota_set": {
            "instances": -1, "cores": -1, "ram": -1}})  # fmt: skip
        hypervisors = cloud.ok("GET", f"{COMPUTE}/os-hypervisors/detail")["hypervisors"]
        time.sleep(2)
        idle_rss = status_kib(cloud.pid).get("VmRSS", 0) / 1024
        for count in counts:
            print(f"boot storm: {count} servers ({args.create})", file=sys.stderr, flush=True)
            timeout = args.timeout or 120 + 15 * count
            storms.append(storm(cloud, tiny, count, args.create, timeout))
        if sizes:
            provisions = provisioning(cloud, sizes, args.warm, 300)
        after_rss = status_kib(cloud.pid).get("VmRSS", 0) / 1024
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    except Exception:
        print(cloud.tail(), file=sys.stderr)
        raise
    finally:
        exit_code = cleanup(cloud)
    report(storms, provisions, hypervisors, command, machine, idle_rss, after_rss, exit_code)
    return 0


def cleanup(cloud: Picocloud) -> int | None:
    """Delete every server through the API; QEMUs still left (ours: they run under our temp
    dir) get SIGKILL; then stop picocloud and remove the temp dir."""
    if cloud.proc is not None and cloud.proc.poll() is None and cloud.token:
        try:
            delete_all(cloud, timeout=300)
        except Exception as exc:  # cleanup goes on whatever failed
            print(f"  warning: cleanup through the API failed: {exc}", file=sys.stderr)
    code = cloud.stop(grace=20.0)
    for p in guest_processes(cloud.data):
        print(f"  warning: killing leftover {p.kind} {p.pid}", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
    cloud.remove()
    return code


if __name__ == "__main__":
    sys.exit(main())
