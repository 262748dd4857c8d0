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
import tty
from dataclasses import dataclass


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
