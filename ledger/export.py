"""The portable export file and the inclusion proof file (``docs/export-format.md``).

Both are pure: they read from and write to file objects handed in, and open nothing.

Export file (all integers big-endian)::

    magic "MCEXPORT" (8) | version u16 = 1 | reserved u16 = 0 | first height u64 | count u64
    count x ( u32 length | block record )
    "MCEXEND\\0" (8) | SHA-256 of every byte before this digest (32)

and nothing after. The block records are ``ledger.Block.encode()``; the digest makes
any change to the file detectable even where the signed chain would not show it (the
file header, the framing). Authenticity comes from the signed, hash-linked blocks.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from ledger.blocks import Block
from ledger.constants import HEADER_SIZE, MAX_PAYLOAD_SIZE, SIGNATURE_SIZE
from ledger.errors import (
    HeightError,
    KeyChangeError,
    MalformedError,
    MismatchError,
    UnsupportedVersionError,
)
from ledger.verify import ChainHead, ChainVerifier, verify_block

EXPORT_MAGIC = b"MCEXPORT"
EXPORT_VERSION = 1
TRAILER_MAGIC = b"MCEXEND\x00"
_HEAD = struct.Struct(">8sHHQQ")
EXPORT_HEADER_SIZE = _HEAD.size  # 28
_U32 = struct.Struct(">I")
MAX_RECORD = HEADER_SIZE + SIGNATURE_SIZE + 4 + MAX_PAYLOAD_SIZE


# --- export --------------------------------------------------------------------------


class _HashingWriter:
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.written = 0

    def write(self, data: bytes) -> None:
        self.sha.update(data)
        self.out.write(data)
        self.written += len(data)


def write_export(out: IO[bytes], records: Iterable[bytes], first_height: int, count: int) -> int:
    """Write an export of ``count`` block records starting at ``first_height``.

    Returns the bytes written.

    Raises:
        ValueError: the records do not number ``count`` or do not start at ``first_height``.
    """
    w = _HashingWriter(out)
    w.write(_HEAD.pack(EXPORT_MAGIC, EXPORT_VERSION, 0, first_height, count))
    n = 0
    for rec in records:
        if n == 0 and int.from_bytes(rec[38:46], "big") != first_height:
            raise ValueError(f"first record is not at height {first_height}")
        w.write(_U32.pack(len(rec)))
        w.write(rec)
        n += 1
    if n != count:
        raise ValueError(f"export announced {count} records but got {n}")
    w.write(TRAILER_MAGIC)
    digest = w.sha.digest()
    out.write(digest)
    return w.written + len(digest)


class _HashingReader:
    def __init__(self, src: IO[bytes]) -> None:
        self.src = src
        self.sha = hashlib.sha256()
        self.pos = 0

    def read_exact(self, n: int, what: str, height: int | None = None) -> bytes:
        data = self.src.read(n)
        if len(data) != n:
            raise MalformedError(
                f"export is truncated: file ends inside {what} (offset {self.pos + len(data)})",
                height=height,
            )
        self.sha.update(data)
        self.pos += n
        return data


@dataclass(frozen=True)
class ExportHeader:
    first_height: int
    count: int


def read_export(src: IO[bytes]) -> tuple[ExportHeader, Iterator[bytes]]:
    """Parse the file header; return it and an iterator over the block records.

    The iterator checks the framing, the trailer, the digest and that nothing follows,
    raising when it reaches a problem (so consume it fully).

    Raises:
        MalformedError: bad magic, truncation, bad lengths, digest mismatch, trailing bytes.
        UnsupportedVersionError: an export version this code does not know.
    """
    r = _HashingReader(src)
    head = src.read(EXPORT_HEADER_SIZE)
    if not head or not EXPORT_MAGIC.startswith(head[: len(EXPORT_MAGIC)]):
        raise MalformedError(f"not a meterchain export (starts {head[:8]!r}, "
                             f"want {EXPORT_MAGIC!r})")
    if len(head) < EXPORT_HEADER_SIZE:
        raise MalformedError(f"export is truncated: file ends inside the file header "
                             f"(offset {len(head)})")
    r.sha.update(head)
    r.pos = len(head)
    magic, version, reserved, first, count = _HEAD.unpack(head)
    if version != EXPORT_VERSION:
        raise UnsupportedVersionError("unsupported export version", expected=EXPORT_VERSION,
                                      actual=version)
    if reserved != 0:
        raise MalformedError(f"reserved header field is {reserved}, must be 0")
    if first >= 2**63 or count >= 2**63:
        raise MalformedError("first height or count out of range")

    def records() -> Iterator[bytes]:
        for i in range(count):
            h = first + i
            (n,) = _U32.unpack(r.read_exact(4, f"the length of record {i}", h))
            if not HEADER_SIZE + SIGNATURE_SIZE + 4 <= n <= MAX_RECORD:
                raise MalformedError(f"record length {n} out of range", height=h)
            yield r.read_exact(n, f"record {i}", h)
        trailer = r.read_exact(len(TRAILER_MAGIC), "the trailer")
        if trailer != TRAILER_MAGIC:
            raise MalformedError(f"bad trailer {trailer!r} after {count} records")
        want = r.sha.digest()
        got = src.read(32)
        if len(got) != 32:
            raise MalformedError("export is truncated: file ends inside the digest")
        if got != want:
            raise MismatchError("export digest does not match its contents",
                                expected=want, actual=got)
        extra = src.read(1)
        if extra:
            raise MalformedError("trailing bytes after the export's digest")

    return ExportHeader(first, count), records()


@dataclass(frozen=True)
class VerifyResult:
    """What a verification found: heights checked, readings and the head."""

    first_height: int
    head: ChainHead | None
    blocks: int
    readings: int


def verify_records(
    records: Iterable[bytes],
    first_height: int,
    *,
    gateway_key: bytes | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Verify block records in height order, from genesis or from ``first_height``.

    A chain that starts above genesis (older blocks pruned) is verified from its first
    block, which is checked on its own (signature and contents), not linked to genesis.

    Raises:
        ChainError: naming the first failing height and why.
    """
    verifier = ChainVerifier(gateway_key=gateway_key)
    blocks = readings = 0
    for rec in records:
        block = Block.decode(rec)
        if blocks == 0 and first_height > 0:
            if block.height != first_height:
                raise HeightError("first block is not at the announced height",
                                         expected=first_height, actual=block.height,
                                         height=block.height)
            if gateway_key is not None and block.header.gateway_key != gateway_key:
                raise KeyChangeError("block signed by a different gateway key",
                                            expected=gateway_key,
                                            actual=block.header.gateway_key, height=block.height)
            verifier = ChainVerifier(ChainHead(block.header, verify_block(block)))
        else:
            verifier.add(block)
        blocks += 1
        readings += block.header.reading_count
        if progress is not None:
            progress(block.height)
    return VerifyResult(first_height, verifier.head, blocks, readings)


def verify_export(src: IO[bytes], *, gateway_key: bytes | None = None) -> VerifyResult:
    """Verify a whole export: framing, digest and the signed chain inside.

    Raises:
        ChainError: the first problem found, with the height where known.
    """
    header, records = read_export(src)
    result = verify_records(records, header.first_height, gateway_key=gateway_key)
    if result.blocks != header.count:  # read_export enforces it; kept as a guard
        raise MismatchError("record count", expected=header.count, actual=result.blocks)
    return result
