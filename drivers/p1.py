"""DSMR P1 meters (driver ``dsmr-p1``): a pyserial port that receives pushed telegrams.

The meter pushes a telegram every second (DSMR 5) or ten seconds (DSMR 2.2-4). One
:meth:`P1Meter.read` first reads what is already buffered on the port, parses every
complete telegram in it and returns the newest one that passes its checks; only when
none is buffered does it wait for the next good telegram, up to the telegram timeout.
So a poll interval equal to the push interval (10 s on DSMR 4) never depends on the
phase between the two. A buffered telegram is correct data: its readings carry the
meter's own timestamp (0-0:1.0.0). Input from before the port was opened is flushed
once at open; a telegram cut off at the end of a read is completed by the next read.
A telegram with a bad CRC or malformed content is counted in :attr:`P1Meter.stats` and
skipped. Port I/O runs in a worker thread so the event loop is never blocked.

Options (``MeterSpec.options``):

- ``variant``: ``v2.2``, ``v3``, ``v4``, ``v5``, ``be`` (e-MUCS/Fluvius), ``lu``
  (Smarty, decrypted) or ``auto`` (default). Sets the serial defaults (115200 8N1 for
  DSMR 4/5, 9600 7E1 for 2.2/3) and whether a CRC is required.
- ``telegram_timeout_s``: how long one read waits for a good telegram (default: two
  telegram intervals plus one second, at least ``MeterSpec.timeout_s``).
- ``max_telegram_bytes``: longest telegram accepted (default 16384).
- ``key``: for ``lu`` only, the 32-hex-digit P1 decryption key (GUEK) from the grid
  operator: the port then carries encrypted Smarty frames (:mod:`drivers.smarty`).
  Without it, ``lu`` expects plain telegrams (e.g. from a decrypting adapter).

``MeterSpec.baudrate``/``bytesize``/``parity``/``stopbits`` override the variant's.
Other option keys are refused (a misspelled one would silently keep the default).
"""

from __future__ import annotations

import asyncio
import termios
import threading
import time
from dataclasses import dataclass

import serial

from drivers import smarty
from drivers.base import Meter, MeterSpec, check_options, register
from drivers.dsmr import (
    VARIANTS,
    CrcError,
    Telegram,
    TelegramFramer,
    Variant,
    parse_telegram,
    telegram_readings,
)
from drivers.serialport import check_line, open_port, port_error
from ledger import Reading
from ledger.errors import ConfigError, DeviceError, DeviceTimeout, FrameError

OPTIONS = ("variant", "telegram_timeout_s", "max_telegram_bytes", "key")
"""Option keys a P1 meter accepts (anything else is refused as a likely typo)."""


@dataclass(frozen=True, slots=True)
class P1Config:
    """Validated settings of one P1 meter."""

    port: str
    variant: Variant
    baudrate: int
    bytesize: int
    parity: str
    stopbits: int
    telegram_timeout_s: float
    """Longest wait for one good telegram in one read."""
    max_telegram_bytes: int = 16_384
    """Longest telegram accepted; a longer one is dropped as truncated."""
    poll_s: float = 0.05
    """Port read timeout of one chunk (how soon a close or the deadline is noticed)."""
    key: bytes | None = None
    """Smarty decryption key; None for plain telegrams."""

    @classmethod
    def from_spec(cls, spec: MeterSpec) -> P1Config:
        """Build from a :class:`MeterSpec`.

        Raises:
            ConfigError: no port, unknown variant, or a bad option (named).
        """
        check_options(spec, OPTIONS)
        if not spec.port:
            raise ConfigError("port", "dsmr-p1 needs the serial port of the P1 cable")
        name = spec.options.get("variant", "auto")
        if not isinstance(name, str) or name not in VARIANTS:
            raise ConfigError("options.variant",
                              f"unknown DSMR variant {name!r} (known: {', '.join(VARIANTS)})")
        v = VARIANTS[name]
        default_timeout = max(spec.timeout_s, 2 * v.interval_s + 1.0)
        timeout = _number(spec.options, "telegram_timeout_s", default_timeout)
        max_bytes = spec.options.get("max_telegram_bytes", 16_384)
        if type(max_bytes) is not int or not 256 <= max_bytes <= 1_048_576:
            raise ConfigError("options.max_telegram_bytes",
                              f"must be an integer in 256..1048576, not {max_bytes!r}")
        baud, parity, stop, size = check_line(spec.baudrate, spec.parity, spec.stopbits,
                                              spec.bytesize, v.baudrate, v.parity, v.bytesize)
        key = None
        if "key" in spec.options:
            if v.name != "lu":
                raise ConfigError("options.key", "a decryption key is only used with variant lu")
            if not isinstance(spec.options["key"], str):
                raise ConfigError("options.key", "must be text: 32 hexadecimal digits")
            try:
                key = smarty.parse_key(spec.options["key"])
            except ValueError as exc:
                raise ConfigError("options.key", str(exc)) from None
            try:
                import cryptography  # noqa: F401
            except ImportError:
                raise ConfigError("options.key", "decrypting Smarty telegrams needs the "
                                  "cryptography package: pip install 'meterchain[smarty]'"
                                  ) from None
        return cls(spec.port, v, baud, size, parity, stop, timeout, max_bytes, key=key)


