"""Image data benchmark: a 1 GiB upload and download against a real `picocloud up`, next to `cp`.

Run as `.venv/bin/python bench/images.py [--size-mib 1024] [--rounds 3] [--dir DIR]`.
It starts one server on a free 127.0.0.1 port with a temporary data dir (under DIR, default
the system temp dir), writes a file of incompressible bytes in the same directory (so on the
same disk), then each round: `cp` of that file (and `cp` followed by an fsync of the copy,
since the server fsyncs before it answers), `PUT /v2/images/{id}/file` streamed from the file
by http.client with a Content-Length, and `GET /v2/images/{id}/file` streamed to a file.
Meanwhile it samples the server's VmRSS every 0.1 s (and VmHWM, reset before each phase) and
reads its CPU time. Prints a table and the command; stops the server with SIGINT and removes
everything it made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cloudproc import CloudProcess
from procstat import HOST, REPO, cpu_seconds, git_revision, machine_cpu, machine_summary

# The picocloud of this interpreter: describe_machine says where it imports picocloud from.
PICOCLOUD = Path(sys.executable).parent / "picocloud"
MiB = 1 << 20
CHUNK = MiB  # client read/write size, the same as the server's


# -- /proc readings --------------------------------------------------------------------------


def status_bytes(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field_name)


class Watch:
    """What one phase costs: wall time, the server's peak RSS (sampled every 0.1 s, and VmHWM
    reset at the start with clear_refs 5, which catches peaks between samples), the server's
    and this process's CPU, and the rest of the machine's CPU (other tenants)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss_before = self.rss_peak = self.hwm = 0
        self.wall = self.server_cpu = self.client_cpu = self.other_cpu = self.steal = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.rss_peak = max(self.rss_peak, status_bytes(self.pid, "VmRSS"))
            except OSError:
                return

    def __enter__(self) -> Watch:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self._hwm_reset = True
        except OSError:  # not ours to reset: the sampled peak alone
            self._hwm_reset = False
        self.rss_before = self.rss_peak = status_bytes(self.pid, "VmRSS")
        self._cpu0 = cpu_seconds(self.pid)
        self._client0 = time.process_time()
        self._machine0 = machine_cpu()
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        busy1, steal1 = machine_cpu()
        self.server_cpu = cpu_seconds(self.pid) - self._cpu0
        self.client_cpu = time.process_time() - self._client0
        self.other_cpu = max(0.0, busy1 - self._machine0[0] - self.server_cpu - self.client_cpu)
        self.steal = steal1 - self._machine0[1]
        self.rss_peak = max(self.rss_peak, status_bytes(self.pid, "VmRSS"))
        if self._hwm_reset:
            self.hwm = status_bytes(self.pid, "VmHWM")

    @property
    def peak(self) -> int:
        return max(self.rss_peak, self.hwm)


# -- the phases ------------------------------------------------------------------------------


