"""A loopback web server for tests that make picocloud fetch over HTTP (web-download, image
locations), and its pytest fixture `web`."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class Web:
    """`routes` maps a path to (status, headers, body or callable); `hits` counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes | Callable[[], bytes]]] = {}
        self.hits: list[tuple[str, str]] = []
        web = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, send_body: bool) -> None:
                web.hits.append((self.command, self.path))
                status, headers, body = web.routes.get(self.path, (404, {}, b"not here"))
                data = body() if callable(body) and send_body else body
                length = len(data) if isinstance(data, bytes) else 0
                self.send_response(status)
                for key, value in {"Content-Length": str(length), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                if send_body and isinstance(data, bytes):
                    with contextlib.suppress(ConnectionError):  # the reader stopped reading
                        self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer(send_body=True)

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def web() -> Iterator[Web]:
    server = Web()
    yield server
    server.server.shutdown()
    server.server.server_close()
