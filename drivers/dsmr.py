"""DSMR P1 telegrams: framing, CRC16, COSEM line parsing and readings. Pure, no I/O.

A telegram is ASCII::

    /XXX5<identification>\\r\\n
    \\r\\n
    1-3:0.2.8(50)\\r\\n
    0-0:1.0.0(240701121530S)\\r\\n
    1-0:1.8.1(001234.567*kWh)\\r\\n
    ...
    !ABCD\\r\\n

DSMR 4 and 5 (and the Belgian e-MUCS and Luxembourg Smarty variants built on DSMR 5)
end with ``!`` and a CRC16 (CRC-16/ARC: polynomial 0xA001 reflected, initial value 0)
over every byte from ``/`` through ``!``, as four upper-case hex digits. DSMR 2.2 and
3 end with a bare ``!``. :class:`TelegramFramer` cuts a byte stream into telegrams,
:func:`parse_telegram` checks and parses one, :func:`telegram_readings` turns it
into :class:`~ledger.Reading` values (only codes of :mod:`drivers.quantities`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from drivers.obisvalue import MeterTime, parse_meter_time, parse_value, vocabulary_unit
from ledger import ClockSource, Quality, Reading, format_obis, parse_obis
from ledger.errors import FrameError


class CrcError(FrameError):
    """A telegram's CRC does not match its bytes; ``expected`` is what the meter sent."""

    def __init__(self, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"CRC mismatch (telegram says {expected:04X}, computed {actual:04X})")


# --- variants -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variant:
    """What one DSMR version or national variant looks like on the wire."""

    name: str
    description: str
    baudrate: int
    bytesize: int
    parity: str
    crc: bool | None
    """True: a CRC is required; False: none is sent; None: checked when present."""
    interval_s: float
    """Nominal seconds between telegrams."""


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("v2.2", "DSMR 2.2 (NL, 2008)", 9600, 7, "E", False, 10.0),
        Variant("v3", "DSMR 3.0 (NL)", 9600, 7, "E", False, 10.0),
        Variant("v4", "DSMR 4.x (NL)", 115200, 8, "N", True, 10.0),
        Variant("v5", "DSMR 5.0 (NL)", 115200, 8, "N", True, 1.0),
        Variant("be", "e-MUCS / Fluvius (BE), DSMR 5 based", 115200, 8, "N", True, 1.0),
        Variant("lu", "Smarty (LU), DSMR 5 based, decrypted telegrams", 115200, 8, "N",
                True, 10.0),
        Variant("auto", "any version; 115200 8N1 unless set; CRC checked when sent",
                115200, 8, "N", None, 10.0),
    )
}


def variant(name: str) -> Variant:
    """The :class:`Variant` called ``name``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    try:
        return VARIANTS[name]
    except KeyError:
        raise KeyError(f"unknown DSMR variant {name!r} (known: {', '.join(VARIANTS)})"
                       ) from None


# --- CRC --------------------------------------------------------------------------------


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/ARC of ``data`` (poly 0xA001 reflected, init 0, no final XOR).

    Check value: ``crc16(b"123456789") == 0xBB3D``.
    """
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """Close a telegram body (``/`` ... up to and including ``!``) with its CRC line."""
    return body + b"%04X\r\n" % crc16(body)


# --- framing ----------------------------------------------------------------------------


@dataclass
class FramerStats:
    """What the framer dropped; the meter folds these into its own counters."""

    garbage_bytes: int = 0
    """Bytes outside any telegram (after the first telegram start was seen)."""
    sync_bytes: int = 0
    """Bytes dropped before the first ``/`` since the framer was (re)started."""
    truncated: int = 0
    """Telegrams cut short by a new ``/`` or by exceeding the size limit."""


