"""Reading a block's contents and proving one reading: inclusion proofs."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.blocks import Block, Header, decode_bare_header
from ledger.errors import (
    DecryptError,
    KeyChangeError,
    MalformedError,
    ProofError,
)
from ledger.merkle import inclusion_proof, leaf_hash, verify_inclusion
from ledger.readings import PayloadEncoding, Reading, decode_reading, encode_reading
from ledger.sealed import open_payload
from ledger.verify import check_plain_payload, verify_block, verify_signature

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


def verify_proof_parts(header: bytes, signature: bytes, index: int, encoded_reading: bytes,
                       path: tuple[bytes, ...], gateway_key: bytes | None = None) -> Reading:
    """Verify an inclusion proof given as bytes (section 11): the bare header decodes
    (section 8.1; no height when it does not), then :meth:`InclusionProof.verify`.

    Raises:
        ChainError: any check fails.
    """
    proof = InclusionProof(decode_bare_header(header), signature, index, encoded_reading, path)
    return proof.verify(gateway_key)
