"""Pseudo-terminal endpoints for serial simulators.

:func:`open_pty` gives a simulator the master end of a fresh pty and the path of the
slave end, which a driver opens with pyserial exactly like ``/dev/ttyUSB0``. The
slave is put in raw mode (no CR/LF translation, no echo) and kept open by the
simulator so the master never sees a hang-up while the driver reopens the port.
Pseudo-terminals ignore the baud rate and parity: timing on a pty is not wire timing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import threading
import tty
from dataclasses import dataclass
from typing import Self


@dataclass
class PtyPair:
    """A master fd (simulator side) and the slave path (driver side)."""

    master: int
    slave: int
    path: str

    def close(self) -> None:
        """Close both ends (idempotent)."""
        for fd in (self.master, self.slave):
            if fd >= 0:
                with contextlib.suppress(OSError):  # closing twice is harmless here
                    os.close(fd)
        self.master = self.slave = -1


def open_pty() -> PtyPair:
    """Open a raw pseudo-terminal pair with a non-blocking master.

    Raises:
        OSError: no pseudo-terminal available.
    """
    master, slave = pty.openpty()
    tty.setraw(slave)
    flags = fcntl.fcntl(master, fcntl.F_GETFL)
    fcntl.fcntl(master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    return PtyPair(master, slave, os.ttyname(slave))


def write_all(fd: int, data: bytes) -> int:
    """Write what the pty takes without blocking; return bytes written (a meter's
    push output is lost when nobody reads, as on a real P1 port)."""
    done = 0
    while done < len(data):
        try:
            done += os.write(fd, data[done:])
        except BlockingIOError:
            break
    return done


class PtySimulator:
    """A simulated serial device answering on a pseudo-terminal from a thread of its own.

    Subclasses implement :meth:`_run`, which loops until ``self._stop`` is set, reading and
    writing ``self._pty.fd``. Use as a context manager; ``port`` is the path a driver opens.
    """

    thread_name = "pty-sim"

    def __init__(self) -> None:
        self._pty: PtyPair | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> str:
        """Slave path of the pty (what a driver opens)."""
        if self._pty is None:
            raise RuntimeError("simulator not started")
        return self._pty.path

    def start(self) -> Self:
        """Open the pty and start the device's thread."""
        self._pty = open_pty()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close the pty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pty is not None:
            self._pty.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        raise NotImplementedError