def write_source(path: Path, size: int) -> str:
    """`size` bytes no compressor or deduplicator can shrink: one random MiB rotated by a
    different offset in each MiB. Returns the md5."""
    block = os.urandom(MiB)
    md5 = hashlib.md5(usedforsecurity=False)
    with path.open("wb") as fh:
        for i in range(size // MiB):
            k = (i * 4099) % MiB
            chunk = block[k:] + block[:k]
            fh.write(chunk)
            md5.update(chunk)
    return md5.hexdigest()


def file_md5(path: Path) -> str:
    md5 = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(4 * MiB):
            md5.update(chunk)
    return md5.hexdigest()


def hash_seconds(path: Path) -> float:
    """CPU seconds this machine needs for md5 + sha512 of the file (what the server computes
    while receiving), read from the page cache."""
    md5, sha512 = hashlib.md5(usedforsecurity=False), hashlib.sha512()
    t0 = time.thread_time()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            md5.update(chunk)
            sha512.update(chunk)
    return time.thread_time() - t0


@dataclass
class Round:
    cp: float = 0.0
    cp_fsync: float = 0.0  # cp, then fsync of the copy
    upload: Watch | None = None
    download: Watch | None = None


def copy_phase(source: Path, dest: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    subprocess.run(["cp", str(source), str(dest)], check=True)
    cp = time.perf_counter() - t0
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return cp, time.perf_counter() - t0


def upload_phase(server: CloudProcess, token: str, image_id: str, source: Path) -> Watch:
    size = source.stat().st_size
    conn = server.connection(blocksize=CHUNK)
    try:
        with Watch(server.pid) as watch, source.open("rb") as fh:
            conn.request("PUT", f"/image/v2/images/{image_id}/file", body=fh, headers={
                "X-Auth-Token": token, "Content-Type": "application/octet-stream",
                "Content-Length": str(size)})
            resp = conn.getresponse()
            body = resp.read()
    finally:
        conn.close()
    if resp.status != 204:
        raise RuntimeError(f"upload: {resp.status} {body[:300]!r}")
    return watch


def download_phase(
    server: CloudProcess, token: str, image_id: str, dest: Path
) -> tuple[Watch, str]:
    conn = server.connection(blocksize=CHUNK)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        with Watch(server.pid) as watch, dest.open("wb") as out:
            conn.request("GET", f"/image/v2/images/{image_id}/file",
                         headers={"X-Auth-Token": token})
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"download: {resp.status} {resp.read()[:300]!r}")
            while n := resp.readinto(buf):
                out.write(view[:n])
    finally:
        conn.close()
    return watch, resp.getheader("Content-MD5") or ""


def run_round(server: CloudProcess, token: str, source: Path, md5: str) -> Round:
    rnd = Round()
    copy, back = source.with_name("cp-copy.raw"), source.with_name("downloaded.raw")
    try:
        rnd.cp, rnd.cp_fsync = copy_phase(source, copy)
        copy.unlink()
        status, _, body = server.request("POST", "/image/v2/images", token, body={
            "name": "bench", "disk_format": "raw", "container_format": "bare"})
        if status != 201:
            raise RuntimeError(f"image create: {status} {body[:300]!r}")
        image_id = json.loads(body)["id"]
        rnd.upload = upload_phase(server, token, image_id, source)
        status, _, body = server.request("GET", f"/image/v2/images/{image_id}", token)
        image = json.loads(body)
        if (image["status"], image["size"], image["checksum"]) != (
                "active", source.stat().st_size, md5):
            raise RuntimeError(f"uploaded image is wrong: {image}")
        rnd.download, content_md5 = download_phase(server, token, image_id, back)
        if content_md5 != md5 or file_md5(back) != md5:  # checked outside the timed phase
            raise RuntimeError("downloaded bytes differ from the uploaded ones")
        server.request("DELETE", f"/image/v2/images/{image_id}", token)
    finally:
        copy.unlink(missing_ok=True)
        back.unlink(missing_ok=True)
    return rnd


# -- report ----------------------------------------------------------------------------------


@dataclass
class Result:
    size: int
    hash_cpu: float
    idle_rss: int
    rounds: list[Round] = field(default_factory=list)
    exit_code: int | None = None


def describe_machine(path: Path) -> str:
    df = subprocess.run(["df", "--output=source,fstype", str(path)], capture_output=True,
                        text=True, check=False).stdout.splitlines()
    disk = " ".join(df[1].split()) if len(df) > 1 else "?"
    # The server's interpreter may import picocloud from elsewhere (PYTHONPATH): say where.
    origin = subprocess.run([sys.executable, "-c", "import picocloud; print(picocloud.__file__)"],
                            capture_output=True, text=True, check=False).stdout.strip()
    source = Path(origin).parent.parent if origin else Path("?")
    where = f"git {git_revision()}" if source == REPO / "src" else f"from {source}"
    return f"{machine_summary()}, filesystem {disk}, picocloud {where}"


def report(result: Result, command: str, machine: str) -> None:
    mib = result.size / MiB

    def rate(seconds: float) -> str:
        return f"{mib / seconds:8.0f}"

    print(f"command: {command}")
    print(f"machine: {machine}")
    print(f"file: {mib:.0f} MiB of incompressible bytes, on the same filesystem as the data "
          "dir; page cache warm (nothing is dropped)")
    print(f"md5 + sha512 of the file in one Python thread here: {result.hash_cpu:.2f} s CPU "
          f"= {mib / result.hash_cpu:.0f} MiB/s (the server computes both while receiving)")
    print()
    print(f"{'round':>5} {'phase':<10} {'seconds':>8} {'MiB/s':>8} {'÷cp':>6} {'÷cp+fsync':>9}"
          f" {'RSS before':>10} {'peak':>7} {'growth':>7} {'srv CPU':>8} {'cli CPU':>8}"
          f" {'other':>6} {'steal':>6}")
    for i, r in enumerate(result.rounds, 1):
        print(f"{i:>5} {'cp':<10} {r.cp:>8.2f} {rate(r.cp)}")
        print(f"{i:>5} {'cp+fsync':<10} {r.cp_fsync:>8.2f} {rate(r.cp_fsync)}")
        for name, w in (("upload", r.upload), ("download", r.download)):
            assert w is not None
            print(f"{i:>5} {name:<10} {w.wall:>8.2f} {rate(w.wall)} {r.cp / w.wall:>6.2f}"
                  f" {r.cp_fsync / w.wall:>9.2f} {w.rss_before / MiB:>6.1f} MiB"
                  f" {w.peak / MiB:>7.1f} {(w.peak - w.rss_before) / MiB:>7.1f}"
                  f" {w.server_cpu:>8.2f} {w.client_cpu:>8.2f} {w.other_cpu:>6.2f}"
                  f" {w.steal:>6.2f}")
    print("÷cp: cp's time over this phase's (1.00 = as fast as cp of the same file). "
          "RSS in MiB (peak: max of 0.1 s samples and VmHWM).\nCPU columns: seconds during the "
          "phase of the server, this client, and the rest of the machine (other tenants).")
    print()
    ups = [r.upload for r in result.rounds if r.upload]
    downs = [r.download for r in result.rounds if r.download]

    def med(values: list[float]) -> float:
        return statistics.median(values)

    cp = med([r.cp for r in result.rounds])
    cp_fsync = med([r.cp_fsync for r in result.rounds])
    up = med([w.wall for w in ups])
    down = med([w.wall for w in downs])
    print(f"medians of {len(result.rounds)} rounds (ratios of the medians): "
          f"cp {mib / cp:.0f} MiB/s, cp+fsync {mib / cp_fsync:.0f} MiB/s, "
          f"upload {mib / up:.0f} MiB/s ({cp / up:.2f} of cp, {cp_fsync / up:.2f} of cp+fsync), "
          f"download {mib / down:.0f} MiB/s ({cp / down:.2f} of cp)")
    print(f"server RSS: idle {result.idle_rss / MiB:.1f} MiB; peak during upload "
          f"{max(w.peak for w in ups) / MiB:.1f} MiB (growth at most "
          f"{max(w.peak - w.rss_before for w in ups) / MiB:.1f} MiB), during download "
          f"{max(w.peak for w in downs) / MiB:.1f} MiB (growth at most "
          f"{max(w.peak - w.rss_before for w in downs) / MiB:.1f} MiB)")
    print(f"server CPU per GiB: upload {med([w.server_cpu for w in ups]) / mib * 1024:.2f} s, "
          f"download {med([w.server_cpu for w in downs]) / mib * 1024:.2f} s; "
          f"server exit after SIGINT: {result.exit_code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size in MiB (1024)")
    parser.add_argument("--rounds", type=int, default=3, help="cp/upload/download rounds (3)")
    parser.add_argument("--dir", default=None,
                        help="where the temp dir goes: the disk measured (system temp dir)")
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.rounds < 1:
        parser.error("need --size-mib >= 1 and --rounds >= 1")
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    # Without the built-in tiny image, and none of this shell's PICOCLOUD_* settings.
    server = CloudProcess({"PICOCLOUD_IMAGE_BUILTIN_TINY": "0"},
                          prefix="picocloud-bench-images-", parent=args.dir, binary=PICOCLOUD,
                          inherit_settings=False)  # fmt: skip
    machine = describe_machine(server.tmp)
    result: Result | None = None
    try:
        print(f"starting picocloud up on {HOST}:{server.port} in {server.tmp}", file=sys.stderr)
        server.start(timeout=60)
        token = server.issue_token().id
        source = server.tmp / "source.raw"
        print(f"writing {args.size_mib} MiB to {source}", file=sys.stderr)
        md5 = write_source(source, args.size_mib * MiB)
        if source.stat().st_dev != server.data.stat().st_dev:
            raise RuntimeError("the file and the data dir are on different filesystems")
        result = Result(args.size_mib * MiB, hash_seconds(source),
                        status_bytes(server.pid, "VmRSS"))
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}: cp, upload, download", file=sys.stderr)
            result.rounds.append(run_round(server, token, source, md5))
    except KeyboardInterrupt:
        print("interrupted: server stopped, temp dir removed", file=sys.stderr)
        return 130
    except Exception:
        print(server.tail(), file=sys.stderr)
        raise
    finally:
        code = server.stop()
        if result is not None:
            result.exit_code = code
        server.remove()
    report(result, command, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
