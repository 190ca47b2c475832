"""Guest image benchmark: size of the `tiny` image and its boot time to the ready marker.

Run as `.venv/bin/python bench/guest_boot.py [--runs 5] [--cache-dir DIR]` (as root: the first
build uses a loop device). It builds (or reuses) the image, then for each run boots a fresh
copy-on-write overlay in QEMU with no NIC and measures, from QEMU's start: the serial ready
marker, QEMU's CPU time and RSS at that moment, and the time QMP `system_powerdown` takes to
end QEMU; then it boots the same overlay again (host keys exist, nothing is first-boot).
It uses TCG, and KVM too when this host really has it (`vmx`/`svm`, not kvm_pvm).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from picocloud.guest import cached_tiny

MARKER = re.compile(rb"picocloud-guest ready hostname=\S* ip=\S* metadata=\S*")
CLK_TCK = os.sysconf("SC_CLK_TCK")
BOOT_TIMEOUT = 180.0


@dataclass
class Boot:
    ready_s: float
    cpu_s: float
    rss_mib: float
    powerdown_s: float


def kvm_unusable_reason() -> str:
    """Why KVM cannot run the guest here ("" if it can): see shared/notes/host-facts.md."""
    if not os.path.exists("/dev/kvm"):
        return "no /dev/kvm"
    if os.path.exists("/sys/module/kvm_pvm"):
        return "/dev/kvm is kvm_pvm, which cannot run stock Debian kernels"
    flags = Path("/proc/cpuinfo").read_text()
    if not re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.M):
        return "the CPU has no vmx/svm"
    return ""


def _proc_cpu_rss(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return cpu, rss


def _qmp_powerdown(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        reader.readline()
        for command in ("qmp_capabilities", "system_powerdown"):
            sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
            while b'"return"' not in (line := reader.readline()):
                if not line or b'"error"' in line:
                    raise RuntimeError(f"QMP {command}: {line!r}")


def boot(overlay: Path, work: Path, accel: str, memory: int) -> Boot:
    log, qmp = work / "picocloud-serial.log", work / "picocloud-qmp.sock"
    log.unlink(missing_ok=True)
    argv = [
        "qemu-system-x86_64", "-name", "picocloud-bench-guest", "-accel", accel,
        "-m", str(memory), "-nographic", "-monitor", "none", "-serial", f"file:{log}",
        "-qmp", f"unix:{qmp},server,nowait", "-no-reboot", "-nic", "none",
        "-drive", f"file={overlay},if=virtio,format=qcow2",
    ]  # fmt: skip
    if accel == "kvm":
        argv += ["-cpu", "host"]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        while not (log.exists() and MARKER.search(log.read_bytes())):
            if proc.poll() is not None or time.monotonic() - start > BOOT_TIMEOUT:
                raise RuntimeError(f"no ready marker; serial log in {log}")
            time.sleep(0.05)
        ready = time.monotonic() - start
        cpu, rss = _proc_cpu_rss(proc.pid)
        down = time.monotonic()
        _qmp_powerdown(qmp)
        proc.wait(timeout=60)
        return Boot(ready, cpu, rss, time.monotonic() - down)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _summary(label: str, boots: list[Boot]) -> str:
    def spread(values: list[float]) -> str:
        return f"{min(values):6.2f} {statistics.median(values):6.2f} {max(values):6.2f}"

    return (
        f"{label:<24} {spread([b.ready_s for b in boots])}   {spread([b.cpu_s for b in boots])}"
        f"   {spread([b.rss_mib for b in boots])}   {spread([b.powerdown_s for b in boots])}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--memory", type=int, default=128, help="guest MiB")
    parser.add_argument("--cache-dir", type=Path)
    args = parser.parse_args()

    start = time.monotonic()
    image = cached_tiny(args.cache_dir)
    build_s = time.monotonic() - start
    info = json.loads(subprocess.run(
        ["qemu-img", "info", "--output", "json", image], capture_output=True, check=True
    ).stdout)  # fmt: skip
    print(f"image       {image}")
    size = image.stat().st_size
    print(f"size        {size} bytes qcow2 ({size / 2**20:.1f} MiB), "
          f"virtual {info['virtual-size'] // 2**20} MiB")  # fmt: skip
    print(f"build       {build_s:.1f} s (cached_tiny; a cached image is only a lookup)")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"host        {os.cpu_count()} CPUs, load average {load} at start")
    reason = kvm_unusable_reason()
    accels = ["tcg"] + ([] if reason else ["kvm"])
    if reason:
        print(f"kvm         not measured: {reason}")
    print(f"guest       {args.memory} MiB, 1 vCPU, no NIC, {args.runs} runs, from QEMU start")
    print()
    print(f"{'':<24} {'ready s (min med max)':<22}   {'QEMU CPU s':<20}   {'RSS MiB':<20}"
          f"   {'powerdown s':<20}")  # fmt: skip
    for accel in accels:
        first: list[Boot] = []
        again: list[Boot] = []
        for _ in range(args.runs):
            work = Path(tempfile.mkdtemp(prefix="picocloud-bench-guest-"))
            try:
                overlay = work / "picocloud-overlay.qcow2"
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                                "-b", image, overlay], check=True)  # fmt: skip
                first.append(boot(overlay, work, accel, args.memory))
                again.append(boot(overlay, work, accel, args.memory))
                overlay_kib = overlay.stat().st_size // 1024
            finally:
                shutil.rmtree(work, ignore_errors=True)
        print(_summary(f"{accel} first boot", first))
        print(_summary(f"{accel} second boot", again))
        print(f"{'':<24} overlay after two boots: {overlay_kib} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
