"""A linked pair of pseudo-terminals (a null-modem cable in software), made by socat.

``with PtyPair(tmpdir) as (a, b):`` gives two device paths; bytes written to one
come out of the other. Pseudo-terminals ignore baud rate and show no RTU gaps, so
they test framing and logic, never wire timing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path


class PtyPair:
    """Start ``socat pty,raw,echo=0 pty,raw,echo=0`` with stable link names."""

    def __init__(self, directory: str | os.PathLike[str], name: str = "tty") -> None:
        self.a = str(Path(directory) / f"{name}-a")
        self.b = str(Path(directory) / f"{name}-b")
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> tuple[str, str]:
        socat = shutil.which("socat")
        if socat is None:
            raise RuntimeError("socat is not installed (tests/run.sh installs it)")
        self._proc = subprocess.Popen(
            [socat, f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.__exit__()
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.01)
        return self.a, self.b

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
            self._proc = None
