"""The portable export file and the inclusion proof file (``docs/export-format.md``).

Both are pure: they read from and write to file objects handed in, and open nothing.

Export file (all integers big-endian)::

    magic "MCEXPORT" (8) | version u16 = 1 | reserved u16 = 0 | first height u64 | count u64
    count x ( u32 length | block record )
    "MCEXEND\\0" (8) | SHA-256 of every byte before this digest (32)

and nothing after. The block records are ``agent.ledger.Block.encode()``; the digest makes
any change to the file detectable even where the signed chain would not show it (the
file header, the framing). Authenticity comes from the signed, hash-linked blocks.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from agent import ledger
from agent.errors import MalformedError, MismatchError, UnsupportedVersionError
from agent.ledger import Block, ChainHead, ChainVerifier, InclusionProof, Reading

EXPORT_MAGIC = b"MCEXPORT"
EXPORT_VERSION = 1
TRAILER_MAGIC = b"MCEXEND\x00"
_HEAD = struct.Struct(">8sHHQQ")
EXPORT_HEADER_SIZE = _HEAD.size  # 28
_U32 = struct.Struct(">I")
MAX_RECORD = ledger.HEADER_SIZE + ledger.SIGNATURE_SIZE + 4 + ledger.MAX_PAYLOAD_SIZE
PROOF_FORMAT = "meterchain-inclusion-proof-v1"


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
            if not ledger.HEADER_SIZE + ledger.SIGNATURE_SIZE + 4 <= n <= MAX_RECORD:
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
                raise ledger.HeightError("first block is not at the announced height",
                                         expected=first_height, actual=block.height,
                                         height=block.height)
            if gateway_key is not None and block.header.gateway_key != gateway_key:
                raise ledger.KeyChangeError("block signed by a different gateway key",
                                            expected=gateway_key,
                                            actual=block.header.gateway_key, height=block.height)
            verifier = ChainVerifier(ChainHead(block.header, ledger.verify_block(block)))
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


# --- inclusion proof file -------------------------------------------------------------


def proof_to_json(proof: InclusionProof) -> str:
    """The proof file text: a JSON object with hex fields (see docs/export-format.md)."""
    doc = {
        "format": PROOF_FORMAT,
        "height": proof.header.height,
        "block_hash": ledger.header_hash(proof.header.encode()).hex(),
        "index": proof.index,
        "header": proof.header.encode().hex(),
        "signature": proof.signature.hex(),
        "reading": proof.encoded_reading.hex(),
        "path": [p.hex() for p in proof.path],
    }
    return json.dumps(doc, indent=2) + "\n"


_PROOF_FIELDS = {"format", "height", "block_hash", "index", "header", "signature", "reading",
                 "path"}


def _hex(doc: dict[str, Any], key: str) -> bytes:
    v = doc[key]
    if not isinstance(v, str):
        raise MalformedError(f"proof field {key!r} must be a hex string")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise MalformedError(f"proof field {key!r} is not hex") from None


def proof_from_json(text: str | bytes) -> InclusionProof:
    """Parse a proof file strictly (every field required, no unknown ones).

    Raises:
        MalformedError: not a proof file of this format.
        MismatchError: the informational ``height``/``block_hash`` disagree with the header.
    """
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedError(f"proof file is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedError("proof file must hold a JSON object")
    if doc.get("format") != PROOF_FORMAT:
        raise MalformedError(f"proof format is {doc.get('format')!r}, want {PROOF_FORMAT!r}")
    if set(doc) != _PROOF_FIELDS:
        missing, extra = _PROOF_FIELDS - set(doc), set(doc) - _PROOF_FIELDS
        raise MalformedError(f"proof fields wrong: missing {sorted(missing)}, "
                             f"unknown {sorted(extra)}")
    for key in ("height", "index"):
        if type(doc[key]) is not int or doc[key] < 0:
            raise MalformedError(f"proof field {key!r} must be a non-negative integer")
    if not isinstance(doc["path"], list):
        raise MalformedError("proof field 'path' must be a list of hex strings")
    header = ledger.Header.decode(_hex(doc, "header"))
    if doc["height"] != header.height:
        raise MismatchError("proof height differs from its header", expected=header.height,
                            actual=doc["height"], height=header.height)
    bhash = ledger.header_hash(header.encode())
    if _hex(doc, "block_hash") != bhash:
        raise MismatchError("proof block_hash differs from its header's hash", expected=bhash,
                            actual=_hex(doc, "block_hash"), height=header.height)
    path = tuple(_hex({"p": p}, "p") for p in doc["path"])
    return InclusionProof(header, _hex(doc, "signature"), doc["index"], _hex(doc, "reading"),
                          path)


def verify_proof_text(text: str | bytes, gateway_key: bytes | None = None
                      ) -> tuple[InclusionProof, Reading]:
    """Parse and verify a proof file; return the proof and the proven reading.

    Raises:
        ChainError: the file is malformed or the proof does not verify.
    """
    proof = proof_from_json(text)
    return proof, proof.verify(gateway_key)
