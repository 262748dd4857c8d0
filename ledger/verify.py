"""Verification: one block, the link between blocks, and a whole chain, in the spec's order
of checks (docs/ledger-format.md section 9). Everything an attacker's bytes reach is here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import nacl.exceptions
import nacl.public
import nacl.signing

from ledger.blocks import Block, Header
from ledger.constants import LEAF_PREFIX
from ledger.ed25519 import signature_error
from ledger.errors import (
    BrokenLinkError,
    ChainError,
    CountMismatchError,
    HeightError,
    KeyChangeError,
    MalformedError,
    MerkleMismatchError,
    PayloadHashMismatchError,
    SignatureError,
    TimeError,
)
from ledger.merkle import _sha256, header_hash, merkle_root, payload_hash
from ledger.readings import (
    PayloadEncoding,
    is_canonical_reading,
    reading_encoding_error,
    split_payload,
)


def verify_signature(header: Header, signature: bytes) -> bytes:
    """Check the gateway's signature over the header; return the block hash.

    The strict rule of the spec (section 6.2: ``S < L``, canonical and not small-order
    ``A`` and ``R``) is checked by :mod:`ledger.ed25519` before libsodium's equation.

    Raises:
        SignatureError: the signature does not verify.
    """
    bhash = header_hash(header.encode())
    why = signature_error(header.gateway_key, signature)
    if why is not None:
        raise SignatureError(f"{why} (key {header.gateway_key.hex()})", height=header.height)
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

    Start from genesis (``head=None``), from a trusted head (e.g. a replica's stored
    head), or from a trusted height ``start_height`` > 0 whose head is unknown (an export
    or ledger whose older blocks were pruned: the first block must have that height and is
    not linked to anything, section 9). ``gateway_key`` pins the expected key; otherwise
    the first block's key is adopted. Feed blocks in order with :meth:`add` (or raw
    records with :meth:`add_record`). A failing block leaves the head unchanged, and the
    error's ``height`` is the chain position that failed (``next_height``), whatever
    height the bad block claims.
    """

    def __init__(self, head: ChainHead | None = None, gateway_key: bytes | None = None,
                 *, start_height: int = 0) -> None:
        if head is not None and start_height:
            raise ValueError("give a trusted head or a start height, not both")
        self.head = head
        self.start_height = start_height
        self.gateway_key = gateway_key if gateway_key is not None else (
            head.header.gateway_key if head else None
        )

    @property
    def next_height(self) -> int:
        """The height the next block must have."""
        return self.start_height if self.head is None else self.head.header.height + 1

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
            if header.height != self.start_height:
                what = "genesis" if self.start_height == 0 else f"height {self.start_height}"
                raise HeightError(f"chain does not start at {what}", expected=self.start_height,
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
