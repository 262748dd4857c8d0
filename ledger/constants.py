"""Constants of the block format (docs/ledger-format.md): magic, version, domain
prefixes, sizes and limits, and the fixed layouts of headers and readings."""

from __future__ import annotations

import hashlib
import re
import struct

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
