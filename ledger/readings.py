"""Readings: OBIS codes, the Reading value, and their canonical encoding (docs/ledger-format.md
sections on readings and payloads)."""

from __future__ import annotations

import enum
import functools
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.constants import (
    _OBIS_RE,
    _READING_TIME,
    _READING_VALUE,
    _U16,
    _UNIT_RE,
    LEAF_PREFIX,
    MAX_METER_ID_BYTES,
    MAX_TIMESTAMP_MS,
    MAX_UNIT_BYTES,
    SALT_SIZE,
)
from ledger.errors import (
    MalformedError,
)
from ledger.merkle import _sha256


class PayloadEncoding(enum.IntEnum):
    """How a block's readings are carried."""

    PLAIN = 0
    """The payload is the readings' canonical encoding."""
    SEALED = 1
    """The payload is the plain payload sealed (crypto_box_seal) to an X25519 key."""


class ClockSource(enum.IntEnum):
    """Which clock stamped a reading."""

    GATEWAY = 0
    METER = 1


class Quality(enum.IntFlag):
    """Quality flags of a reading (u16 bit field)."""

    NONE = 0
    GATEWAY_CLOCK_UNSYNCED = 0x0001
    """The gateway clock was not known to be synchronised when the reading was taken."""
    CLOCK_STEP = 0x0002
    """A gateway clock step was detected since the previous reading of this meter."""
    METER_DST = 0x0004
    """The meter reported daylight saving time for its timestamp."""
    COUNTER_RESET = 0x0008
    """The meter's counter went backwards since its previous reading (reset or swap)."""
    ROUNDED = 0x0010
    """The meter reported a floating-point value that was rounded to an integer."""


KNOWN_QUALITY_BITS = 0x001F


# --- OBIS codes ------------------------------------------------------------------------


def parse_obis(code: str) -> bytes:
    """Parse ``A-B:C.D.E`` or ``A-B:C.D.E*F`` to its 6-byte form (F defaults to 255).

    Raises:
        ValueError: the text is not an OBIS code or a group is over 255.
    """
    m = _OBIS_RE.match(code)
    if not m:
        raise ValueError(f"not an OBIS code (want A-B:C.D.E or A-B:C.D.E*F): {code!r}")
    groups = [int(g) for g in m.groups(default="255")]
    if any(g > 255 for g in groups):
        raise ValueError(f"OBIS group over 255: {code!r}")
    return bytes(groups)


def format_obis(raw: bytes) -> str:
    """The canonical text of a 6-byte OBIS code (``*F`` omitted when F is 255)."""
    a, b, c, d, e, f = raw
    text = f"{a}-{b}:{c}.{d}.{e}"
    return text if f == 255 else f"{text}*{f}"


