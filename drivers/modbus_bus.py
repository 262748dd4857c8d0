"""Shared Modbus buses: one pymodbus client and one lock per serial port or TCP endpoint.

Several meters on one RS-485 line (or behind one RTU-over-TCP gateway) share a
:class:`Bus`. Requests on a bus are strictly one at a time (an :class:`asyncio.Lock`),
the RTU inter-frame gap (3.5 characters, at least 1.75 ms) is kept between frames,
and each request uses the timeout of the meter that sends it, with no retries, so a
silent meter costs exactly its own timeout. Meters on different buses run in parallel.

Buses are reference counted: :func:`acquire` returns the bus for a key (creating it),
:meth:`Bus.release` closes the client when its last meter is closed.

Every failure is a :class:`~ledger.errors.DeviceError` naming bus, unit and register,
with a hint of what to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.framer.rtu import FramerRTU
from serial import SerialBase, SerialException

from drivers.serialport import diagnose, port_error, settings_refused
from ledger.errors import (
    ConfigError,
    DeviceError,
    DeviceExceptionResponse,
    DeviceTimeout,
    FrameError,
)

log = logging.getLogger(__name__)

# pymodbus logs every failed transaction at ERROR and dumps frames at INFO, before our
# own message. A DeviceError already carries the bus, unit, register and a hint, and
# `meterchain read --raw` shows the frames (through trace_packet, not logging), so the
# library's own log only buries the one line that matters. `meterchain -v` sets the
# level back to DEBUG (meterchain/cli.py); a level someone already set is left alone.
_PYMODBUS_LOG = logging.getLogger("pymodbus")
if _PYMODBUS_LOG.level == logging.NOTSET:
    _PYMODBUS_LOG.setLevel(logging.CRITICAL)

Tracer = Callable[[bool, bytes], None]
"""Called with ``(sending, frame_bytes)`` for every frame on a bus (``--raw``)."""

MODBUS_EXCEPTIONS: dict[int, tuple[str, str]] = {
    1: ("illegal function", "the device does not support this read function: check the "
        "profile's function (holding/input) matches the device"),
    2: ("illegal data address", "the device does not define this register: the profile "
        "does not match the device (wrong model or firmware)"),
    3: ("illegal data value", "the request length is refused: lower the profile's "
        "max_registers or max_gap"),
    # A real meter answers 4 for an internal failure, but gateways and some servers
    # (pymodbus included) answer 4 for a unit id nobody has, which is why a scan reads
    # 4 as "no device here": the hint names both causes, the likelier one first.
    4: ("device failure", "no device answers at this unit id behind a gateway, or the "
        "meter reports an internal failure: check the unit id (meterchain scan finds it); "
        "if it is right, check the meter's display and power-cycle it"),
    5: ("acknowledge", "the device is busy with a long operation: retry later"),
    6: ("device busy", "the device is busy: retry later or poll less often"),
    10: ("gateway path unavailable", "the gateway has no route to this unit: check the "
         "gateway's serial settings and the unit id"),
    11: ("gateway target failed to respond", "the gateway got no answer from the meter: "
         "check wiring, termination, unit id and baud rate behind the gateway"),
}


@dataclass(frozen=True, slots=True)
class BusKey:
    """What identifies a bus: transport plus port or endpoint."""

    kind: str
    """``serial`` (RTU on a port), ``tcp`` (Modbus TCP) or ``rtu-tcp`` (RTU over TCP)."""
    where: str
    """Serial device path, or ``host:port``."""


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Line settings of a serial bus; every meter on one port must agree."""

    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    def describe(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


@dataclass
class BusStats:
    """Traffic counters of one bus (frames as pymodbus sends and receives them)."""

    requests: int = 0
    tx_bytes: int = 0
    rx_bytes: int = 0
    timeouts: int = 0
    errors: int = 0


@dataclass(eq=False)
class Bus:
    """One shared client with its lock; use :func:`acquire` to get one."""

    key: BusKey
    serial: SerialSettings | None
    inter_frame_gap_s: float
    users: int = 0
    stats: BusStats = field(default_factory=BusStats)
    tracers: list[Tracer] = field(default_factory=list)
    _client: AsyncModbusSerialClient | AsyncModbusTcpClient | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _last_frame: float = 0.0
    _rx_in_request: int = 0
    _rx_buffer: bytearray = field(default_factory=bytearray)

    @property
    def name(self) -> str:
        return self.key.where

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.stats.tx_bytes += len(data)
        else:
            self.stats.rx_bytes += len(data)
            self._rx_in_request += len(data)
            if len(self._rx_buffer) < 512:
                self._rx_buffer += data
        for t in self.tracers:
            t(sending, data)
        return data

    def _make_client(self, timeout: float) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        if self.key.kind == "serial":
            s = self.serial or SerialSettings()
            return AsyncModbusSerialClient(
                self.key.where, framer=FramerType.RTU, baudrate=s.baudrate, parity=s.parity,
                stopbits=s.stopbits, bytesize=s.bytesize, timeout=timeout, retries=0,
                trace_packet=self._trace)
        host, _, port = self.key.where.rpartition(":")
        framer = FramerType.RTU if self.key.kind == "rtu-tcp" else FramerType.SOCKET
        return AsyncModbusTcpClient(host, port=int(port), framer=framer, timeout=timeout,
                                    retries=0, reconnect_delay=0, trace_packet=self._trace)

    async def _connect(self, timeout: float,
                       unit: int) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        if self.key.kind == "serial":
            check_serial_port(self.key.where)
        if self._client is None:
            self._client = self._make_client(timeout)
        self._client.ctx.comm_params.timeout_connect = timeout
        failure: DeviceError | None = None
        try:
            ok = await self._client.connect()
        except termios.error as exc:
            # pymodbus lets a refused tcsetattr escape from its serial transport, after
            # pyserial opened (and exclusively locked) the port.
            _close_half_open_port(exc)
            settings = (self.serial or SerialSettings()).describe()
            failure = (settings_refused(self.key.where, exc, settings, "serial port")
                       if exc.args and exc.args[0] == errno.EINVAL
                       else port_error(self.key.where, exc, "serial port"))
        except (SerialException, OSError) as exc:
            failure = port_error(self.key.where, exc, "serial port")
        if failure is not None:
            self._client = None
            raise failure
        if not ok:
            if self.key.kind == "serial":
                # pymodbus swallows the OSError (and its errno): open the node ourselves
                # to report the real cause.
                cause = diagnose(self.key.where, "serial port")
                if cause is not None:
                    raise cause
                raise DeviceError(f"cannot open serial port {self.key.where}", bus=self.name,
                                  unit=unit, hint="the port looks usable but the open "
                                  "failed: run with -v to see the serial library's reason")
            raise DeviceError(f"cannot connect to {self.key.where}", bus=self.name, unit=unit,
                              hint="check the IP address and TCP port (502 by default), that "
                              "the device or gateway is powered and reachable, and no "
                              "firewall blocks it")
        return self._client

    async def read_registers(self, function: int, address: int, count: int, unit: int,
                             timeout: float) -> list[int]:
        """Read ``count`` registers with function 3 or 4, one request, under the bus lock.

        Raises:
            DeviceTimeout: no (valid) answer within ``timeout``.
            FrameError: bytes arrived but formed no valid frame, or came from another unit.
            DeviceExceptionResponse: the device answered with a Modbus exception.
            DeviceError: the port or endpoint cannot be opened.
        """
        async with self._lock:
            client = await self._connect(timeout, unit)
            client.ctx.comm_params.timeout_connect = timeout
            wait = self._last_frame + self.inter_frame_gap_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._rx_in_request = 0
            self._rx_buffer.clear()
            self.stats.requests += 1
            call = client.read_holding_registers if function == 3 else client.read_input_registers
            try:
                response = await call(address, count=count, device_id=unit)
            except ModbusIOException as exc:
                raise self._io_error(exc, unit, address, timeout) from None
            except ConnectionException as exc:
                self.stats.errors += 1
                raise DeviceError(f"connection lost: {exc}", bus=self.name, unit=unit,
                                  register=address, hint="check cable/network and that the "
                                  "device is powered") from None
            except ModbusException as exc:
                self.stats.errors += 1
                raise FrameError(f"protocol error: {exc}", bus=self.name, unit=unit,
                                 register=address) from None
            finally:
                self._last_frame = time.monotonic()
        if response.isError():
            self.stats.errors += 1
            code = int(getattr(response, "exception_code", 0))
            what, hint = MODBUS_EXCEPTIONS.get(code, (f"exception code {code}", "see the "
                                               "device manual"))
            raise DeviceExceptionResponse(
                f"device answered function {function} with exception {code} ({what}) for "
                f"{count} register(s)", code=code, bus=self.name, unit=unit, register=address,
                hint=hint)
        regs = list(response.registers)
        if len(regs) < count:
            self.stats.errors += 1
            raise FrameError(f"asked for {count} registers, got {len(regs)}", bus=self.name,
                             unit=unit, register=address)
        return regs[:count]

    def _io_error(self, exc: ModbusIOException, unit: int, address: int,
                  timeout: float) -> DeviceError:
        text = str(exc)
        other = _valid_rtu_frame_from(bytes(self._rx_buffer))
        if "device id" in text or (other is not None and other != unit):
            self.stats.errors += 1
            return FrameError(f"an answer came from a different unit id ({other})", bus=self.name,
                              unit=unit, register=address,
                              hint="two devices share a unit id, or the gateway maps ids: "
                              "check unit ids on the bus")
        if self._rx_in_request:
            self.stats.errors += 1
            return FrameError(
                f"received {self._rx_in_request} byte(s) that formed no valid frame "
                f"(bad CRC or garbage) within {timeout:g} s", bus=self.name, unit=unit,
                register=address, hint="check for noise, missing termination or bias, a "
                "wrong baud rate or parity, or a second master on the bus")
        self.stats.timeouts += 1
        settings = f" at {self.serial.describe()}" if self.serial else ""
        return DeviceTimeout(
            f"no answer within {timeout:g} s{settings}", bus=self.name, unit=unit,
            register=address, hint="check wiring (A/B swapped?), termination, the unit id "
            "and the baud rate/parity" if self.key.kind != "tcp" else
            "check the unit id the device expects and that it is powered")

    async def release(self) -> None:
        """Drop one user; the last one closes the client."""
        self.users -= 1
        if self.users <= 0:
            _BUSES.pop(self.key, None)
            if self._client is not None:
                async with self._lock:
                    self._client.close()
                    self._client = None


_BUSES: dict[BusKey, Bus] = {}


def acquire(key: BusKey, serial: SerialSettings | None = None,
            inter_frame_gap_s: float | None = None) -> Bus:
    """The shared bus for ``key`` (created on first use), with one more user counted.

    Raises:
        ConfigError: the port is already in use with different serial settings.
    """
    bus = _BUSES.get(key)
    if bus is None:
        if inter_frame_gap_s is None:
            inter_frame_gap_s = rtu_gap_s(serial.baudrate) if serial else 0.0
        bus = Bus(key, serial, inter_frame_gap_s)
        _BUSES[key] = bus
    elif serial is not None and bus.serial != serial:
        assert bus.serial is not None
        raise ConfigError("baudrate", f"{key.where} is already used at "
                          f"{bus.serial.describe()}; all meters on one bus need the same "
                          f"settings (got {serial.describe()})")
    bus.users += 1
    return bus


def _close_half_open_port(exc: BaseException) -> None:
    """Close the pyserial port a failed pymodbus connect left open.

    pymodbus opens the port, then sets its timeout; when that tcsetattr is refused the
    open port is only reachable from the traceback's frames. Left to the garbage
    collector, its exclusive lock would make the next attempt report the port as busy.
    """
    tb = exc.__traceback__
    while tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        if isinstance(obj, SerialBase) and obj.is_open:
            obj.close()
        tb = tb.tb_next


def _valid_rtu_frame_from(data: bytes) -> int | None:
    """The unit id of ``data`` if it is one RTU frame with a valid CRC, else None."""
    if len(data) < 4:
        return None
    if not FramerRTU.check_CRC(data[:-2], int.from_bytes(data[-2:], "big")):
        return None
    return data[0]


def rtu_gap_s(baudrate: int) -> float:
    """Modbus RTU inter-frame silence: 3.5 characters of 11 bits, at least 1.75 ms."""
    return max(3.5 * 11 / baudrate, 0.00175)


def check_serial_port(port: str) -> None:
    """Fail early with the real cause if ``port`` cannot be opened as a serial port.

    Raises:
        DeviceError: the node is missing, not accessible (dialout group hint), in use,
            a directory, or not a terminal.
    """
    cause = diagnose(port, "serial port")
    if cause is not None:
        raise cause


async def close_all() -> None:
    """Close every bus (tests and CLI shutdown)."""
    for bus in list(_BUSES.values()):
        bus.users = 1
        with contextlib.suppress(DeviceError):
            await bus.release()
