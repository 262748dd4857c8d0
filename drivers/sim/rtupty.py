"""A Modbus RTU responder on a pseudo-terminal that records when each frame passes.

Several units share the line as on an RS-485 bus; each answers from its own register
image through :meth:`drivers.sim.faults.FaultResponder.answer` (so fault modes work
here too), a unit id nobody has stays silent as a real RTU slave does. :attr:`log`
holds ``(monotonic time, "rx" | "tx", frame)`` for every request received and
answer sent, which lets tests check the gap a master keeps between frames.

Pseudo-terminals ignore baud rate: the times are the gaps the master's code inserts,
not wire times (add the bytes' wire time for that).
"""

from __future__ import annotations

import os
import select
import time

from drivers.sim.faults import FaultResponder, crc
from drivers.sim.serialpty import PtySimulator, write_all

REQUEST_BYTES = 8
"""A read-registers request (function 3 or 4): unit, function, address, count, CRC."""


class RtuPtyResponder(PtySimulator):
    """Answer read requests for ``units`` (unit id -> responder) on a pty."""

    thread_name = "rtu-pty"

    def __init__(self, units: dict[int, FaultResponder]) -> None:
        super().__init__()
        self.units = units
        self.log: list[tuple[float, str, bytes]] = []

    def _run(self) -> None:
        assert self._pty is not None
        fd = self._pty.master
        buf = bytearray()
        first_byte_at = 0.0
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.02)
            if not ready:
                continue
            try:
                data = os.read(fd, 256)
            except (BlockingIOError, OSError):
                continue
            if not buf:
                first_byte_at = time.monotonic()
            buf += data
            while len(buf) >= REQUEST_BYTES:
                request = bytes(buf[:REQUEST_BYTES])
                del buf[:REQUEST_BYTES]
                self.log.append((first_byte_at, "rx", request))
                first_byte_at = time.monotonic()
                if request[1] not in (3, 4) or crc(request[:6]) != request[6:]:
                    buf.clear()  # out of step: a real slave waits for the next silence
                    continue
                unit = self.units.get(request[0])
                reply = unit.answer(request) if unit is not None else None
                if reply is not None:
                    write_all(fd, reply)
                    self.log.append((time.monotonic(), "tx", reply))

    def gaps(self) -> list[float]:
        """Seconds from each answer sent to the next request's first byte."""
        out = []
        for (t0, kind0, _), (t1, kind1, _) in zip(self.log, self.log[1:], strict=False):
            if kind0 == "tx" and kind1 == "rx":
                out.append(t1 - t0)
        return out