@dataclass
class TelegramFramer:
    """Cut a byte stream into raw telegrams (``/`` through the line after ``!``).

    Feed bytes as they arrive; complete telegrams come back whole, in order. Bytes
    between telegrams are counted as garbage; a telegram interrupted by a new ``/``
    or longer than ``max_telegram_bytes`` is counted as truncated and dropped.
    """

    max_telegram_bytes: int = 16_384
    stats: FramerStats = field(default_factory=FramerStats)
    _buf: bytearray = field(default_factory=bytearray)
    _synced: bool = False

    def resync(self) -> None:
        """Forget partial data (after a port flush): bytes before the next ``/`` are
        counted as ``sync_bytes``, not garbage."""
        self._buf.clear()
        self._synced = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the telegrams it completed."""
        out: list[bytes] = []
        self._buf += data
        while True:
            start = self._buf.find(b"/")
            if start < 0:
                self._drop(len(self._buf))
                return out
            if start:
                self._drop(start)
            # buffer now starts with "/"
            bang = self._buf.find(b"!", 1)
            restart = self._buf.find(b"/", 1, bang if bang >= 0 else len(self._buf))
            if restart >= 0:
                self.stats.truncated += 1
                self.stats.garbage_bytes += restart
                del self._buf[:restart]
                continue
            if bang < 0:
                if len(self._buf) > self.max_telegram_bytes:
                    self.stats.truncated += 1
                    self._drop(len(self._buf))
                return out
            eol = self._buf.find(b"\n", bang)
            if eol < 0:
                if len(self._buf) - bang > 8:  # "!" + 4 hex + CRLF never needs more
                    eol = bang + 8
                else:
                    return out
            out.append(bytes(self._buf[: eol + 1]))
            del self._buf[: eol + 1]
            self._synced = True

    def _drop(self, n: int) -> None:
        if self._synced:
            self.stats.garbage_bytes += n
        else:
            self.stats.sync_bytes += n
        del self._buf[:n]


# --- parsing ----------------------------------------------------------------------------

_HEADER_RE = re.compile(r"^/([A-Za-z]{3})(\d)(.{1,96})$")
_VALUE = r"\(([ -'*-~]*)\)"  # printable ASCII except parentheses
_LINE_RE = re.compile(r"^(\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3})((?:" + _VALUE + r")+)$")
_CONT_RE = re.compile(r"^((?:" + _VALUE + r")+)$")
_GROUP_RE = re.compile(_VALUE)
_CRC_RE = re.compile(r"^!([0-9A-Fa-f]{4})?$")


@dataclass(frozen=True, slots=True)
class CosemObject:
    """One telegram line: OBIS code and the texts of its parenthesised values."""

    obis: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Telegram:
    """A checked, parsed telegram."""

    header: str
    """Identification line without ``/`` (``ISk5\\2MT382-1000``)."""
    objects: tuple[CosemObject, ...]
    crc: int | None
    """The CRC the meter sent (verified), or None when the telegram carries none."""
    unparsed: tuple[str, ...] = ()
    """Lines that are not COSEM objects (kept only when a CRC vouched for them)."""
    raw: bytes = b""

    def get(self, obis: str) -> CosemObject | None:
        """The first object with this OBIS code, or None."""
        code = format_obis(parse_obis(obis))
        for obj in self.objects:
            if obj.obis == code:
                return obj
        return None

    @property
    def version(self) -> str | None:
        """P1 version (``1-3:0.2.8``; Belgian ``0-0:96.1.4``), None for DSMR 2.2/3."""
        for code in ("1-3:0.2.8", "0-0:96.1.4"):
            obj = self.get(code)
            if obj and obj.values:
                return obj.values[0]
        return None


def _obis(text: str) -> str | None:
    try:
        return format_obis(parse_obis(text))
    except ValueError:  # a group over 255
        return None


def parse_telegram(raw: bytes, *, crc: bool | None = None) -> Telegram:
    """Check and parse one raw telegram (``/`` through the line after ``!``).

    ``crc`` says whether a CRC is required (True), absent (False) or checked when
    present (None), as :attr:`Variant.crc`. A telegram without a CRC must consist of
    well-formed lines only, since nothing else vouches for it.

    Raises:
        CrcError: the CRC does not match (carries ``expected`` and ``actual``).
        FrameError: missing or
            unexpected CRC, not ASCII, bad header, or malformed lines.
    """
    bang = raw.rfind(b"!")
    if not raw.startswith(b"/") or bang < 0:
        raise FrameError("not a DSMR telegram (must start with '/' and end with '!')")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FrameError(f"telegram has a non-ASCII byte at offset {exc.start}") from None
    tail = text[bang:].rstrip("\r\n")
    m = _CRC_RE.match(tail)
    if not m or not text.endswith("\n"):
        raise FrameError(f"telegram end {tail!r} is neither '!' nor '!' + 4 hex digits")
    sent = int(m.group(1), 16) if m.group(1) else None
    if sent is None and crc:
        raise FrameError("telegram has no CRC but this DSMR variant requires one")
    if sent is not None:
        actual = crc16(raw[: bang + 1])
        if actual != sent:
            raise CrcError(sent, actual)
    lines = text[:bang].replace("\r\n", "\n").split("\n")
    hm = _HEADER_RE.match(lines[0])
    if not hm:
        raise FrameError(f"bad identification line {lines[0][:40]!r}")
    objects: list[CosemObject] = []
    unparsed: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        lm = _LINE_RE.match(line)
        code = _obis(lm.group(1)) if lm else None
        if lm and code:
            objects.append(CosemObject(code, tuple(_GROUP_RE.findall(lm.group(2)))))
            continue
        cm = _CONT_RE.match(line)
        if cm and objects:  # DSMR 2.2/3 gas: the value on the line after 0-n:24.3.0
            last = objects[-1]
            objects[-1] = CosemObject(last.obis, last.values + tuple(_GROUP_RE.findall(line)))
            continue
        if sent is None:
            raise FrameError(f"malformed line {number} {line[:40]!r} in a telegram without CRC")
        unparsed.append(line)
    return Telegram(lines[0][1:], tuple(objects), sent, tuple(unparsed), raw)


# --- readings ---------------------------------------------------------------------------

METER_TIME = "0-0:1.0.0"


def _reading(meter_id: str, obis: str, text: str, ts: int, clock: ClockSource,
             quality: int) -> Reading | None:
    unit = vocabulary_unit(obis)
    if unit is None:
        return None
    try:
        v = parse_value(text)
    except ValueError:
        return None
    if v.unit != unit:
        return None
    try:
        return Reading.make(meter_id, obis, v.value, v.exponent, v.unit, ts, clock, quality)
    except ValueError:  # out of the ledger's range (value over 64 bits, ...)
        return None


def _time(text: str) -> MeterTime | None:
    try:
        return parse_meter_time(text)
    except ValueError:
        return None


def telegram_readings(t: Telegram, meter_id: str, now_ms: int) -> list[Reading]:
    """Readings of the quantities in ``t`` that :mod:`drivers.quantities` knows.

    Electricity values are stamped with the meter time ``0-0:1.0.0`` (clock METER,
    quality METER_DST when its flag is ``S``), or with ``now_ms`` (clock GATEWAY)
    when the telegram has no meter time (DSMR 2.2/3). M-Bus values (gas
    ``0-n:24.2.1``, Belgian ``0-n:24.2.3``) and maximum demand ``1-0:1.6.0`` carry
    their own timestamp. The DSMR 2.2/3 gas object ``0-n:24.3.0`` becomes
    ``0-n:24.2.1`` (the code it names) with its unflagged timestamp. Values in an
    unknown unit, unknown codes and unreadable timestamps are left out.
    """
    ts, clock, quality = now_ms, ClockSource.GATEWAY, 0
    mt_obj = t.get(METER_TIME)
    mt = _time(mt_obj.values[0]) if mt_obj and mt_obj.values else None
    if mt is not None:
        ts, clock = mt.utc_ms, ClockSource.METER
        quality = int(Quality.METER_DST) if mt.meter_dst else 0
    out: list[Reading] = []
    for obj in t.objects:
        vals = obj.values
        r: Reading | None = None
        if len(vals) == 1:
            r = _reading(meter_id, obj.obis, vals[0], ts, clock, quality)
        elif len(vals) == 2:  # (timestamp)(value): M-Bus value, maximum demand
            own = _time(vals[0])
            if own is not None:
                q = int(Quality.METER_DST) if own.meter_dst else 0
                r = _reading(meter_id, obj.obis, vals[1], own.utc_ms, ClockSource.METER, q)
        elif len(vals) == 7 and obj.obis.endswith(":24.3.0"):
            # (time)(status)(period)(count)(obis)(unit)(value), DSMR 2.2/3 gas
            own = _time(vals[0])
            if own is not None:
                q = int(Quality.METER_DST) if own.meter_dst else 0
                code = _obis(vals[4])
                r = _reading(meter_id, code, f"{vals[6]}*{vals[5]}", own.utc_ms,
                             ClockSource.METER, q) if code else None
        if r is not None:
            out.append(r)
    return _net_reactive(t, out)


def _net_reactive(t: Telegram, readings: list[Reading]) -> list[Reading]:
    """The vocabulary's ``1-0:3.7.0`` is signed net reactive power; Smarty sends Q+ as
    3.7.0 and Q- as 4.7.0, so 3.7.0 becomes Q+ - Q- when both are present."""
    q_minus_obj = t.get("1-0:4.7.0")
    if q_minus_obj is None or len(q_minus_obj.values) != 1:
        return readings
    try:
        q_minus = parse_value(q_minus_obj.values[0])
    except ValueError:
        return readings
    out = []
    for r in readings:
        if r.obis == "1-0:3.7.0" and q_minus.unit == r.unit:
            exp = min(r.exponent, q_minus.exponent)
            value = r.value * 10 ** (r.exponent - exp) - q_minus.value * 10 ** (
                q_minus.exponent - exp)
            try:
                r = Reading.make(r.meter_id, r.obis, value, exp, r.unit, r.timestamp_ms,
                                 r.clock, r.quality)
            except ValueError:
                continue  # out of range: leave the quantity out rather than misreport it
        out.append(r)
    return out
