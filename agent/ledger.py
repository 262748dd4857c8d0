"""The ledger core: canonical encoding, Merkle tree, blocks, chain and proof verification.

This module is pure: bytes and values in, bytes and values out. It opens no file or
socket and reads no clock; time and randomness are arguments. The agent, the replica
and the offline verifier all use it, so there is exactly one definition of a valid
chain. ``docs/ledger-format.md`` is the normative description of every byte produced
and accepted here; ``tests/vectors/`` holds test vectors generated from fixed keys.

Layout of a block record (all integers big-endian)::

    header (194 bytes) | signature (64) | payload length (u32) | payload

Every hash is SHA-256 over a one-byte domain prefix and the data, so a reading leaf,
a Merkle node, a block header and a payload never hash alike.

Verifying: ``verify_records(records)`` (raw records, decoding included) or
``verify_chain(blocks)``; both return the new :class:`ChainHead` or raise a
``ChainError`` whose ``reason`` is a stable code and whose ``height`` is the chain
position that failed. The order of checks is the spec's (section 9), so every
implementation reports the same reason for the same bytes.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import nacl.exceptions
import nacl.public
import nacl.signing
from nacl.encoding import RawEncoder
from nacl.hash import blake2b

from agent.errors import (
    BrokenLinkError,
    ChainError,
    CountMismatchError,
    DecryptError,
    ForkError,
    HeightError,
    KeyChangeError,
    MalformedError,
    MerkleMismatchError,
    PayloadHashMismatchError,
    ProofError,
    SignatureError,
    TimeError,
    UnsupportedVersionError,
)

# --- constants of the format ----------------------------------------------------------

FORMAT_VERSION = 1
"""Version of the block format defined here; the header's version byte."""

HEADER_MAGIC = b"MCHB"

LEAF_PREFIX = b"\x00"
"""Domain prefix of a reading leaf hash (as RFC 6962 leaves)."""
NODE_PREFIX = b"\x01"
"""Domain prefix of an interior Merkle node hash (as RFC 6962 nodes)."""
HEADER_PREFIX = b"\x02"
"""Domain prefix of a block header hash (the block hash, which is signed)."""
PAYLOAD_PREFIX = b"\x03"
"""Domain prefix of the payload hash (over plain or sealed payload bytes)."""

