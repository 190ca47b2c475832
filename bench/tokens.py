"""Token benchmark: password-token issue and token validation against a real `picocloud up`.

Run as `.venv/bin/python bench/tokens.py [--clients N] [--seconds S] [--rounds 12,4]`.
For each bcrypt cost it starts one server on a free 127.0.0.1 port with a temporary data dir,
measures its memory, drives it with N client processes (one keep-alive connection each, so
the client's GIL never caps the server), prints the figures, then stops it with SIGINT.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import shlex
import signal
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from cloudproc import TOKENS_PATH, CloudProcess, password_auth
from procstat import HOST, cpu_times, git_revision, machine_cpu, machine_summary

# -- a minimal HTTP/1.1 keep-alive client ----------------------------------------------------
# A raw socket and a buffered reader cost a few tens of microseconds a request, far below
# http.client or requests, so the client takes a small share of the two cores it shares.


class Connection:
    """One keep-alive connection to the server; `call` sends prebuilt request bytes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection((HOST, port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def call(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send one request; the status, the headers (lower-case names) and the body."""
        self.sock.sendall(request)
        status_line = self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line[9:12])
        headers: dict[str, str] = {}
        while True:
            line = self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise ConnectionError(f"response without Content-Length: {status_line!r}")
        return status, headers, self.reader.read(int(headers["content-length"]))

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def http_request(
    method: str, path: str, port: int, headers: dict[str, str] | None = None, body: Any = None
) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", "Accept: application/json"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


# -- client worker processes -----------------------------------------------------------------


@dataclass
class WorkerResult:
    started: float  # time.monotonic() is system-wide on Linux, so comparable across processes
    ended: float
    latencies: list[float]  # seconds, one per successful request
    errors: int
    error_sample: str
    cpu: float  # CPU seconds this client process used during the run


def client_worker(
    port: int, request: bytes, expect: int, seconds: float, barrier: Barrier,
    out: Queue[WorkerResult],
) -> None:
    """Send `request` back to back for `seconds` on one connection; report to `out`.

    Always reports, even when the server goes away, so the parent never waits for nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        conn = Connection(port)
        status, _, body = conn.call(request)  # warm-up and sanity check, not measured
        if status != expect:
            raise ConnectionError(f"warm-up got {status}, expected {expect}: {body[:300]!r}")
    except OSError as exc:
        barrier.abort()
        out.put(WorkerResult(0.0, 0.0, [], 1, f"warm-up: {exc}", 0.0))
        return
    latencies: list[float] = []
    errors = 0
    sample = ""
    try:
        barrier.wait(timeout=180)
    except threading.BrokenBarrierError:
        return  # another client failed its warm-up; the parent reports it
    cpu0 = time.process_time()
    started = time.monotonic()
    deadline = started + seconds
    clock = time.perf_counter
    while time.monotonic() < deadline:
        t0 = clock()
        try:
            status, _, body = conn.call(request)
        except (OSError, ValueError) as exc:
            errors += 1
            sample = sample or repr(exc)
            conn.close()
            try:
                conn = Connection(port)
            except OSError:
                break  # the server is gone; report what we have
            continue
        if status == expect:
            latencies.append(clock() - t0)
        else:
            errors += 1
            sample = sample or f"{status} {body[:200]!r}"
    ended = time.monotonic()
    cpu = time.process_time() - cpu0
    conn.close()
    out.put(WorkerResult(started, ended, latencies, errors, sample, cpu))


# -- /proc readings --------------------------------------------------------------------------


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM from /proc/PID/status and Pss from smaps_rollup, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


# -- one load phase --------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    requests: int
    errors: int
    error_sample: str
    wall: float
    latencies: list[float]
    server_cpu: float  # user + system
    server_sys: float
    client_cpu: float
    machine_busy: float
    steal: float

    @property
    def rate(self) -> float:
        return self.requests / self.wall

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def run_phase(
    name: str, server: CloudProcess, request: bytes, expect: int, clients: int, seconds: float
) -> Phase:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(clients + 1)
    out: Queue[WorkerResult] = ctx.Queue()
    workers: list[BaseProcess] = [
        ctx.Process(
            target=client_worker,
            args=(server.port, request, expect, seconds, barrier, out),
            daemon=True,
        )
        for _ in range(clients)
    ]
    for w in workers:
        w.start()
    try:
        return _measure(name, server, workers, barrier, out, clients, seconds)
    finally:
        for w in workers:
            w.join(10)
            if w.is_alive():
                w.terminate()
                w.join(5)


def _measure(
    name: str,
    server: CloudProcess,
    workers: list[BaseProcess],
    barrier: Barrier,
    out: Queue[WorkerResult],
    clients: int,
    seconds: float,
) -> Phase:
    try:
        barrier.wait(timeout=180)
    except threading.BrokenBarrierError:
        failed = [out.get(timeout=5) for _ in range(out.qsize() or 1)]
        samples = "; ".join(r.error_sample for r in failed)
        raise RuntimeError(f"{name}: clients failed to start: {samples}") from None
    user0, sys0 = cpu_times(server.pid)
    busy0, steal0 = machine_cpu()
    results: list[WorkerResult] = []
    give_up = time.monotonic() + seconds + 300  # a request may outlast the phase; not forever
    while len(results) < clients:
        try:
            results.append(out.get(timeout=1))
        except queue.Empty:
            if time.monotonic() > give_up or not any(w.is_alive() for w in workers):
                raise RuntimeError(f"{name}: clients stopped reporting") from None
    user1, sys1 = cpu_times(server.pid)
    busy1, steal1 = machine_cpu()
    started = min(r.started for r in results)
    ended = max(r.ended for r in results)
    latencies = [x for r in results for x in r.latencies]
    return Phase(
        name=name,
        requests=len(latencies),
        errors=sum(r.errors for r in results),
        error_sample=next((r.error_sample for r in results if r.error_sample), ""),
        wall=ended - started,
        latencies=latencies,
        server_cpu=user1 + sys1 - user0 - sys0,
        server_sys=sys1 - sys0,
        client_cpu=sum(r.cpu for r in results),
        machine_busy=busy1 - busy0,
        steal=steal1 - steal0,
    )


# -- one server, all phases ------------------------------------------------------------------


@dataclass
class Run:
    rounds: int
    hash_seconds: float
    idle: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    exit_code: int | None = None


def bcrypt_seconds(rounds: int) -> float:
    """Median CPU time of one bcrypt check at this cost (CPU, not wall: the host is shared)."""
    import bcrypt

    hashed = bcrypt.hashpw(b"benchmark", bcrypt.gensalt(rounds))
    samples = []
    for _ in range(3 if rounds >= 12 else 20):
        t0 = time.thread_time()
        bcrypt.checkpw(b"benchmark", hashed)
        samples.append(time.thread_time() - t0)
    return statistics.median(samples)


def run_server(rounds: int, clients: int, seconds: float) -> Run:
    run = Run(rounds=rounds, hash_seconds=bcrypt_seconds(rounds))
    server = CloudProcess({"PICOCLOUD_PASSWORD_HASH_ROUNDS": str(rounds)},
                          prefix="picocloud-bench-tokens-")  # fmt: skip
    print(f"cost {rounds}: starting picocloud up on {HOST}:{server.port} in {server.tmp}",
          file=sys.stderr, flush=True)
    try:
        server.start()
        port = server.port
        admin = server.issue_token().id
        subject = server.issue_token().id
        conn = Connection(port)
        validate = http_request(
            "GET", TOKENS_PATH, port, {"X-Auth-Token": admin, "X-Subject-Token": subject}
        )
        validate_nocatalog = http_request(
            "GET", TOKENS_PATH + "?nocatalog", port,
            {"X-Auth-Token": admin, "X-Subject-Token": subject},
        )
        for request in (validate, validate_nocatalog):
            status, _, body = conn.call(request)
            if status != 200 or "token" not in json.loads(body):
                raise RuntimeError(f"validation failed: {status} {body[:300]!r}")
        conn.close()
        time.sleep(2)
        run.idle = memory_mib(server.pid)
        issue = http_request("POST", TOKENS_PATH, port, body=password_auth(server.password))
        plan = [
            ("issue (password, project scope)", issue, 201),
            ("validate", validate, 200),
            ("validate ?nocatalog", validate_nocatalog, 200),
        ]
        for name, request, expect in plan:
            print(f"cost {rounds}: {name}, {clients} clients, {seconds:g} s",
                  file=sys.stderr, flush=True)
            run.phases.append(run_phase(name, server, request, expect, clients, seconds))
            if server.proc is not None and server.proc.poll() is not None:
                raise RuntimeError(f"picocloud up died during {name!r}")
        time.sleep(2)
        run.after = memory_mib(server.pid)
    except Exception:
        print(server.tail(), file=sys.stderr)
        raise
    finally:
        run.exit_code = server.stop()
        server.remove()
    return run


# -- report ----------------------------------------------------------------------------------


def describe_machine() -> str:
    return f"{machine_summary()}, picocloud git {git_revision()}"


def report(runs: list[Run], clients: int, command: str, machine: str) -> None:
    cores = os.cpu_count() or 1
    print(f"command: {command}")
    print(f"machine: {machine}")
    print(f"clients: {clients} processes, one keep-alive HTTP/1.1 connection each, "
          f"to {HOST} only")
    print()
    print(f"{'cost':>4}  {'phase':<32} {'n':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'err':>4}"
          f"  {'srv CPU':>7} {'sys':>4} {'cli CPU':>7} {'other':>6} {'steal':>6}"
          f"  {'srv ms/req':>10} {'cli ms/req':>10}")
    for run in runs:
        for p in run.phases:
            other = p.machine_busy - p.server_cpu - p.client_cpu
            n = max(p.requests, 1)
            print(f"{run.rounds:>4}  {p.name:<32} {p.requests:>6} {p.rate:>8.1f}"
                  f" {p.percentile(0.5):>8.1f} {p.percentile(0.99):>8.1f} {p.errors:>4}"
                  f"  {p.server_cpu / p.wall:>7.2f} {p.server_sys / max(p.server_cpu, 1e-9):>4.0%}"
                  f" {p.client_cpu / p.wall:>7.2f}"
                  f" {max(other, 0) / p.wall:>6.2f} {p.steal / p.wall:>6.2f}"
                  f"  {p.server_cpu / n * 1000:>10.2f} {p.client_cpu / n * 1000:>10.3f}")
            if p.error_sample:
                print(f"{'':>6}first error: {p.error_sample}")
    print(f"CPU columns: cores busy on average during the phase (of {cores}): the picocloud "
          "process (sys: its share in the kernel),\nthe client processes, the rest of the "
          "machine (other tenants), and hypervisor steal. ms/req: CPU time per request.")
    print()
    for run in runs:
        ceiling = cores / run.hash_seconds
        issue = next((p for p in run.phases if p.name.startswith("issue")), None)
        print(f"cost {run.rounds}: one bcrypt check = {run.hash_seconds * 1000:.1f} ms CPU, so "
              f"{ceiling:.1f} tokens/s at most on {cores} idle cores")
        if issue is not None and issue.requests:
            per_token = issue.server_cpu / issue.requests
            print(f"{'':>9}server CPU per token {per_token * 1000:.1f} ms: the hash is "
                  f"{run.hash_seconds / per_token:.0%} of it; measured {issue.rate:.1f}/s on "
                  f"the {issue.server_cpu / issue.wall:.2f} cores the server got")
    print()
    print(f"{'cost':>4}  {'idle RSS':>9} {'idle PSS':>9} {'after RSS':>10} {'peak RSS':>9}"
          f"  server exit (SIGINT)")
    for run in runs:
        print(f"{run.rounds:>4}  {run.idle.get('VmRSS', 0):>6.1f} MiB"
              f" {run.idle.get('Pss', 0):>5.1f} MiB {run.after.get('VmRSS', 0):>6.1f} MiB"
              f" {run.after.get('VmHWM', 0):>5.1f} MiB  {run.exit_code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections (8)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase (10)")
    parser.add_argument("--rounds", default="12",
                        help="bcrypt costs, comma-separated; one server each (12)")
    args = parser.parse_args(argv)
    rounds = [int(r) for r in str(args.rounds).split(",") if r.strip()]
    if args.clients < 1 or args.seconds <= 0 or not rounds:
        parser.error("need --clients >= 1, --seconds > 0 and at least one cost")
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    machine = describe_machine()  # before the runs: the code measured is the code at start
    try:
        runs = [run_server(r, args.clients, args.seconds) for r in rounds]
    except KeyboardInterrupt:
        print("interrupted: server stopped, temp dir removed", file=sys.stderr)
        return 130
    report(runs, args.clients, command, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
