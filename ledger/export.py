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

from ledger.blocks import MAX_HEIGHT
from ledger.constants import HEADER_SIZE, MAX_PAYLOAD_SIZE, SIGNATURE_SIZE
from ledger.errors import (
    DigestMismatchError,
    MalformedError,
    UnsupportedVersionError,
)
from ledger.verify import ChainHead, ChainVerifier

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

    def read_exact(self, n: int, what: str, height: int | None) -> bytes:
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


def _file_header(src: IO[bytes]) -> tuple[_HashingReader, ExportHeader]:
    """Check the 28-byte file header in the spec's order; no height is known yet.

    Raises:
        MalformedError: magic, length, reserved field or ranges.
        UnsupportedVersionError: an export version this code does not know.
    """
    r = _HashingReader(src)
    head = src.read(EXPORT_HEADER_SIZE)
    if head and len(head) < len(EXPORT_MAGIC) and EXPORT_MAGIC.startswith(head):
        raise MalformedError(f"export is truncated: file ends inside the magic "
                             f"(offset {len(head)})")
    if len(head) < len(EXPORT_MAGIC) or head[: len(EXPORT_MAGIC)] != EXPORT_MAGIC:
        raise MalformedError(f"not a meterchain export (starts {head[:8]!r}, "
                             f"want {EXPORT_MAGIC!r})")
    if len(head) < len(EXPORT_MAGIC) + 2:
        raise MalformedError(f"export is truncated: file ends inside the file header "
                             f"(offset {len(head)})")
    version = int.from_bytes(head[8:10], "big")
    if version != EXPORT_VERSION:
        raise UnsupportedVersionError("unsupported export version", expected=EXPORT_VERSION,
                                      actual=version)
    if len(head) < EXPORT_HEADER_SIZE:
        raise MalformedError(f"export is truncated: file ends inside the file header "
                             f"(offset {len(head)})")
    r.sha.update(head)
    r.pos = len(head)
    _, _, reserved, first, count = _HEAD.unpack(head)
    if reserved != 0:
        raise MalformedError(f"reserved header field is {reserved}, must be 0")
    if first > MAX_HEIGHT or count > MAX_HEIGHT + 1 - first:
        raise MalformedError(f"first height {first} and count {count} go past the highest "
                             f"height 2**63-1")
    return r, ExportHeader(first, count)


def read_export(src: IO[bytes]) -> tuple[ExportHeader, Iterator[bytes]]:
    """Parse the file header; return it and an iterator over the block records.

    The iterator checks each record's framing, then the trailer, the digest and that
    nothing follows, raising when it reaches a problem (so consume it fully). Errors
    after the file header carry the chain position: ``first + i`` for record ``i``,
    ``first + count`` for the trailer, the digest and trailing bytes
    (docs/export-format.md, "Verifying an export").

    Raises:
        MalformedError: bad magic, truncation, bad lengths, trailer or trailing bytes.
        UnsupportedVersionError: an export version this code does not know.
        DigestMismatchError: the digest does not match the bytes before it.
    """
    r, header = _file_header(src)
    first, count = header.first_height, header.count

    def records() -> Iterator[bytes]:
        for i in range(count):
            h = first + i
            (n,) = _U32.unpack(r.read_exact(4, f"the length of record {i}", h))
            if not HEADER_SIZE + SIGNATURE_SIZE + 4 <= n <= MAX_RECORD:
                raise MalformedError(f"record length {n} out of range", height=h)
            yield r.read_exact(n, f"record {i}", h)
        end = first + count
        trailer = r.read_exact(len(TRAILER_MAGIC), "the trailer", end)
        if trailer != TRAILER_MAGIC:
            raise MalformedError(f"bad trailer {trailer!r} after {count} records", height=end)
        want = r.sha.digest()
        got = src.read(32)
        if len(got) != 32:
            raise MalformedError("export is truncated: file ends inside the digest",
                                 height=end)
        if got != want:
            raise DigestMismatchError("export digest does not match its contents",
                                      expected=want, actual=got, height=end)
        if src.read(1):
            raise MalformedError("trailing bytes after the export's digest", height=end)

    return header, records()


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

    A chain that starts above genesis (older blocks pruned) starts from a trusted height
    (section 9 of docs/ledger-format.md): its first record must have height
    ``first_height`` and is not linked to anything before it. Every error carries the
    chain position, whatever height the bad record claims.

    Raises:
        ChainError: naming the first failing height and why.
    """
    verifier = ChainVerifier(gateway_key=gateway_key, start_height=first_height)
    blocks = readings = 0
    for rec in records:
        head = verifier.add_record(rec)
        blocks += 1
        readings += head.header.reading_count
        if progress is not None:
            progress(head.height)
    return VerifyResult(first_height, verifier.head, blocks, readings)


def verify_export(src: IO[bytes], *, gateway_key: bytes | None = None) -> VerifyResult:
    """Verify a whole export: file header, then each record's framing and the chain in
    file order, then the trailer, the digest and the end of the file.

    The digest is checked last: a changed record is reported by the chain rule it breaks.

    Raises:
        ChainError: the first problem found; no height for the file header, otherwise
            the chain position.
    """
    header, records = read_export(src)
    return verify_records(records, header.first_height, gateway_key=gateway_key)