# --- readings --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured quantity: ``value * 10**exponent`` ``unit`` at ``timestamp_ms``.

    ``obis`` is the canonical OBIS text (``1-0:1.8.0``); construct readings through
    :meth:`make` to normalise it. Values are integers: floats are never hashed or signed.
    """

    meter_id: str
    obis: str
    value: int
    exponent: int
    unit: str
    timestamp_ms: int
    clock: ClockSource = ClockSource.GATEWAY
    quality: int = 0

    @classmethod
    def make(
        cls,
        meter_id: str,
        obis: str,
        value: int,
        exponent: int,
        unit: str,
        timestamp_ms: int,
        clock: ClockSource = ClockSource.GATEWAY,
        quality: int = 0,
    ) -> Reading:
        """Build and validate a reading. Raises ``ValueError`` naming the bad field."""
        r = cls(
            meter_id,
            format_obis(parse_obis(obis)),
            value,
            exponent,
            unit,
            timestamp_ms,
            ClockSource(clock),
            int(quality),
        )
        encode_reading(r, bytes(SALT_SIZE))  # validates every field
        return r

    @property
    def decimal(self) -> str:
        """The value as exact decimal text, e.g. ``230.4`` for 2304e-1."""
        return format_decimal(self.value, self.exponent)


def format_decimal(value: int, exponent: int) -> str:
    """Exact decimal text of ``value * 10**exponent`` (no float involved), as
    docs/ledger-format.md section 3.1 defines it: ``230.4``, ``7000``, ``-0.005``, ``0``."""
    sign = "-" if value < 0 else ""
    digits = str(abs(value))
    if exponent >= 0:
        return sign + digits + "0" * exponent if value else "0"
    places = -exponent
    digits = digits.rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


@functools.lru_cache(maxsize=4096)
def _text_fields(meter_id: str, obis: str, unit: str) -> tuple[bytes, bytes]:
    """Validated encodings of a reading's text fields: (meter id length + meter id + OBIS,
    unit). Cached because a gateway's readings repeat a few combinations endlessly.

    Raises:
        ValueError: a field is out of its documented range (not cached).
    """
    mid = meter_id.encode("utf-8")
    if not 1 <= len(mid) <= MAX_METER_ID_BYTES:
        raise ValueError(f"meter_id must be 1..{MAX_METER_ID_BYTES} UTF-8 bytes: {meter_id!r}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in meter_id):
        raise ValueError(f"meter_id must not contain control characters: {meter_id!r}")
    unit_bytes = unit.encode("ascii", "strict") if unit.isascii() else b"\xff"
    if len(unit_bytes) > MAX_UNIT_BYTES or not _UNIT_RE.fullmatch(unit):
        raise ValueError(f"unit must be 0..{MAX_UNIT_BYTES} of [A-Za-z0-9%/]: {unit!r}")
    return bytes((len(mid),)) + mid + parse_obis(obis), unit_bytes


_CLOCKS: dict[int, ClockSource] = {int(c): c for c in ClockSource}


def encode_reading(r: Reading, salt: bytes) -> bytes:
    """Canonical bytes of a reading with its 16-byte salt (the Merkle leaf data).

    Raises:
        ValueError: a field is out of its documented range.
    """
    if not isinstance(salt, bytes | bytearray) or len(salt) != SALT_SIZE:
        raise ValueError(f"salt must be {SALT_SIZE} bytes, got {salt!r:.40}")
    if not isinstance(r.meter_id, str) or not isinstance(r.unit, str):
        raise ValueError("meter_id and unit must be text")
    prefix, unit = _text_fields(r.meter_id, r.obis, r.unit)
    value, exponent, ts, quality = r.value, r.exponent, r.timestamp_ms, r.quality
    if type(value) is not int or not -(2**63) <= value < 2**63:
        raise ValueError(f"value must be an integer in signed 64-bit range: {value!r}")
    if type(exponent) is not int or not -128 <= exponent <= 127:
        raise ValueError(f"exponent must be an integer in -128..127: {exponent!r}")
    if type(ts) is not int or not 0 <= ts <= MAX_TIMESTAMP_MS:
        raise ValueError(f"timestamp_ms must be an integer in 0..2**63-1: {ts!r}")
    if not isinstance(quality, int) or not 0 <= quality <= KNOWN_QUALITY_BITS:
        raise ValueError(f"quality must be an integer of known flag bits: {quality!r}")
    try:
        clock = _CLOCKS[r.clock]
    except (KeyError, TypeError):
        raise ValueError(f"clock must be a clock source (0 gateway, 1 meter): {r.clock!r}"
                         ) from None
    return b"".join(
        (
            salt,
            prefix,
            _READING_VALUE.pack(value, exponent, len(unit)),
            unit,
            _READING_TIME.pack(ts, clock, quality),
        )
    )


@functools.lru_cache(maxsize=4096)
def _record_packer(meter_id: str, obis: str, unit: str) -> tuple[struct.Struct, bytes, bytes]:
    """A struct packing one payload entry (u16 length + encoded reading) for readings
    with these text fields, and the fields' encodings. Raises like :func:`_text_fields`."""
    prefix, unit_bytes = _text_fields(meter_id, obis, unit)
    value_fmt, time_fmt = _READING_VALUE.format[1:], _READING_TIME.format[1:]
    fmt = f">H{SALT_SIZE}s{len(prefix)}s{value_fmt}{len(unit_bytes)}s{time_fmt}"
    return struct.Struct(fmt), prefix, unit_bytes


