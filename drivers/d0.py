"""IEC 62056-21 mode C meters over an optical D0 head (driver ``iec62056-21``).

One :meth:`D0Meter.read` is one readout: sign-on at 300 baud 7E1, identification,
ACK option select to the meter's offered baud rate (capped by ``max_baudrate``), the
data message, its BCC check, and the OBIS values as readings stamped by the gateway
clock (D0 readouts carry no DST flag). Port I/O runs in a worker thread.

Options (``MeterSpec.options``):

- ``address``: device address for the sign-on (default empty: any meter).
- ``max_baudrate``: highest readout baud rate to accept (default 19200); if the meter
  offers more, the ACK asks for the highest mode C rate not above it.
- ``switch_delay_s``: pause after the ACK before changing baud (default 0.3 s; the
  ACK needs 0.2 s on the wire at 300 baud).
- ``readout_timeout_s``: longest wait for the whole data message (default 15 s).

``MeterSpec.timeout_s`` bounds the wait for the identification (at least 1.5 s).
Other option keys are refused.
"""

from __future__ import annotations

import asyncio
import termios
import threading
import time
from dataclasses import dataclass

import serial

from drivers.base import Meter, MeterSpec, check_options, register
from drivers.iec62056 import (
    MODE_C_BAUD,
    BccError,
    DataSet,
    Identification,
    ack_option_select,
    check_data_message,
    find_data_message,
    parse_data_block,
    parse_identification,
    readout_readings,
    sign_on,
)
from drivers.serialport import open_port, port_error
from ledger import Reading
from ledger.errors import ConfigError, DeviceTimeout, FrameError

SIGN_ON_BAUD = 300
OPTIONS = ("address", "max_baudrate", "switch_delay_s", "readout_timeout_s")
"""Option keys a D0 meter accepts (anything else is refused as a likely typo)."""


@dataclass(frozen=True, slots=True)
class D0Config:
    """Validated settings of one D0 meter."""

    port: str
    address: str = ""
    max_baudrate: int = 19200
    ident_timeout_s: float = 1.5
    """Longest wait for the identification line after the sign-on."""
    switch_delay_s: float = 0.3
    readout_timeout_s: float = 15.0
    """Longest wait for the whole data message."""
    max_readout_bytes: int = 65_536
    poll_s: float = 0.05

    @classmethod
    def from_spec(cls, spec: MeterSpec) -> D0Config:
        """Build from a :class:`MeterSpec`.

        Raises:
            ConfigError: no port or a bad option (named).
        """
        check_options(spec, OPTIONS)
        if not spec.port:
            raise ConfigError("port", "iec62056-21 needs the serial port of the optical head")
        o = spec.options
        address = o.get("address", "")
        if not isinstance(address, str):
            raise ConfigError("options.address", f"must be text, not {address!r}")
        try:
            sign_on(address)
        except ValueError as exc:
            raise ConfigError("options.address", str(exc)) from None
        max_baud = o.get("max_baudrate", 19200)
        if (not isinstance(max_baud, int) or isinstance(max_baud, bool)
                or max_baud not in MODE_C_BAUD.values()):
            raise ConfigError("options.max_baudrate",
                              f"must be one of {sorted(MODE_C_BAUD.values())}, not {max_baud!r}")
        return cls(
            spec.port, address, max_baud,
            max(spec.timeout_s, 1.5),
            _positive(o, "switch_delay_s", 0.3, allow_zero=True),
            _positive(o, "readout_timeout_s", 15.0),
        )


def _positive(o: dict[str, object], key: str, default: float, allow_zero: bool = False) -> float:
    raw = o.get(key, default)
    if (not isinstance(raw, int | float) or isinstance(raw, bool)
            or not (raw >= 0 if allow_zero else raw > 0)):
        raise ConfigError(f"options.{key}", f"must be a positive number, not {raw!r}")
    return float(raw)


