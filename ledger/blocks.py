"""Blocks: the signed 194-byte header, the record (header, signature, payload) and sealing
a block from readings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import nacl.exceptions
import nacl.public
import nacl.signing

from ledger.constants import (
    _HEADER,
    _U32,
    FORMAT_VERSION,
    HASH_SIZE,
    HEADER_MAGIC,
    HEADER_SIZE,
    KEY_SIZE,
    MAX_PAYLOAD_SIZE,
    MAX_READINGS_PER_BLOCK,
    MAX_TIMESTAMP_MS,
    SIGNATURE_SIZE,
    ZERO_HASH,
)
from ledger.errors import (
    MalformedError,
    UnsupportedVersionError,
)
from ledger.merkle import header_hash, merkle_root, payload_hash
from ledger.readings import PayloadEncoding, Reading, _encode_entries
from ledger.sealed import seal_payload

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


def decode_bare_header(data: bytes) -> Header:
    """Decode a header that travels without its record (inclusion proofs, fork evidence).

    The checks of section 8.1 of docs/ledger-format.md: magic, version, exactly
    ``HEADER_SIZE`` bytes, the field rules. A header that does not decode names no
    height, so the error carries none (not the height the bytes claim).

    Raises:
        MalformedError, UnsupportedVersionError: it does not decode.
    """
    try:
        return Header.decode(data)
    except (MalformedError, UnsupportedVersionError) as exc:
        exc.height = None
        exc.args = (exc._render(),)
        raise


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