def _encode_entries(readings: Sequence[Reading], salts: Sequence[bytes]
                    ) -> tuple[bytes, list[bytes]]:
    """The plain payload of ``readings`` and their Merkle leaf hashes, in one pass.

    Gives the same bytes as :func:`encode_payload` over :func:`encode_reading` (the tests
    compare them); a reading the fast path cannot vouch for is handed to
    :func:`encode_reading`, which either encodes it or raises naming the bad field.

    Raises:
        ValueError: a field is out of its documented range.
    """
    entries = []
    leaves = []
    sha256 = _sha256
    leaf = LEAF_PREFIX
    for r, salt in zip(readings, salts, strict=True):
        entry = None
        value, exponent, ts, quality, clock = (r.value, r.exponent, r.timestamp_ms,
                                               r.quality, r.clock)
        try:
            if (type(value) is int and type(exponent) is int and type(ts) is int
                    and type(salt) is bytes and len(salt) == SALT_SIZE
                    and type(r.meter_id) is str and type(r.unit) is str
                    and isinstance(quality, int) and 0 <= quality <= KNOWN_QUALITY_BITS
                    and ts <= MAX_TIMESTAMP_MS and clock in _CLOCKS):
                st, prefix, unit = _record_packer(r.meter_id, r.obis, r.unit)
                entry = st.pack(st.size - 2, salt, prefix, value, exponent, len(unit), unit,
                                ts, clock, quality)
        except (struct.error, ValueError, TypeError):
            entry = None  # out of range: encode_reading below names the field
        if entry is None:
            encoded = encode_reading(r, bytes(salt))
            entry = _U16.pack(len(encoded)) + encoded
        entries.append(entry)
        leaves.append(sha256(leaf + entry[2:]).digest())
    return b"".join(entries), leaves


