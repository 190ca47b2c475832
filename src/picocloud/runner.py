"""The one way picocloud runs host commands: argument lists, logged with their exit status."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("picocloud.runner")


class CommandError(RuntimeError):
    def __init__(self, argv: Sequence[str], code: int, stderr: str) -> None:
        super().__init__(f"{argv[0]} exited with {code}: {stderr.strip()[-500:]}")
        self.argv = list(argv)
        self.code = code
        self.stderr = stderr


def run(argv: Sequence[str | Path], *, check: bool = True, timeout: float | None = 300,
        input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` (never through a shell); raise CommandError on failure when `check`."""
    args = [str(a) for a in argv]
    proc = subprocess.run(args, capture_output=True, timeout=timeout, input=input, check=False)
    log.debug("ran %s: exit %d", args, proc.returncode)
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc
