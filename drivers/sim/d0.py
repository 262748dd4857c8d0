"""An IEC 62056-21 mode C meter simulator (D0 responder) over a pseudo-terminal.

It answers the sign-on ``/?!`` (or ``/?ADDRESS!``) with its identification, waits for
the ACK option select and sends a data readout (``STX ... ! CR LF ETX BCC``) whose
energy counters rise with every readout. The pty ignores baud rates, so the baud
switch is checked by what the ACK asks for (``acks`` records them), not by timing.

Fault modes (``D0SimConfig.faults``): ``silence`` (never answers), ``bad-bcc`` (wrong
BCC), ``garbage`` (noise before the identification and the data message),
``no-readout`` (identifies, then says nothing), ``echo`` (echoes the sign-on first,
as some optical heads do), ``mode-b`` (offers a mode B baud character).
"""

from __future__ import annotations

import os
import select
from dataclasses import dataclass, field

from drivers.iec62056 import ACK, MODE_C_BAUD, data_message
from drivers.sim.serialpty import PtySimulator, write_all

FAULTS = frozenset({"silence", "bad-bcc", "garbage", "no-readout", "echo", "mode-b"})


@dataclass
class D0SimConfig:
    """How the simulated meter behaves."""

    manufacturer: str = "MCS"
    baud_char: str = "5"
    ident: str = "SIM-D0-0001"
    address: str = ""
    """Answer only sign-ons for this address ('' answers every sign-on)."""
    faults: frozenset[str] = frozenset()
    import_wh: int = 19_374_418
    export_wh: int = 1_520_048
    step_wh: int = 125
    """Energy added per readout."""
    ack_timeout_s: float = 2.0


@dataclass
class _Conn:
    buf: bytearray = field(default_factory=bytearray)


class D0Simulator(PtySimulator):
    """A D0 responder on a pty; use as a context manager. ``port`` is the path to open."""

    thread_name = "d0-sim"

    def __init__(self, config: D0SimConfig | None = None) -> None:
        super().__init__()
        self.config = config or D0SimConfig()
        unknown = set(self.config.faults) - FAULTS
        if unknown:
            raise ValueError(f"unknown D0 fault mode(s) {sorted(unknown)}; known: {sorted(FAULTS)}")
        self.import_wh = self.config.import_wh
        self.readouts = 0
        self.acks: list[bytes] = []


    def data_block(self) -> str:
        """The data block text of the next readout."""
        c = self.config
        t1 = self.import_wh * 6 // 10
        return (
            "F.F(00000000)\r\n"
            "0.0.0(71823409)\r\n"
            f"1.8.0({self.import_wh // 1000:07d}.{self.import_wh % 1000:03d}*kWh)\r\n"
            f"1.8.1({t1 // 1000:07d}.{t1 % 1000:03d}*kWh)\r\n"
            f"1.8.2({(self.import_wh - t1) // 1000:07d}.{(self.import_wh - t1) % 1000:03d}"
            "*kWh)\r\n"
            f"2.8.0({c.export_wh // 1000:07d}.{c.export_wh % 1000:03d}*kWh)\r\n"
            "32.7.0(231.4*V)\r\n"
            "31.7.0(002.15*A)\r\n"
            "!\r\n"
        )

    def _readline(self, conn: _Conn, timeout_s: float) -> bytes | None:
        assert self._pty is not None
        fd = self._pty.master
        waited = 0.0
        while b"\n" not in conn.buf:
            if self._stop.is_set() or waited >= timeout_s:
                return None
            ready, _, _ = select.select([fd], [], [], 0.05)
            waited += 0.05
            if ready:
                try:
                    conn.buf += os.read(fd, 1024)
                except (BlockingIOError, OSError):
                    continue
        line, _, rest = bytes(conn.buf).partition(b"\n")
        conn.buf = bytearray(rest)
        return line + b"\n"

    def _send(self, data: bytes) -> None:
        assert self._pty is not None
        write_all(self._pty.master, data)

    def _run(self) -> None:
        c = self.config
        conn = _Conn()
        sign_on = b"/?" + c.address.encode() + b"!\r\n"
        while not self._stop.is_set():
            line = self._readline(conn, 0.2)
            if line is None or "silence" in c.faults:
                continue
            if not (line.endswith(sign_on) or (not c.address and line.endswith(b"!\r\n")
                                                and line.lstrip(b"\x00").startswith(b"/?"))):
                continue
            if "echo" in c.faults:
                self._send(line)
            if "garbage" in c.faults:
                self._send(b"\x11\x7f#noise\r\n")
            baud_char = "E" if "mode-b" in c.faults else c.baud_char
            self._send(f"/{c.manufacturer}{baud_char}{c.ident}\r\n".encode())
            ack = self._readline(conn, c.ack_timeout_s)
            if ack is None or not ack.startswith(bytes((ACK,))):
                continue
            self.acks.append(ack)
            if "no-readout" in c.faults or ack[2:3].decode() not in MODE_C_BAUD:
                continue
            msg = data_message(self.data_block())
            if "bad-bcc" in c.faults:
                msg = msg[:-1] + bytes((msg[-1] ^ 0x01,))
            if "garbage" in c.faults:
                msg = b"\x7f\x15?" + msg
            self._send(msg)
            self.readouts += 1
            self.import_wh += c.step_wh
