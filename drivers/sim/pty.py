"""A linked pair of pseudo-terminals (a null-modem cable in software), in pure Python.

``with PtyPair(tmpdir) as (a, b):`` gives two device paths; bytes written to one
come out of the other. It is two ``pty.openpty()`` pairs whose master ends a thread
copies into each other, so it needs no system package (no socat). Both slave ends
are raw (no echo, no CR/LF translation) and kept open by the pair, so a driver may
close and reopen its end. Pseudo-terminals ignore baud rate and show no RTU gaps, so
they test framing and logic, never wire timing.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from pathlib import Path

from drivers.sim.serialpty import PtyPair as _Pty
from drivers.sim.serialpty import open_pty

_CHUNK = 4096


class PtyPair:
    """Two raw pseudo-terminals whose traffic is copied both ways, with stable link names.

    ``directory/NAME-a`` and ``directory/NAME-b`` are symbolic links to the two slave
    devices (``/dev/pts/N``); they are removed on exit.
    """

    def __init__(self, directory: str | os.PathLike[str], name: str = "tty") -> None:
        self.a = str(Path(directory) / f"{name}-a")
        self.b = str(Path(directory) / f"{name}-b")
        self._ptys: list[_Pty] = []
        self._stop = threading.Event()
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None

    def __enter__(self) -> tuple[str, str]:
        """Open both pseudo-terminals and start copying.

        Raises:
            OSError: no pseudo-terminal available, or a link name cannot be created.
        """
        try:
            self._ptys = [open_pty(), open_pty()]
            self._wake_r, self._wake_w = os.pipe()
            for link, p in zip((self.a, self.b), self._ptys, strict=True):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link)
                os.symlink(p.path, link)
        except OSError:
            self.__exit__()
            raise
        self._stop.clear()
        self._thread = threading.Thread(target=self._copy, name="pty-pair", daemon=True)
        self._thread.start()
        return self.a, self.b

    def _copy(self) -> None:
        ma, mb = self._ptys[0].master, self._ptys[1].master
        other = {ma: mb, mb: ma}
        pending: dict[int, bytearray] = {ma: bytearray(), mb: bytearray()}  # to write to fd
        while not self._stop.is_set():
            writers = [fd for fd, buf in pending.items() if buf]
            try:
                readable, writable, _ = select.select([ma, mb, self._wake_r], writers, [], 1.0)
            except (OSError, ValueError):
                return  # closed under us: the pair is shutting down
            for fd in readable:
                if fd == self._wake_r:
                    return
                try:
                    data = os.read(fd, _CHUNK)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:  # EIO: no slave open (never, as the pair holds both)
                    continue
                pending[other[fd]] += data
            for fd in writable:
                buf = pending[fd]
                try:
                    n = os.write(fd, buf)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    buf.clear()
                    continue
                del buf[:n]

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for link in (self.a, self.b):
            with contextlib.suppress(OSError):
                if os.path.islink(link):
                    os.unlink(link)
        for p in self._ptys:
            p.close()
        self._ptys = []
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1
