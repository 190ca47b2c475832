"""Which URIs picocloud may fetch image data from (web-download, image locations), and the
fetch itself.

The API server is a privileged network position (loopback services, the metadata address,
the host's LAN), so a user-supplied URI is checked before it is fetched: http or https only,
a host allowed by `image_import_allowed_hosts`, judged on the addresses the name resolves to.
The connection then goes to one of those checked addresses (a second DNS answer cannot
point it elsewhere), and every redirect is checked the same way.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SCHEMES = ("http", "https")
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
TIMEOUT = 60.0  # seconds for connecting and for each read
CHUNK = 1 << 20


class RefusedURI(ValueError):
    """A URI web-download will not fetch; the message names the host and the setting."""


class FetchFailed(RuntimeError):
    """The remote end did not deliver acceptable image data."""


@dataclass(frozen=True)
class Target:
    """A checked URI and the addresses it may be fetched from."""

    uri: str
    parts: SplitResult
    host: str
    port: int
    addresses: tuple[str, ...]


def _address(text: str) -> IPAddress:
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class HostPolicy:
    """Parsed `image_import_allowed_hosts`: `public` (globally routable addresses), host
    names, `.example.com` / `*.example.com` suffixes, IP addresses and CIDR networks."""

    def __init__(self, spec: str) -> None:
        self.public = False
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        self.networks: list[Network] = []
        for entry in (e.strip().lower() for e in spec.split(",")):
            if not entry:
                continue
            if entry == "public":
                self.public = True
            elif entry.startswith(("*.", ".")):
                self.suffixes.append("." + entry.lstrip("*."))
            else:
                try:
                    self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                except ValueError:
                    self.names.add(entry.rstrip("."))

    @property
    def enabled(self) -> bool:
        return bool(self.public or self.names or self.suffixes or self.networks)

    def _name_allowed(self, host: str) -> bool:
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def _address_allowed(self, ip: IPAddress) -> bool:
        if any(ip in net for net in self.networks):
            return True
        return self.public and ip.is_global and not ip.is_multicast

    def check(self, uri: object, resolve: Callable[[str, int], list[str]] | None = None) -> Target:
        """The URI with the addresses to connect to, or RefusedURI saying why not."""
        if not isinstance(uri, str) or not uri:
            raise RefusedURI("An http or https URI is needed.")
        parts = urlsplit(uri)
        if parts.scheme.lower() not in SCHEMES:
            raise RefusedURI(f"URI {uri!r} does not pass filtering: only http and https URIs "
                             "are accepted.")
        host = (parts.hostname or "").rstrip(".")
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            raise RefusedURI(f"URI {uri!r} has an invalid port.") from None
        if not host:
            raise RefusedURI(f"URI {uri!r} names no host.")
        if not self.enabled:
            raise RefusedURI("Fetching image data from URIs is turned off on this cloud "
                             "(image_import_allowed_hosts is empty).")
        try:
            addresses = (resolve or _resolve)(host, port)
        except OSError as exc:
            raise RefusedURI(f"Cannot resolve host {host!r} of URI {uri!r}: "
                             f"{exc.strerror or exc}") from None
        if not self._name_allowed(host):
            for text in addresses:
                if not self._address_allowed(_address(text)):
                    raise RefusedURI(
                        f"URI {uri!r} does not pass filtering: host {host!r} ({text}) is not "
                        "allowed by this cloud's image_import_allowed_hosts.")
        return Target(uri, parts, host, port, tuple(addresses))


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not found:
        raise OSError(f"no address for {host}")
    return found


def _connection(target: Target) -> http.client.HTTPConnection:
    """A connection to the checked addresses that still speaks to (and verifies) the host."""
    conn: http.client.HTTPConnection
    if target.parts.scheme.lower() == "https":
        conn = http.client.HTTPSConnection(target.host, target.port, timeout=TIMEOUT,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=TIMEOUT)

    def connect(_address: Any, timeout: Any = TIMEOUT, source: Any = None) -> socket.socket:
        error: OSError | None = None
        for ip in target.addresses:
            try:
                return socket.create_connection((ip, target.port), timeout, source)
            except OSError as exc:
                error = exc
        raise error or OSError("no address to connect to")

    conn._create_connection = connect  # type: ignore[attr-defined]
    return conn


@contextlib.contextmanager
def _open(uri: str, policy: HostPolicy, method: str = "GET") -> Iterator[tuple[str, Any]]:
    """The 200 response to `method uri`, following redirects only to URIs the policy allows;
    yields the final URI and the response, and closes the connection afterwards."""
    for _ in range(MAX_REDIRECTS + 1):
        target = policy.check(uri)
        conn = _connection(target)
        try:
            path = target.parts.path or "/"
            if target.parts.query:
                path += "?" + target.parts.query
            conn.request(method, path, headers={"User-Agent": "picocloud-image",
                                                "Accept": "*/*"})
            response = conn.getresponse()
            if response.status in REDIRECTS and response.getheader("Location"):
                uri = urljoin(uri, response.getheader("Location", ""))
                continue
            if response.status != 200:
                raise FetchFailed(f"{target.uri} answered {response.status} {response.reason}")
            yield target.uri, response
            return
        except (OSError, http.client.HTTPException) as exc:
            raise FetchFailed(f"fetching {target.uri} failed: {exc}") from None
        finally:
            conn.close()
    raise FetchFailed(f"{uri} redirects more than {MAX_REDIRECTS} times")


def fetch(uri: str, policy: HostPolicy, write: Callable[[bytes], None], budget: int) -> None:
    """GET `uri` into `write` in 1 MiB chunks, at most `budget` bytes, following redirects
    only to URIs the policy allows."""
    with _open(uri, policy) as (final, response):
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > budget:
            raise FetchFailed(f"{final} is {length} bytes, more than the size cap or the "
                              "project's remaining image quota")
        received = 0
        while chunk := response.read(CHUNK):
            received += len(chunk)
            if received > budget:
                raise FetchFailed(f"{final} is larger than the size cap or the project's "
                                  "remaining image quota")
            write(chunk)


def stream(uri: str, policy: HostPolicy) -> Iterator[bytes]:
    """The body of `uri` in 1 MiB chunks (a generator: nothing is fetched until iterated)."""
    with _open(uri, policy) as (_final, response):
        while chunk := response.read(CHUNK):
            yield chunk


def content_length(uri: str, policy: HostPolicy) -> int | None:
    """The size `uri` announces to a HEAD request (None when it does not say)."""
    with _open(uri, policy, method="HEAD") as (_final, response):
        length = response.getheader("Content-Length")
        return int(length) if length and length.isdigit() else None