def _number(options: dict[str, object], key: str, default: float) -> float:
    raw = options.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
        raise ConfigError(f"options.{key}", f"must be a positive number, not {raw!r}")
    return float(raw)


class P1Meter(Meter):
    """A DSMR P1 port. ``stats`` counts telegrams and what was dropped:
    ``telegrams`` (good), ``crc_errors``, ``frame_errors``, ``decrypt_errors``, ``truncated``,
    ``garbage_bytes``, ``timeouts``, ``bytes``.
    """

    def __init__(self, spec: MeterSpec) -> None:
        self.spec = spec
        self.config = P1Config.from_spec(spec)
        self.stats: dict[str, int] = dict.fromkeys(
            ("telegrams", "crc_errors", "frame_errors", "decrypt_errors", "truncated",
             "garbage_bytes", "timeouts", "bytes"), 0)
        self.last_telegram: Telegram | None = None
        """The last good telegram (``raw`` holds its bytes, for ``--raw`` display)."""
        self.last_error: FrameError | None = None
        """The last dropped telegram's error."""
        self._port: serial.Serial | None = None
        c = self.config
        self._framer = TelegramFramer(max_telegram_bytes=c.max_telegram_bytes)
        self._sframer = smarty.SmartyFramer(max_frame_bytes=c.max_telegram_bytes)
        """Framers live as long as the open port: a telegram split between two reads
        is completed, not lost."""
        self._lock = threading.Lock()
        self._closing = threading.Event()

    @property
    def last_frame(self) -> bytes | None:
        """Bytes of the last good telegram (for ``--raw`` display), as ``D0Meter``'s."""
        return self.last_telegram.raw if self.last_telegram else None

    @classmethod
    def from_spec(cls, spec: MeterSpec) -> P1Meter:
        """Driver factory. Raises :class:`ConfigError` naming the bad field."""
        return cls(spec)

    def _describe(self) -> str:
        c = self.config
        return f"{c.baudrate} {c.bytesize}{c.parity}{c.stopbits}, variant {c.variant.name}"

    async def probe(self) -> bool:
        """True if a good telegram arrives; False if data arrives but none is good.

        Raises:
            DeviceError: port missing/denied; DeviceTimeout: silence.
        """
        try:
            await asyncio.to_thread(self._next_telegram)
        except FrameError:
            return False
        return True

    async def read(self, now_ms: int) -> list[Reading]:
        """Readings of the next good telegram (see the module docstring).

        Raises:
            DeviceTimeout: no bytes at all within the telegram timeout.
            FrameError: bytes arrived but no telegram passed its checks.
            DeviceError: the port cannot be opened or failed.
        """
        telegram = await asyncio.to_thread(self._next_telegram)
        return telegram_readings(telegram, self.spec.meter_id, now_ms)

    async def close(self) -> None:
        """Close the port (waits for a read in progress to notice)."""
        self._closing.set()
        await asyncio.to_thread(self._close_blocking)

    def _close_blocking(self) -> None:
        with self._lock:
            if self._port is not None:
                try:
                    self._port.close()
                finally:
                    self._port = None
            self._closing.clear()

    # --- blocking part, runs in a worker thread ---------------------------------------

    def _open(self) -> serial.Serial:
        if self._port is None:
            c = self.config
            port = open_port(c.port, baudrate=c.baudrate, bytesize=c.bytesize,
                             parity=c.parity, stopbits=c.stopbits, timeout_s=c.poll_s,
                             what="P1 port")
            port.reset_input_buffer()  # bytes from before we opened are not ours
            self._framer.resync()
            self._sframer.resync()
            self._port = port
        return self._port

    def _next_telegram(self) -> Telegram:
        with self._lock:
            port = self._open()
            try:
                return self._receive(port)
            except (serial.SerialException, termios.error) as exc:
                self._port = None
                port.close()
                raise port_error(self.config.port, exc, "P1 port") from None

    def _receive(self, port: serial.Serial) -> Telegram:
        c = self.config
        framer, sframer = self._framer, self._sframer
        garbage_before = framer.stats.garbage_bytes + sframer.garbage_bytes
        truncated_before = framer.stats.truncated
        deadline = time.monotonic() + c.telegram_timeout_s
        received = 0
        dropped_before = (self.stats["crc_errors"] + self.stats["frame_errors"]
                          + self.stats["decrypt_errors"])
        try:
            # 1. What is already buffered: every complete telegram, keep the newest good one.
            newest: Telegram | None = None
            while not self._closing.is_set() and time.monotonic() < deadline:
                waiting = port.in_waiting
                if not waiting:
                    break
                chunk = port.read(min(waiting, 65_536))
                received += len(chunk)
                good = self._newest_good(chunk)
                newest = good if good is not None else newest
            if newest is not None:
                return newest
            # 2. Nothing good buffered: wait for the next good telegram.
            while time.monotonic() < deadline and not self._closing.is_set():
                chunk = port.read(max(1, min(port.in_waiting, 4096)))
                if not chunk:
                    continue
                received += len(chunk)
                newest = self._newest_good(chunk)
                if newest is not None:
                    return newest
        finally:
            self.stats["bytes"] += received
            self.stats["garbage_bytes"] += (framer.stats.garbage_bytes + sframer.garbage_bytes
                                            - garbage_before)
            self.stats["truncated"] += framer.stats.truncated - truncated_before
        if self._closing.is_set():
            raise DeviceError("P1 port closed during a read", bus=c.port)
        if received == 0:
            self.stats["timeouts"] += 1
            raise DeviceTimeout(
                f"no data on P1 port {c.port} in {c.telegram_timeout_s:g} s ({self._describe()})",
                bus=c.port,
                hint="check the P1 cable (RJ12, data request line powered), that the "
                     "supplier enabled the P1 port, and the settings: 115200 8N1 for "
                     "DSMR 4/5, 9600 7E1 for DSMR 2.2/3",
            )
        dropped = (self.stats["crc_errors"] + self.stats["frame_errors"]
                   + self.stats["decrypt_errors"] - dropped_before)
        last = f"; last error: {self.last_error}" if self.last_error and dropped else ""
        raise FrameError(
            f"{received} bytes on P1 port {c.port} in {c.telegram_timeout_s:g} s but no good "
            f"telegram ({dropped} dropped{last})",
            bus=c.port,
            hint="garbled data usually means wrong serial settings "
                 f"({self._describe()}): try variant v2.2/v3 (9600 7E1) or v5 (115200 8N1); "
                 "CRC errors mean noise on the cable",
        )

    def _newest_good(self, chunk: bytes) -> Telegram | None:
        """Feed ``chunk``; check every telegram it completes (bad ones are counted and
        skipped) and return the newest good one, if any."""
        raws = (self._framer.feed(chunk) if self.config.key is None
                else self._decrypt(self._sframer, chunk))
        newest = None
        for raw in raws:
            telegram = self._check(raw)
            if telegram is not None:
                newest = telegram
        return newest

    def _decrypt(self, sframer: smarty.SmartyFramer, chunk: bytes) -> list[bytes]:
        assert self.config.key is not None
        out = []
        for frame in sframer.feed(chunk):
            try:
                out.append(smarty.decrypt(frame, self.config.key))
            except FrameError as exc:
                key = "decrypt_errors" if isinstance(exc, smarty.DecryptError) else "frame_errors"
                self.stats[key] += 1
                self.last_error = exc
        return out

    def _check(self, raw: bytes) -> Telegram | None:
        try:
            telegram = parse_telegram(raw, crc=self.config.variant.crc)
        except FrameError as exc:
            key = "crc_errors" if isinstance(exc, CrcError) else "frame_errors"
            self.stats[key] += 1
            self.last_error = exc
            return None
        self.stats["telegrams"] += 1
        self.last_telegram = telegram
        return telegram


register("dsmr-p1", P1Meter.from_spec,
         "DSMR P1 smart meter port (NL v2.2-v5, BE e-MUCS, LU Smarty): pushed telegrams")
