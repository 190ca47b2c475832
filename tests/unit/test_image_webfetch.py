"""Which URIs web-download may fetch (image_import_allowed_hosts, judged on resolved
addresses), and how image_stores is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from picocloud.image.stores import parse_stores
from picocloud.image.webfetch import HostPolicy, RefusedURI

DNS = {
    "mirror.example.com": ["203.0.113.7"],
    "cloud-images.ubuntu.com": ["185.125.190.37", "2620:2d:4000:1::17"],
    "rebind.example.com": ["93.184.216.34", "127.0.0.1"],  # one public answer, one not
    "internal.example.com": ["10.1.2.3"],
    "metadata.example.com": ["169.254.169.254"],
    "localhost": ["127.0.0.1", "::1"],
    "images.corp.example": ["192.168.5.5"],
}


def resolve(host: str, port: int) -> list[str]:
    if host in DNS:
        return DNS[host]
    if host[0].isdigit() or ":" in host:
        return [host]
    raise OSError(f"unknown host {host}")


def allowed(spec: str, uri: str) -> bool:
    try:
        HostPolicy(spec).check(uri, resolve)
    except RefusedURI:
        return False
    return True


@pytest.mark.parametrize("uri", [
    "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img",
    "http://8.8.8.8:8080/x.qcow2",
])
def test_public_allows_globally_routable_hosts(uri: str) -> None:
    assert allowed("public", uri)


@pytest.mark.parametrize("uri", [
    "http://127.0.0.1:8780/identity/v3", "http://localhost/", "http://[::1]/",
    "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data/",
    "http://metadata.example.com/", "http://10.0.0.1/", "http://192.168.1.1/",
    "http://172.16.0.1/", "http://100.64.0.1/", "http://[fe80::1]/", "http://[fd00::1]/",
    "http://0.0.0.0/", "http://224.0.0.1/", "http://rebind.example.com/",
    "http://internal.example.com/", "http://unknown.invalid/",
])
def test_public_refuses_everything_else(uri: str) -> None:
    assert not allowed("public", uri)


@pytest.mark.parametrize("uri", [
    "file:///etc/passwd", "ftp://8.8.8.8/x", "gopher://8.8.8.8/", "http:///x",
    "http://8.8.8.8:99999/", "//8.8.8.8/x", "",
])
def test_only_http_and_https_with_a_host(uri: str) -> None:
    assert not allowed("public", uri)


def test_named_hosts_domains_and_networks() -> None:
    spec = "mirror.example.com, *.corp.example, 10.0.0.0/8, 127.0.0.1"
    assert allowed(spec, "http://mirror.example.com/a")
    assert allowed(spec, "http://MIRROR.example.com./a")
    assert allowed(spec, "http://images.corp.example/a")  # a name entry trusts the name
    assert allowed(spec, "http://internal.example.com/a")  # 10.1.2.3 is in 10.0.0.0/8
    assert allowed(spec, "http://127.0.0.1:9000/a")
    assert not allowed(spec, "http://localhost/a")  # ::1 is not listed
    assert not allowed(spec, "https://cloud-images.ubuntu.com/")  # no `public`
    assert allowed(f"{spec},public", "https://cloud-images.ubuntu.com/")


def test_an_empty_setting_turns_web_download_off() -> None:
    assert not HostPolicy("").enabled and not HostPolicy(" , ").enabled
    with pytest.raises(RefusedURI, match="turned off"):
        HostPolicy("").check("https://cloud-images.ubuntu.com/", resolve)


def test_refusals_name_the_host_and_the_setting() -> None:
    with pytest.raises(RefusedURI) as exc:
        HostPolicy("public").check("http://169.254.169.254/latest", resolve)
    assert "169.254.169.254" in str(exc.value)
    assert "image_import_allowed_hosts" in str(exc.value)


def test_parse_stores(tmp_path: Path) -> None:
    assert parse_stores("", tmp_path) == [("local", tmp_path / "images")]
    assert parse_stores("local:images, fast:/srv/fast", tmp_path) == [
        ("local", tmp_path / "images"), ("fast", Path("/srv/fast"))]
    for bad in ("local", "a:/x,a:/y", "a:/x,b:/x", "bad id:/x", ":/x", "s:images/staging"):
        with pytest.raises(ValueError):
            parse_stores(bad, tmp_path)
