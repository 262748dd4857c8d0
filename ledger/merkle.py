"""Domain-separated hashes and the RFC 6962 Merkle tree over reading leaves, with
inclusion proofs."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ledger.constants import (
    EMPTY_ROOT,
    HASH_SIZE,
    HEADER_PREFIX,
    LEAF_PREFIX,
    NODE_PREFIX,
    PAYLOAD_PREFIX,
)
from ledger.errors import (
    ProofError,
)

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
