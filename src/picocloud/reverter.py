"""Reverter: undo half-finished host changes.

    with Reverter() as r:
        make_bridge(); r.add(delete_bridge)
        start_dnsmasq(); r.add(stop_dnsmasq)
        r.success()          # keep everything; without it, the undos run newest first
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger("picocloud.reverter")


class Reverter:
    def __init__(self) -> None:
        self._undo: list[Callable[[], object]] = []
        self._done = False

    def add(self, undo: Callable[[], object]) -> None:
        self._undo.append(undo)

    def success(self) -> None:
        self._done = True

    def revert(self) -> None:
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception:  # keep undoing the rest; the first error is the one raised
                log.exception("revert step %r failed", undo)

    def __enter__(self) -> Reverter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._done:
            self.revert()
