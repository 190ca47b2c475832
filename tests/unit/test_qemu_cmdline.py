"""QEMU's command line for a guest: the accelerator choice, the sandbox, the disks and NICs, and
that nothing a user typed reaches it. Also the host-side pieces it relies on: the base-image
cache, the console log's cap and the fake driver."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from picocloud.compute.virt.base import ConfigDrive, GuestSpec, Nic, PowerState
from picocloud.compute.virt.errors import GuestNotFound, InvalidGuestState
from picocloud.compute.virt.fake import FakeDriver, empty_qcow2
from picocloud.compute.virt.imagecache import ImageCache, ImageChecksumMismatch
from picocloud.compute.virt.qemu.cmdline import build_argv, detect_accel, qemu_opt
from picocloud.compute.virt.qemu.layout import GuestFiles, spec_from_json, spec_to_json
from picocloud.compute.virt.qemu.supervisor import CONSOLE_LOG_MAX, Supervisor, read_console

UUID = "6f1c0b9e-3d2a-4c1b-9e8f-0a1b2c3d4e5f"


def _spec(**changes: object) -> GuestSpec:
    fields: dict[str, object] = {
        "uuid": UUID,
        "name": "lab-01; rm -rf / $(halt-now) ,id=evil",
        "vcpus": 2,
        "memory_mb": 256,
        "root_gb": 1,
        "base_image": Path("/var/lib/picocloud/base/0123456789abcdef0123456789abcdef"),
        "base_format": "qcow2",
    }
    fields.update(changes)
    return GuestSpec(**fields)  # type: ignore[arg-type]


def _files(tmp_path: Path) -> GuestFiles:
    return GuestFiles(tmp_path / UUID)


def _option(argv: list[str], flag: str) -> list[str]:
    return [b for a, b in itertools.pairwise(argv) if a == flag]


def test_tcg_caps_the_translation_cache_and_uses_cpu_max(tmp_path: Path) -> None:
    argv = build_argv(_spec(), _files(tmp_path), "tcg", config_drive=False)
    assert argv[0] == "qemu-system-x86_64"
    assert _option(argv, "-accel") == ["tcg,tb-size=32"]
    assert _option(argv, "-cpu") == ["max"]
    assert "kvm:tcg" not in " ".join(argv)
    assert _option(argv, "-m") == ["256"] and _option(argv, "-smp") == ["2"]


def test_kvm_uses_the_host_cpu(tmp_path: Path) -> None:
    argv = build_argv(_spec(), _files(tmp_path), "kvm", config_drive=False)
    assert _option(argv, "-accel") == ["kvm"]
    assert _option(argv, "-cpu") == ["host"]


def test_identity_sandbox_and_control_sockets(tmp_path: Path) -> None:
    files = _files(tmp_path)
    argv = build_argv(_spec(), files, "tcg", config_drive=False)
    assert _option(argv, "-name") == [f"guest=picocloud-{UUID},debug-threads=on"]
    assert _option(argv, "-uuid") == [UUID]
    assert _option(argv, "-sandbox") == [
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
    ]
    assert {"-nodefaults", "-no-user-config", "-S"} <= set(argv)
    assert "-daemonize" not in argv  # the supervisor detaches; the sandbox forbids QEMU's fork
    assert _option(argv, "-display") == ["none"]
    assert _option(argv, "-pidfile") == [str(files.qemu_pid)]
    assert f"socket,id=qmp,path={files.qmp},server=on,wait=off" in argv
    assert f"socket,id=serial0,path={files.console_sock},reconnect=1" in argv
    assert "-incoming" not in argv
    resume = build_argv(_spec(), files, "tcg", config_drive=False, incoming=True)
    assert _option(resume, "-incoming") == ["defer"]


def test_no_user_data_on_the_command_line(tmp_path: Path) -> None:
    drive = ConfigDrive(
        meta_data={"hostname": "secret-host", "meta": {"password": "hunter2"}},
        user_data=b"#!/bin/sh\necho top-secret\n",
    )
    spec = _spec(config_drive=drive, extra_specs={"quota:evil": "x,file=/etc/shadow"})
    argv = build_argv(spec, _files(tmp_path), "tcg", config_drive=True)
    joined = "\0".join(argv)
    for secret in ("lab-01", "rm -rf", "halt-now", "evil", "secret-host", "hunter2", "top-secret",
                   "/etc/shadow"):  # fmt: skip
        assert secret not in joined


def test_without_nics_there_is_no_network(tmp_path: Path) -> None:
    argv = build_argv(_spec(), _files(tmp_path), "tcg", config_drive=False)
    assert _option(argv, "-nic") == ["none"]
    assert "-netdev" not in argv
    assert argv[0] != "ip"


def test_nics_are_taps_with_their_mac_and_run_in_their_namespace(tmp_path: Path) -> None:
    nics = (Nic(mac="fa:16:3e:00:00:01", tap="tap6f1c0b9e-3d", netns="picocloud-net1"),
            Nic(mac="fa:16:3e:00:00:02", tap="tap6f1c0b9e-3e", netns="picocloud-net1"))  # fmt: skip
    argv = build_argv(_spec(nics=nics), _files(tmp_path), "tcg", config_drive=False)
    assert argv[:4] == ["ip", "netns", "exec", "picocloud-net1"]
    assert "-nic" not in argv
    assert _option(argv, "-netdev") == [
        "tap,id=net0,ifname=tap6f1c0b9e-3d,script=no,downscript=no",
        "tap,id=net1,ifname=tap6f1c0b9e-3e,script=no,downscript=no",
    ]
    assert "virtio-net-pci,netdev=net0,mac=fa:16:3e:00:00:01" in argv


@pytest.mark.parametrize(
    "nic",
    [
        Nic(mac="fa:16:3e:00:00:01,id=x", tap="tap0"),
        Nic(mac="fa:16:3e:00:00:01", tap="tap0,script=/bin/sh"),
        Nic(mac="fa:16:3e:00:00:01", tap="a-name-that-is-too-long"),
        Nic(mac="fa:16:3e:00:00:01", tap="tap0", netns="../../etc"),
    ],
)
def test_malformed_nic_names_are_refused(tmp_path: Path, nic: Nic) -> None:
    with pytest.raises(ValueError):
        build_argv(_spec(nics=(nic,)), _files(tmp_path), "tcg", config_drive=False)


def test_nics_in_two_namespaces_are_refused(tmp_path: Path) -> None:
    nics = (Nic(mac="fa:16:3e:00:00:01", tap="tap1", netns="a"),
            Nic(mac="fa:16:3e:00:00:02", tap="tap2", netns="b"))  # fmt: skip
    with pytest.raises(ValueError, match="same network namespace"):
        build_argv(_spec(nics=nics), _files(tmp_path), "tcg", config_drive=False)


def test_a_uuid_that_is_not_canonical_is_refused(tmp_path: Path) -> None:
    for bad in ("../../etc", UUID.upper(), UUID + ",x"):
        with pytest.raises(ValueError):
            build_argv(_spec(uuid=bad), GuestFiles(tmp_path / bad), "tcg", config_drive=False)


def test_disks(tmp_path: Path) -> None:
    files = _files(tmp_path)
    argv = build_argv(_spec(), files, "tcg", config_drive=False)
    assert _option(argv, "-drive") == [
        f"file={files.disk},format=qcow2,if=none,id=drive-root,discard=unmap"
    ]
    assert "virtio-blk-pci,bootindex=0,drive=drive-root" in argv

    spec = _spec(ephemeral_gb=2, swap_mb=512)
    argv = build_argv(spec, files, "tcg", config_drive=True)
    drives = _option(argv, "-drive")
    assert [d.split("id=")[1].split(",")[0] for d in drives] == [
        "drive-root", "drive-eph0", "drive-swap", "drive-config",
    ]  # fmt: skip
    assert f"file={files.ephemeral},format=qcow2" in drives[1]
    assert f"file={files.swap},format=qcow2" in drives[2]
    assert drives[3] == (
        f"file={files.config_iso},format=raw,if=none,id=drive-config,media=cdrom,readonly=on"
    )
    assert "ide-cd,drive=drive-config" in argv


def test_commas_in_our_paths_are_escaped(tmp_path: Path) -> None:
    files = GuestFiles(tmp_path / "state,dir" / UUID)
    argv = build_argv(_spec(), files, "tcg", config_drive=False)
    assert f"file={qemu_opt(files.disk)},format=qcow2" in _option(argv, "-drive")[0]
    assert "state,,dir" in _option(argv, "-drive")[0]


def _host(tmp_path: Path, flags: str, pvm: bool, kvm: bool = True) -> dict[str, Path]:
    tmp_path.mkdir()
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n\n")
    pvm_dir = tmp_path / "kvm_pvm"
    if pvm:
        pvm_dir.mkdir()
    device = tmp_path / "kvm"
    if kvm:
        device.write_text("")
    return {"cpuinfo": cpuinfo, "pvm_module": pvm_dir, "kvm_device": device}


def test_kvm_only_with_hardware_virtualization_and_without_pvm(tmp_path: Path) -> None:
    assert detect_accel(**_host(tmp_path / "a", "vmx", pvm=False)) == "kvm"
    assert detect_accel(**_host(tmp_path / "b", "svm", pvm=False)) == "kvm"
    assert detect_accel(**_host(tmp_path / "c", "vmx", pvm=True)) == "tcg"  # kvm_pvm: hangs
    assert detect_accel(**_host(tmp_path / "d", "", pvm=False)) == "tcg"
    assert detect_accel(**_host(tmp_path / "e", "vmx", pvm=False, kvm=False)) == "tcg"


def test_stored_spec_round_trips_without_the_config_drive() -> None:
    spec = _spec(nics=(Nic(mac="fa:16:3e:00:00:01", tap="tap1"),), ephemeral_gb=1,
                 config_drive=ConfigDrive(meta_data={}, user_data=b"secret"))  # fmt: skip
    again = spec_from_json(spec_to_json(spec))
    assert again.config_drive is None
    assert again == GuestSpec(**{**spec.__dict__, "config_drive": None})


# --- the base-image cache --------------------------------------------------------------


def test_image_cache_fetches_once_verifies_and_shares(tmp_path: Path) -> None:
    data = b"pretend this is a qcow2" * 1000
    checksum = hashlib.md5(data).hexdigest()
    cache = ImageCache(tmp_path / "base")
    fetches = []

    def fetch(dest: Path) -> None:
        fetches.append(dest)
        dest.write_bytes(data)

    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(cache.ensure(checksum, fetch)))
               for _ in range(8)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fetches) == 1
    assert set(paths) == {tmp_path / "base" / checksum}
    assert paths[0].read_bytes() == data
    assert paths[0].stat().st_mode & 0o777 == 0o444
    assert cache.ensure(checksum.upper(), fetch) == paths[0] and len(fetches) == 1


def test_image_cache_refuses_data_with_another_checksum(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "base")
    with pytest.raises(ImageChecksumMismatch):
        cache.ensure("0" * 32, lambda dest: dest.write_bytes(b"something else"))
    assert list((tmp_path / "base").glob("0*")) == []  # nothing half-written is left
    with pytest.raises(ValueError):
        cache.path("../../etc/passwd")


def test_image_cache_removes_only_unused_images(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "base")
    sums = [cache.ensure(hashlib.md5(d).hexdigest(), lambda p, d=d: p.write_bytes(d)).name
            for d in (b"one", b"two")]  # fmt: skip
    assert cache.remove_unused([sums[0]]) == [sums[1]]
    assert cache.cached() == {sums[0]}


# --- the fake driver ---------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")
def test_fake_snapshot_is_a_valid_standalone_qcow2(tmp_path: Path) -> None:
    image = tmp_path / "snap.qcow2"
    image.write_bytes(empty_qcow2(3 << 30))
    check = subprocess.run(["qemu-img", "check", image], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    info = subprocess.run(["qemu-img", "info", image], capture_output=True, text=True).stdout
    assert "virtual size: 3 GiB" in info and "backing file" not in info


def test_fake_driver_follows_the_power_state_contract(tmp_path: Path) -> None:
    fake = FakeDriver(tmp_path, tmp_path)
    spec = _spec(config_drive=ConfigDrive(meta_data={"hostname": "pico-test.novalocal"}))
    fake.spawn(spec)
    assert "hostname=pico-test ip=none metadata=configdrive" in fake.console_log(UUID, 1)
    fake.pause(UUID)
    assert fake.state(UUID) == PowerState.PAUSED
    fake.power_off(UUID)
    assert fake.state(UUID) == PowerState.SHUTDOWN
    with pytest.raises(InvalidGuestState):
        fake.pause(UUID)
    fake.power_on(UUID)
    fake.suspend(UUID)
    assert fake.guests() == {UUID: PowerState.SUSPENDED}
    fake.power_on(UUID)  # resumes
    assert fake.state(UUID) == PowerState.RUNNING
    fake.destroy(UUID)
    fake.destroy(UUID)
    with pytest.raises(GuestNotFound):
        fake.state(UUID)


# --- the console log ---------------------------------------------------------------------


def test_console_log_is_capped_and_keeps_the_newest_output(tmp_path: Path) -> None:
    keeper = Supervisor(tmp_path, None)
    keeper.log_fd = os.open(tmp_path / "console.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    line = b"x" * 99 + b"\n"
    for i in range(3 * CONSOLE_LOG_MAX // len(line)):
        keeper.write_console(line if i % 1000 else f"{i:099d}\n".encode())
    keeper.write_console(b"the last words\n")
    os.close(keeper.log_fd)
    keeper.listener.close()
    sizes = [(tmp_path / n).stat().st_size for n in ("console.log.0", "console.log")]
    assert all(size <= CONSOLE_LOG_MAX for size in sizes)
    kept = read_console(tmp_path)
    assert len(kept) >= CONSOLE_LOG_MAX and kept.endswith(b"the last words\n")
    assert kept.startswith(b"x") or kept[:1].isdigit()  # whole chunks, oldest dropped