class D0Meter(Meter):
    """A meter read by IEC 62056-21 mode C. ``stats`` counts ``readouts`` (good),
    ``bcc_errors``, ``frame_errors``, ``timeouts``, ``bytes``."""

    def __init__(self, spec: MeterSpec) -> None:
        self.spec = spec
        self.config = D0Config.from_spec(spec)
        self.stats: dict[str, int] = dict.fromkeys(
            ("readouts", "bcc_errors", "frame_errors", "timeouts", "bytes"), 0)
        self.identification: Identification | None = None
        self.last_frame: bytes | None = None
        """Bytes of the last data message (for ``--raw`` display)."""
        self._port: serial.Serial | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: MeterSpec) -> D0Meter:
        """Driver factory. Raises :class:`ConfigError` naming the bad field."""
        return cls(spec)

    async def probe(self) -> bool:
        """True if a mode C meter identifies itself; False if something else answers.

        Raises:
            DeviceTimeout: nothing answers the sign-on; DeviceError: port problems.
        """
        try:
            ident = await asyncio.to_thread(self._run, False)
        except FrameError:
            return False
        return ident is not None

    async def read(self, now_ms: int) -> list[Reading]:
        """One readout's readings.

        Raises:
            DeviceTimeout: no identification or no data message in time.
            FrameError: bad identification, BCC mismatch or malformed data.
            DeviceError: the port cannot be opened or failed.
        """
        datasets = await asyncio.to_thread(self._run, True)
        assert isinstance(datasets, list)
        return readout_readings(datasets, self.spec.meter_id, now_ms)

    async def close(self) -> None:
        """Nothing stays open between readouts; waits for one in progress."""
        await asyncio.to_thread(self._lock.acquire)
        self._lock.release()

    # --- blocking part, runs in a worker thread ---------------------------------------

    def _run(self, readout: bool) -> list[DataSet] | Identification:
        # The port is opened for each readout: every exchange starts at 300 baud and
        # the meter falls back to idle after a readout anyway.
        c = self.config
        with self._lock:
            port = open_port(c.port, baudrate=SIGN_ON_BAUD, bytesize=7, parity="E",
                             stopbits=1, timeout_s=c.poll_s, what="D0 port")
            self._port = port
            try:
                return self._exchange(port, readout)
            except (serial.SerialException, termios.error) as exc:
                raise port_error(c.port, exc, "D0 port") from None
            except FrameError as exc:
                if exc.bus is not None:
                    raise
                raise self._garbled(exc) from None
            finally:
                self._port = None
                port.close()

    def _garbled(self, exc: FrameError) -> FrameError:
        """A message from the protocol parser, with the port and what to check."""
        if isinstance(exc, BccError):
            return BccError(exc.expected, exc.actual, bus=self.config.port)
        return FrameError(f"D0 port {self.config.port}: {exc}", bus=self.config.port,
                          hint=exc.hint or "check the optical head sits on the meter's D0 "
                          "port (cable pointing down) and that the meter speaks IEC 62056-21 "
                          "mode C")

    def _timeout(self, what: str, waited: float) -> DeviceTimeout:
        self.stats["timeouts"] += 1
        return DeviceTimeout(
            f"no {what} from the meter on D0 port {self.config.port} in {waited:g} s",
            bus=self.config.port,
            hint="check the optical head sits on the meter's D0 port (cable pointing down), "
                 "that the meter speaks IEC 62056-21 mode C, and the device address",
        )

    def _exchange(self, port: serial.Serial, readout: bool) -> list[DataSet] | Identification:
        c = self.config
        port.reset_input_buffer()
        request = sign_on(c.address)
        port.write(request)
        port.flush()
        ident = self._identification(port, request)
        self.identification = ident
        if not readout:
            return ident
        offered = ident.baudrate  # FrameError when not mode C
        char = max((k for k, v in MODE_C_BAUD.items() if v <= min(offered, c.max_baudrate)),
                   key=lambda k: MODE_C_BAUD[k])
        port.write(ack_option_select(char))
        port.flush()
        time.sleep(c.switch_delay_s)
        if port.baudrate != MODE_C_BAUD[char]:  # a no-op tcsetattr fails on virtual ports
            port.baudrate = MODE_C_BAUD[char]
        msg = self._data_message(port)
        self.last_frame = msg
        try:
            text = check_data_message(msg)
        except BccError:
            self.stats["bcc_errors"] += 1
            raise
        except FrameError:
            self.stats["frame_errors"] += 1
            raise
        self.stats["readouts"] += 1
        return parse_data_block(text)

    def _identification(self, port: serial.Serial, request: bytes) -> Identification:
        c = self.config
        deadline = time.monotonic() + c.ident_timeout_s
        buf = bytearray()
        while time.monotonic() < deadline:
            chunk = port.read(max(1, min(port.in_waiting, 256)))
            self.stats["bytes"] += len(chunk)
            buf += chunk
            while b"\n" in buf:
                line, _, rest = bytes(buf).partition(b"\n")
                buf = bytearray(rest)
                line += b"\n"
                if line == request:  # an optical head that echoes what it sends
                    continue
                start = line.find(b"/")
                if start < 0:
                    continue  # noise line before the identification
                try:
                    return parse_identification(line[start:])
                except FrameError:
                    self.stats["frame_errors"] += 1
                    raise
            if len(buf) > 256:
                self.stats["frame_errors"] += 1
                raise FrameError(f"no identification line in {len(buf)} bytes",
                                 bus=c.port, hint="is this a mode C meter? check the head")
        raise self._timeout("identification", c.ident_timeout_s)

    def _data_message(self, port: serial.Serial) -> bytes:
        c = self.config
        deadline = time.monotonic() + c.readout_timeout_s
        buf = bytearray()
        while time.monotonic() < deadline:
            chunk = port.read(max(1, min(port.in_waiting, 4096)))
            self.stats["bytes"] += len(chunk)
            buf += chunk
            found = find_data_message(bytes(buf))
            if found:
                return bytes(buf[found[0]: found[1]])
            if len(buf) > c.max_readout_bytes:
                self.stats["frame_errors"] += 1
                raise FrameError(f"readout longer than {c.max_readout_bytes} bytes",
                                 bus=c.port)
        if buf:
            self.stats["frame_errors"] += 1
            raise FrameError(f"data message incomplete after {c.readout_timeout_s:g} s "
                             f"({len(buf)} bytes)", bus=c.port,
                             hint="the meter stopped mid-readout: check the head's position, "
                                  "or lower options.max_baudrate")
        raise self._timeout("data message", c.readout_timeout_s)


register("iec62056-21", D0Meter.from_spec,
         "IEC 62056-21 mode C meter via optical D0 head (sign-on 300 baud 7E1, baud switch)")