def decode_reading(data: bytes) -> tuple[Reading, bytes]:
    """Decode canonical reading bytes to ``(reading, salt)``.

    Raises:
        MalformedError: the bytes are not exactly one canonical reading.
    """
    try:
        salt = data[:SALT_SIZE]
        pos = SALT_SIZE
        mlen = data[pos]
        pos += 1
        meter_id = data[pos : pos + mlen].decode("utf-8")
        pos += mlen
        obis = format_obis(data[pos : pos + 6])
        pos += 6
        value, exponent, ulen = _READING_VALUE.unpack_from(data, pos)
        pos += _READING_VALUE.size
        unit = data[pos : pos + ulen].decode("ascii")
        pos += ulen
        ts, clock, quality = _READING_TIME.unpack_from(data, pos)
        pos += _READING_TIME.size
        reading = Reading(meter_id, obis, value, exponent, unit, ts, ClockSource(clock), quality)
    except (IndexError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise MalformedError(f"reading does not decode: {exc}") from None
    if pos != len(data):
        raise MalformedError(f"reading has {len(data) - pos} trailing byte(s)")
    try:
        canonical = encode_reading(reading, salt)
    except ValueError as exc:
        raise MalformedError(f"reading out of range: {exc}") from None
    if canonical != data:
        raise MalformedError("reading is not in canonical form")
    return reading, salt


_READING_MIN_SIZE = SALT_SIZE + 1 + 1 + 6 + _READING_VALUE.size + _READING_TIME.size  # 45
_AFTER_ID = 6 + _READING_VALUE.size + _READING_TIME.size  # obis, value, exponent, ulen, tail
_ASCII_ID_RE = re.compile(rb"[\x20-\x7e]{1,%d}" % MAX_METER_ID_BYTES)
_CONTROL_RE = re.compile(rb"[\x00-\x1f\x7f]")
_UNIT_BYTES_RE = re.compile(rb"[A-Za-z0-9%%/]{0,%d}" % MAX_UNIT_BYTES)
_TAIL_UNPACK = _READING_TIME.unpack_from
_UNKNOWN_QUALITY = 0xFFFF & ~KNOWN_QUALITY_BITS


def reading_encoding_error(data: bytes) -> str | None:
    """Why ``data`` is not one canonical reading, or ``None`` when it is.

    A structural check that accepts exactly the bytes :func:`decode_reading` accepts
    (decode, then re-encode and compare), without building a :class:`Reading`; the
    test suite checks the two agree. :func:`is_canonical_reading` falls back to it.
    """
    n = len(data)
    if n < _READING_MIN_SIZE:
        return f"reading is {n} bytes, shorter than the minimum {_READING_MIN_SIZE}"
    mlen = data[SALT_SIZE]
    if not 1 <= mlen <= MAX_METER_ID_BYTES:
        return f"meter id length {mlen} is not in 1..{MAX_METER_ID_BYTES}"
    p = SALT_SIZE + 1 + mlen
    if n < p + _AFTER_ID:
        return f"reading is {n} bytes, too short for its {mlen}-byte meter id"
    ulen = data[p + 15]
    if n != p + _AFTER_ID + ulen:
        return f"reading is {n} bytes, its length fields say {p + _AFTER_ID + ulen}"
    mid = data[SALT_SIZE + 1 : p]
    if _ASCII_ID_RE.fullmatch(mid) is None:
        try:
            mid.decode("utf-8")
        except UnicodeDecodeError:
            return "meter id is not well-formed UTF-8"
        if _CONTROL_RE.search(mid):
            return "meter id contains a control character"
    if ulen and _UNIT_BYTES_RE.fullmatch(data, p + 16, p + 16 + ulen) is None:
        return f"unit must be 0..{MAX_UNIT_BYTES} of [A-Za-z0-9%/]"
    ts, clock, quality = _TAIL_UNPACK(data, n - _READING_TIME.size)
    if ts > MAX_TIMESTAMP_MS:
        return f"timestamp {ts} is over 2**63-1"
    if clock > 1:
        return f"unknown clock source {clock}"
    if quality & _UNKNOWN_QUALITY:
        return f"quality has unknown bits: {quality:#x}"
    return None


def _reading_pattern(mlen: int) -> re.Pattern[bytes]:
    """One regex matching exactly the canonical readings with an ``mlen``-byte ASCII meter id.

    Salt (any 16 bytes), the length byte, printable ASCII id, OBIS + value + exponent
    (any 15 bytes), unit length byte with that many unit characters, timestamp with
    the top bit clear, clock 0 or 1, quality with only known bits. Non-ASCII ids do
    not match and go to :func:`reading_encoding_error`.
    """
    unit = rb"[A-Za-z0-9%/]"
    units = b"|".join(
        re.escape(bytes((n,))) + unit + b"{%d}" % n for n in range(MAX_UNIT_BYTES + 1)
    )
    # the known quality bits are contiguous from bit 0 (0x001F), so a byte range says it
    if KNOWN_QUALITY_BITS & (KNOWN_QUALITY_BITS + 1) or KNOWN_QUALITY_BITS > 0xFF:
        raise ValueError("quality pattern needs contiguous low known bits")
    quality = re.escape(bytes((KNOWN_QUALITY_BITS,)))
    return re.compile(
        rb"(?s).{16}" + re.escape(bytes((mlen,))) + rb"[\x20-\x7e]{%d}.{15}(?:" % mlen + units
        + rb")[\x00-\x7f].{7}[\x00\x01]\x00[\x00-" + quality + rb"]"
    )


_READING_PATTERNS: tuple[re.Pattern[bytes] | None, ...] = (None,) + tuple(
    _reading_pattern(m) for m in range(1, MAX_METER_ID_BYTES + 1)
) + (None,) * (255 - MAX_METER_ID_BYTES)


def is_canonical_reading(data: bytes) -> bool:
    """True when ``data`` is exactly one canonical reading (the spec's section 3.2).

    A precompiled regex per meter-id length decides the common case in one call;
    anything it does not match is decided by :func:`reading_encoding_error`.
    """
    if len(data) > SALT_SIZE:
        pattern = _READING_PATTERNS[data[SALT_SIZE]]
        if pattern is not None and pattern.fullmatch(data) is not None:
            return True
    return reading_encoding_error(data) is None


def encode_payload(encoded_readings: Sequence[bytes]) -> bytes:
    """The plain payload: each encoded reading prefixed by its u16 length."""
    return b"".join(_U16.pack(len(r)) + r for r in encoded_readings)


def split_payload(payload: bytes) -> list[bytes]:
    """Split a plain payload into its encoded readings (not yet decoded).

    Raises:
        MalformedError: a length prefix runs past the end of the payload.
    """
    out = []
    pos = 0
    end = len(payload)
    while pos < end:
        if pos + 2 > end:
            raise MalformedError("payload ends inside a reading length")
        (n,) = _U16.unpack_from(payload, pos)
        pos += 2
        if pos + n > end:
            raise MalformedError("payload ends inside a reading")
        out.append(payload[pos : pos + n])
        pos += n
    return out