HASH_SIZE = 32
SALT_SIZE = 16
KEY_SIZE = 32
SIGNATURE_SIZE = 64
ZERO_HASH = bytes(HASH_SIZE)
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Merkle root of zero readings: SHA-256 of the empty string (RFC 6962)."""

MAX_READINGS_PER_BLOCK = 65_535
MAX_PAYLOAD_SIZE = 16 * 1024 * 1024
MAX_METER_ID_BYTES = 64
MAX_UNIT_BYTES = 16
MAX_TIMESTAMP_MS = 2**63 - 1

_HEADER = struct.Struct(">4sBB32sQ32sQQI32s32s32s")
HEADER_SIZE = _HEADER.size  # 194
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
# reading tail after salt, meter id and obis: value, exponent, unit length
_READING_VALUE = struct.Struct(">qbB")
_READING_TIME = struct.Struct(">QBH")

_UNIT_RE = re.compile(r"[A-Za-z0-9%/]*")
_OBIS_RE = re.compile(r"^(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\*(\d{1,3}))?$")


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
    """Exact decimal text of ``value * 10**exponent`` (no float involved)."""
    sign = "-" if value < 0 else ""
    digits = str(abs(value))
    if exponent >= 0:
        return sign + digits + "0" * exponent
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


# --- hashing and the Merkle tree --------------------------------------------------------

_sha256 = hashlib.sha256


def leaf_hash(encoded_reading: bytes) -> bytes:
    """SHA-256(0x00 || encoded reading)."""
    return _sha256(LEAF_PREFIX + encoded_reading).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return _sha256(NODE_PREFIX + left + right).digest()


def payload_hash(payload: bytes) -> bytes:
    """SHA-256(0x03 || payload bytes as carried, plain or sealed)."""
    return _sha256(PAYLOAD_PREFIX + payload).digest()


def header_hash(header_bytes: bytes) -> bytes:
    """SHA-256(0x02 || canonical header): the block hash, which the gateway signs."""
    return _sha256(HEADER_PREFIX + header_bytes).digest()


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash over leaf hashes (``EMPTY_ROOT`` for none).

    Computed bottom-up: pairs are hashed left to right and a lone last node is carried
    up unchanged, which gives the same root as RFC 6962's recursive definition.
    """
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    sha256, node = _sha256, NODE_PREFIX
    while len(level) > 1:
        pairs = iter(level)  # zip(pairs, pairs) walks the level two at a time
        nxt = [sha256(node + a + b).digest() for a, b in zip(pairs, pairs, strict=False)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _split_point(n: int) -> int:
    """Largest power of two strictly less than ``n`` (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path (RFC 6962 section 2.1.1) for leaf ``index`` among ``leaves`` (leaf hashes).

    Raises:
        ValueError: ``index`` is out of range.
    """
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf index {index} out of range for {len(leaves)} leaves")

    def path(m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _split_point(n)
        if m < k:
            return path(m, lo, lo + k) + [merkle_root(leaves[lo + k : hi])]
        return path(m - k, lo + k, hi) + [merkle_root(leaves[lo : lo + k])]

    return path(index, 0, len(leaves))


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Recompute the root from a leaf hash and its audit path (RFC 9162 2.1.3.2).

    Raises:
        ProofError: the proof has the wrong shape for ``index`` and ``size``.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} out of range for tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if len(p) != HASH_SIZE:
            raise ProofError(f"proof element is {len(p)} bytes, want {HASH_SIZE}")
        if sn == 0:
            raise ProofError("proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    encoded_reading: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``encoded_reading`` is leaf ``index`` of the tree with ``root``.

    Raises:
        ProofError: it is not.
    """
    got = root_from_inclusion(leaf_hash(encoded_reading), index, size, proof)
    if got != root:
        raise ProofError(f"proof leads to root {got.hex()}, header says {root.hex()}")


# --- sealed payloads -------------------------------------------------------------------


def seal_payload(plain: bytes, recipient_pk: bytes, ephemeral_sk: bytes) -> bytes:
    """Seal ``plain`` to an X25519 public key, as libsodium's ``crypto_box_seal``.

    The ephemeral secret key is an argument so sealing is deterministic for test
    vectors; callers pass 32 fresh random bytes. The result opens with
    ``nacl.public.SealedBox(recipient_sk).decrypt``.
    """
    esk = nacl.public.PrivateKey(ephemeral_sk)
    epk = bytes(esk.public_key)
    nonce = blake2b(epk + recipient_pk, digest_size=24, encoder=RawEncoder)
    box = nacl.public.Box(esk, nacl.public.PublicKey(recipient_pk))
    return epk + box.encrypt(plain, nonce).ciphertext


def open_payload(sealed: bytes, recipient_sk: bytes) -> bytes:
    """Open a sealed payload with the utility's X25519 secret key.

    Raises:
        DecryptError: the key is wrong or the ciphertext was altered.
    """
    try:
        return nacl.public.SealedBox(nacl.public.PrivateKey(recipient_sk)).decrypt(sealed)
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise DecryptError(f"sealed payload does not open with this key: {exc}") from None


# --- blocks ----------------------------------------------------------------------------

MAX_HEIGHT = 2**63 - 1
_ENCODINGS = frozenset(int(e) for e in PayloadEncoding)
_MAGIC_VERSION = len(HEADER_MAGIC) + 1
RECORD_OVERHEAD = HEADER_SIZE + SIGNATURE_SIZE + 4
"""Bytes of a block record besides its payload: header, signature, payload length."""


def _check_magic_version(data: bytes) -> None:
    """The first check of a header or record: magic, then version (before any layout).

    Raises:
        MalformedError: fewer than 5 bytes or the wrong magic.
        UnsupportedVersionError: a version other than ``FORMAT_VERSION``.
    """
    if len(data) < _MAGIC_VERSION:
        raise MalformedError(f"{len(data)} bytes cannot hold magic and version")
    if data[:4] != HEADER_MAGIC:
        raise MalformedError(f"magic is {bytes(data[:4])!r}, want {HEADER_MAGIC!r}")
    if data[4] != FORMAT_VERSION:
        raise UnsupportedVersionError(
            "unsupported block format version", expected=FORMAT_VERSION, actual=data[4]
        )



@dataclass(frozen=True, slots=True)
class Header:
    """The signed part of a block; field order is the canonical encoding's."""

    version: int
    payload_encoding: PayloadEncoding
    gateway_key: bytes
    height: int
    prev_hash: bytes
    time_start_ms: int
    time_end_ms: int
    reading_count: int
    merkle_root: bytes
    payload_hash: bytes
    recipient_key: bytes

    def encode(self) -> bytes:
        """The canonical 194-byte header."""
        return _HEADER.pack(
            HEADER_MAGIC,
            self.version,
            self.payload_encoding,
            self.gateway_key,
            self.height,
            self.prev_hash,
            self.time_start_ms,
            self.time_end_ms,
            self.reading_count,
            self.merkle_root,
            self.payload_hash,
            self.recipient_key,
        )

    @classmethod
    def decode(cls, data: bytes) -> Header:
        """Parse a canonical header.

        Raises:
            MalformedError: wrong size, magic or field values.
            UnsupportedVersionError: a version this code does not know.
        """
        _check_magic_version(data)
        if len(data) != HEADER_SIZE:
            raise MalformedError(f"header is {len(data)} bytes, want {HEADER_SIZE}")
        (_, version, enc, key, height, prev, t0, t1, count, root, phash, rkey) = (
            _HEADER.unpack(data)
        )
        header = cls(version, enc, key, height, prev, t0, t1, count, root, phash, rkey)
        header.validate()
        object.__setattr__(header, "payload_encoding", PayloadEncoding(enc))
        return header

    def validate(self) -> None:
        """Check every field is in its documented range (the spec's header checks, in order).

        ``Header.decode`` calls this; :func:`verify_block` calls it for headers built in code.

        Raises:
            UnsupportedVersionError: the version is not ``FORMAT_VERSION``.
            MalformedError: a field is out of range or inconsistent with another.
        """
        height = self.height
        if self.version != FORMAT_VERSION:
            raise UnsupportedVersionError(
                "unsupported block format version", expected=FORMAT_VERSION, actual=self.version
            )
        if self.payload_encoding not in _ENCODINGS:
            raise MalformedError(f"unknown payload encoding {self.payload_encoding}",
                                 height=height)
        for name in ("gateway_key", "prev_hash", "merkle_root", "payload_hash", "recipient_key"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise MalformedError(f"{name} must be {HASH_SIZE} bytes", height=height)
        rkey = self.recipient_key
        if self.payload_encoding == PayloadEncoding.PLAIN and rkey != ZERO_HASH:
            raise MalformedError("plain block must have an all-zero recipient key", height=height)
        if self.payload_encoding == PayloadEncoding.SEALED and rkey == ZERO_HASH:
            raise MalformedError("sealed block must name its recipient key", height=height)
        if not 0 <= height <= MAX_HEIGHT:
            raise MalformedError(f"height {height} is out of range 0..2**63-1", height=height)
        if height == 0 and self.prev_hash != ZERO_HASH:
            raise MalformedError("genesis block must have an all-zero previous hash", height=0)
        if not (0 <= self.time_start_ms <= MAX_TIMESTAMP_MS
                and 0 <= self.time_end_ms <= MAX_TIMESTAMP_MS):
            raise MalformedError("time span out of range 0..2**63-1", height=height)
        if not 0 <= self.reading_count <= MAX_READINGS_PER_BLOCK:
            raise MalformedError(
                f"reading count {self.reading_count} over {MAX_READINGS_PER_BLOCK}", height=height
            )


@dataclass(frozen=True, slots=True)
class Block:
    """A signed block: header, signature and payload (plain or sealed readings)."""

    header: Header
    signature: bytes
    payload: bytes

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def hash(self) -> bytes:
        """The block hash: SHA-256(0x02 || canonical header)."""
        return header_hash(self.header.encode())

    def encode(self) -> bytes:
        """The block record: header | signature | u32 payload length | payload."""
        return b"".join(
            (self.header.encode(), self.signature, _U32.pack(len(self.payload)), self.payload)
        )

    @classmethod
    def decode(cls, data: bytes) -> Block:
        """Parse one block record; the bytes must hold exactly one.

        Raises:
            MalformedError: the record is truncated, too long or its header is malformed.
        """
        _check_magic_version(data)
        fixed = RECORD_OVERHEAD
        if len(data) < fixed:
            raise MalformedError(f"block record is {len(data)} bytes, shorter than {fixed}")
        header = Header.decode(bytes(data[:HEADER_SIZE]))
        sig = bytes(data[HEADER_SIZE : HEADER_SIZE + SIGNATURE_SIZE])
        (plen,) = _U32.unpack_from(data, HEADER_SIZE + SIGNATURE_SIZE)
        if plen > MAX_PAYLOAD_SIZE:
            raise MalformedError(f"payload length {plen} over {MAX_PAYLOAD_SIZE}",
                                 height=header.height)
        if len(data) != fixed + plen:
            raise MalformedError(
                f"block record is {len(data)} bytes, header and length say {fixed + plen}",
                height=header.height,
            )
        return cls(header, sig, bytes(data[fixed:]))


def seal_block(
    signing_key: bytes | nacl.signing.SigningKey,
    prev: Header | None,
    readings: Sequence[Reading],
    salts: Sequence[bytes],
    time_start_ms: int,
    time_end_ms: int,
    *,
    recipient_key: bytes | None = None,
    ephemeral_sk: bytes | None = None,
) -> Block:
    """Seal readings into the block that follows ``prev`` (``None`` for genesis).

    ``signing_key`` is the gateway's 32-byte Ed25519 seed, or a ``SigningKey`` made from
    it (callers sealing many blocks keep one: deriving it costs as much as signing).
    ``salts`` gives one 16-byte salt per reading (random when the payload is sealed, so
    the public Merkle root reveals nothing about low-entropy readings; may be zeros when
    plain). With ``recipient_key`` the payload is sealed to that X25519 key using
    ``ephemeral_sk``.

    Raises:
        ValueError: inputs out of range (bad reading fields, time span, lengths).
    """
    if len(salts) != len(readings):
        raise ValueError(f"{len(readings)} readings but {len(salts)} salts")
    if len(readings) > MAX_READINGS_PER_BLOCK:
        raise ValueError(f"at most {MAX_READINGS_PER_BLOCK} readings per block")
    if not 0 <= time_start_ms <= time_end_ms <= MAX_TIMESTAMP_MS:
        raise ValueError(f"bad time span {time_start_ms}..{time_end_ms}")
    if prev is not None and time_start_ms < prev.time_end_ms:
        raise ValueError(
            f"time span starts at {time_start_ms}, before the previous block ended "
            f"({prev.time_end_ms})"
        )
    sk = (signing_key if isinstance(signing_key, nacl.signing.SigningKey)
          else nacl.signing.SigningKey(signing_key))
    gateway_key = sk.verify_key.encode()
    if prev is not None and gateway_key != prev.gateway_key:
        raise ValueError("signing key is not the key of the chain being extended")
    plain, leaves = _encode_entries(readings, salts)
    root = merkle_root(leaves)
    if recipient_key is None:
        encoding, payload, rkey = PayloadEncoding.PLAIN, plain, ZERO_HASH
    else:
        if ephemeral_sk is None:
            raise ValueError("sealing to a recipient key needs an ephemeral secret key")
        if len(recipient_key) != KEY_SIZE or recipient_key == ZERO_HASH:
            raise ValueError("recipient key must be a 32-byte X25519 public key")
        encoding, rkey = PayloadEncoding.SEALED, bytes(recipient_key)
        payload = seal_payload(plain, rkey, ephemeral_sk)
    header = Header(
        version=FORMAT_VERSION,
        payload_encoding=encoding,
        gateway_key=gateway_key,
        height=0 if prev is None else prev.height + 1,
        prev_hash=ZERO_HASH if prev is None else header_hash(prev.encode()),
        time_start_ms=time_start_ms,
        time_end_ms=time_end_ms,
        reading_count=len(readings),
        merkle_root=root,
        payload_hash=payload_hash(payload),
        recipient_key=rkey,
    )
    signature = sk.sign(header_hash(header.encode())).signature
    return Block(header, signature, payload)


def verify_signature(header: Header, signature: bytes) -> bytes:
    """Check the gateway's signature over the header; return the block hash.

    Raises:
        SignatureError: the signature does not verify.
    """
    bhash = header_hash(header.encode())
    try:
        nacl.signing.VerifyKey(header.gateway_key).verify(bhash, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        raise SignatureError(
            f"signature does not verify for key {header.gateway_key.hex()}", height=header.height
        ) from None
    return bhash


def check_plain_payload(header: Header, payload: bytes) -> list[bytes]:
    """Check a plain payload against the header; return its encoded readings.

    Checks in the order the spec gives: the payload splits into length-prefixed
    readings, their number is the header's reading count, each is canonical, and
    their leaf hashes give the header's Merkle root.

    Raises:
        MalformedError, CountMismatchError, MerkleMismatchError: it does not match.
    """
    h = header.height
    try:
        encoded = split_payload(payload)
    except MalformedError as exc:
        raise MalformedError(exc.message, height=h) from None
    if len(encoded) != header.reading_count:
        raise CountMismatchError(
            "payload reading count differs from header", expected=header.reading_count,
            actual=len(encoded), height=h,
        )
    canonical = is_canonical_reading
    for i, e in enumerate(encoded):
        if not canonical(e):
            raise MalformedError(f"reading {i}: {reading_encoding_error(e)}", height=h)
    root = merkle_root([_sha256(LEAF_PREFIX + e).digest() for e in encoded])
    if root != header.merkle_root:
        raise MerkleMismatchError(
            "readings do not hash to the header's Merkle root", expected=header.merkle_root,
            actual=root, height=h,
        )
    return encoded


def verify_block(block: Block) -> bytes:
    """Check one block on its own: signature, payload hash and (if plain) Merkle root.

    Sealed payloads are checked by their hash only; see :func:`open_block` for the
    key holder's full check. Returns the block hash.

    Raises:
        ChainError: the first check that fails, with the block's height.
    """
    header = block.header
    header.validate()
    bhash = verify_signature(header, block.signature)
    got = payload_hash(block.payload)
    if got != header.payload_hash:
        raise PayloadHashMismatchError(
            "payload bytes do not hash to the header's payload hash",
            expected=header.payload_hash, actual=got, height=header.height,
        )
    if header.payload_encoding == PayloadEncoding.PLAIN:
        check_plain_payload(header, block.payload)
    return bhash


def check_link(prev: Header, prev_hash: bytes, header: Header) -> None:
    """Check that ``header`` may follow ``prev`` (whose hash is ``prev_hash``).

    Raises:
        HeightError, KeyChangeError, BrokenLinkError, TimeError: it may not.
    """
    h = header.height
    if h != prev.height + 1:
        raise HeightError("block height is not the next one", expected=prev.height + 1,
                          actual=h, height=h)
    if header.gateway_key != prev.gateway_key:
        raise KeyChangeError("block signed by a different gateway key",
                             expected=prev.gateway_key, actual=header.gateway_key, height=h)
    if header.prev_hash != prev_hash:
        raise BrokenLinkError("previous-hash field is not the previous block's hash",
                              expected=prev_hash, actual=header.prev_hash, height=h)
    if header.time_start_ms < prev.time_end_ms:
        raise TimeError(
            f"time span starts at {header.time_start_ms}, before the previous block ended "
            f"at {prev.time_end_ms}", height=h,
        )


def check_time(header: Header, now_ms: int, max_future_ms: int) -> None:
    """Check a block's time span is ordered and not beyond ``now_ms + max_future_ms``.

    Raises:
        TimeError: the span is inverted or lies in the future.
    """
    if header.time_start_ms > header.time_end_ms:
        raise TimeError(
            f"time span is inverted ({header.time_start_ms} > {header.time_end_ms})",
            height=header.height,
        )
    if header.time_end_ms > now_ms + max_future_ms:
        raise TimeError(
            f"time span ends at {header.time_end_ms}, more than {max_future_ms} ms after "
            f"now ({now_ms})", height=header.height,
        )


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where a verified chain stands: last header and its hash."""

    header: Header
    hash: bytes

    @property
    def height(self) -> int:
        return self.header.height


class ChainVerifier:
    """Verifies a chain block by block, keeping only the head.

    Start from genesis (``head=None``) or from a trusted head (e.g. a replica's stored
    head). ``gateway_key`` pins the expected key; otherwise the genesis block's key
    is adopted. Feed blocks in order with :meth:`add` (or raw records with
    :meth:`add_record`). A failing block leaves the head unchanged, and the error's
    ``height`` is the chain position that failed (``next_height``), whatever height
    the bad block claims.
    """

    def __init__(self, head: ChainHead | None = None, gateway_key: bytes | None = None) -> None:
        self.head = head
        self.gateway_key = gateway_key if gateway_key is not None else (
            head.header.gateway_key if head else None
        )

    @property
    def next_height(self) -> int:
        """The height the next block must have."""
        return 0 if self.head is None else self.head.header.height + 1

    def add(self, block: Block) -> ChainHead:
        """Verify ``block`` as the next one and advance the head.

        Raises:
            ChainError: the block is invalid or does not follow the head.
        """
        try:
            return self._add(block)
        except ChainError as exc:
            raise exc.at_height(self.next_height) from None

    def add_record(self, record: bytes) -> ChainHead:
        """Decode one block record and :meth:`add` it.

        Raises:
            ChainError: the record is malformed, or the block is invalid or does not follow.
        """
        try:
            block = Block.decode(record)
        except ChainError as exc:
            raise exc.at_height(self.next_height) from None
        return self.add(block)

    def _add(self, block: Block) -> ChainHead:
        header = block.header
        if self.head is None:
            if header.height != 0:
                raise HeightError("chain does not start at genesis", expected=0,
                                  actual=header.height, height=header.height)
        else:
            check_link(self.head.header, self.head.hash, header)
        if self.gateway_key is not None and header.gateway_key != self.gateway_key:
            raise KeyChangeError("block signed by a different gateway key",
                                 expected=self.gateway_key, actual=header.gateway_key,
                                 height=header.height)
        if header.time_start_ms > header.time_end_ms:
            raise TimeError(
                f"time span is inverted ({header.time_start_ms} > {header.time_end_ms})",
                height=header.height,
            )
        bhash = verify_block(block)
        self.gateway_key = header.gateway_key
        self.head = ChainHead(header, bhash)
        return self.head


def verify_chain(
    blocks: Iterable[Block], *, head: ChainHead | None = None, gateway_key: bytes | None = None
) -> ChainHead | None:
    """Verify blocks in order (from genesis, or after ``head``); return the new head.

    Returns ``head`` unchanged (``None`` from genesis) when there are no blocks.

    Raises:
        ChainError: naming the first failing height (chain position) and why.
    """
    v = ChainVerifier(head, gateway_key)
    for block in blocks:
        v.add(block)
    return v.head


def verify_records(
    records: Iterable[bytes], *, head: ChainHead | None = None, gateway_key: bytes | None = None
) -> ChainHead | None:
    """Like :func:`verify_chain` over raw block records (decoding is part of verification).

    A record that does not decode (truncated, trailing bytes, bad magic or version) is
    reported at the height it should have had.

    Raises:
        ChainError: naming the first failing height and why.
    """
    v = ChainVerifier(head, gateway_key)
    for record in records:
        v.add_record(record)
    return v.head


def decode_blocks(records: Iterable[bytes]) -> Iterator[Block]:
    """Decode block records lazily (a convenience for verify_chain).

    A record that does not decode raises ``MalformedError`` without a chain height;
    use :func:`verify_records` to get the failing position.
    """
    for rec in records:
        yield Block.decode(rec)


# --- reading the contents --------------------------------------------------------------


def block_readings(block: Block, recipient_sk: bytes | None = None) -> list[tuple[Reading, bytes]]:
    """The readings of a block with their salts, checked against the header's Merkle root.

    A sealed block needs the utility's X25519 secret key.

    Raises:
        DecryptError: sealed and no or the wrong key.
        ChainError: the contents do not match the header.
    """
    header = block.header
    if header.payload_encoding == PayloadEncoding.SEALED:
        if recipient_sk is None:
            raise DecryptError("block payload is sealed; the utility's key is needed",
                               height=header.height)
        try:
            plain = open_payload(block.payload, recipient_sk)
        except DecryptError as exc:
            raise exc.at_height(header.height) from None
    else:
        plain = block.payload
    encoded = check_plain_payload(header, plain)
    return [decode_reading(e) for e in encoded]


def open_block(block: Block, recipient_sk: bytes) -> list[Reading]:
    """Verify a block fully as the key holder: signature, payload hash, decryption, root.

    Raises:
        ChainError: any check fails.
    """
    verify_block(block)
    return [r for r, _ in block_readings(block, recipient_sk)]


# --- inclusion proofs ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Proof that one reading is in a signed block, revealing no other reading."""

    header: Header
    signature: bytes
    index: int
    encoded_reading: bytes
    path: tuple[bytes, ...]

    def verify(self, gateway_key: bytes | None = None) -> Reading:
        """Check the header's signature (and key, if given) and the audit path.

        Returns the proven reading.

        Raises:
            ChainError: any check fails.
        """
        if gateway_key is not None and self.header.gateway_key != gateway_key:
            raise KeyChangeError("proof is for a different gateway key", expected=gateway_key,
                                 actual=self.header.gateway_key, height=self.header.height)
        verify_signature(self.header, self.signature)
        try:
            verify_inclusion(self.encoded_reading, self.index, self.header.reading_count,
                             self.path, self.header.merkle_root)
        except ProofError as exc:
            raise exc.at_height(self.header.height) from None
        try:
            reading, _ = decode_reading(self.encoded_reading)
        except MalformedError as exc:
            raise exc.at_height(self.header.height) from None
        return reading


def prove_reading(block: Block, index: int, recipient_sk: bytes | None = None) -> InclusionProof:
    """Build the inclusion proof of reading ``index`` of ``block``.

    Raises:
        ValueError: index out of range.
        ChainError: the block's contents do not match its header (or cannot be opened).
    """
    pairs = block_readings(block, recipient_sk)
    encoded = [encode_reading(r, s) for r, s in pairs]
    if not 0 <= index < len(encoded):
        raise ValueError(f"reading index {index} out of range (block has {len(encoded)})")
    leaves = [leaf_hash(e) for e in encoded]
    return InclusionProof(block.header, block.signature, index, encoded[index],
                          tuple(inclusion_proof(leaves, index)))


# --- fork evidence ---------------------------------------------------------------------


def verify_fork(a: Header, sig_a: bytes, b: Header, sig_b: bytes) -> int:
    """Check fork evidence: two different headers, one key, one height, both signed.

    Returns the height of the fork.

    Raises:
        ForkError: the evidence does not show a fork.
        SignatureError: one of the signatures does not verify.
    """
    if a.gateway_key != b.gateway_key:
        raise ForkError("headers are signed by different keys")
    if a.height != b.height:
        raise ForkError(f"headers are at different heights ({a.height}, {b.height})")
    if a.encode() == b.encode():
        raise ForkError("headers are identical", height=a.height)
    verify_signature(a, sig_a)
    verify_signature(b, sig_b)
    return a.height


__all__ = [
    "Block",
    "ChainError",
    "ChainHead",
    "ChainVerifier",
    "ClockSource",
    "Header",
    "InclusionProof",
    "PayloadEncoding",
    "Quality",
    "Reading",
    "block_readings",
    "check_link",
    "check_time",
    "decode_reading",
    "encode_reading",
    "is_canonical_reading",
    "merkle_root",
    "open_block",
    "prove_reading",
    "seal_block",
    "verify_block",
    "verify_chain",
    "verify_fork",
    "verify_records",
]
