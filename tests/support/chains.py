"""Deterministic test chains built with the real ledger core (fixed keys, no randomness).

Used by the replica, forwarder, mirror and audit tests and by ``bench/replica.py``::

    blocks = make_chain(b"gw-1", n_blocks=5, readings_per_block=3)
    more = make_chain(b"gw-1", 3, 3, prev=blocks[-1])          # continues the chain
    key_hex = gateway_key(b"gw-1").hex()

A ``seed`` of any length is stretched with SHA-256 into the gateway's 32-byte Ed25519
seed, so short readable seeds give fixed, distinct keys. Salts and ephemeral keys are
derived from the seed and height, so the same arguments always give the same bytes.
"""

from __future__ import annotations

import base64
import hashlib

import nacl.public
import nacl.signing

from ledger import Block, Reading, seal_block

DEFAULT_START_MS = 1_700_000_000_000
"""2023-11-14T22:13:20Z: the first block's start time unless told otherwise."""
DEFAULT_BLOCK_SPAN_MS = 60_000
"""Each block covers one minute unless told otherwise."""


def signing_seed(seed: bytes) -> bytes:
    """The gateway's 32-byte Ed25519 seed for a test ``seed`` of any length."""
    return seed if len(seed) == 32 else hashlib.sha256(b"meterchain-test-gw" + seed).digest()


def gateway_key(seed: bytes) -> bytes:
    """The gateway's 32-byte Ed25519 public key for a test ``seed``."""
    return bytes(nacl.signing.SigningKey(signing_seed(seed)).verify_key)


def utility_keypair(seed: bytes = b"utility") -> tuple[bytes, bytes]:
    """A fixed X25519 key pair ``(secret, public)`` for sealed-payload tests."""
    sk = nacl.public.PrivateKey(hashlib.sha256(b"meterchain-test-utility" + seed).digest())
    return bytes(sk), bytes(sk.public_key)


def make_readings(meter_id: str, height: int, count: int, start_ms: int, span_ms: int
                  ) -> list[Reading]:
    """``count`` import-energy readings spread over one block's time span."""
    step = max(span_ms // max(count, 1), 1)
    return [
        Reading.make(meter_id, "1-0:1.8.0", 1_000_000 + height * 1_000 + i, 0, "Wh",
                     min(start_ms + i * step, start_ms + span_ms))
        for i in range(count)
    ]


def make_chain(
    seed: bytes,
    n_blocks: int,
    readings_per_block: int,
    *,
    start_ms: int = DEFAULT_START_MS,
    span_ms: int = DEFAULT_BLOCK_SPAN_MS,
    recipient_key: bytes | None = None,
    prev: Block | None = None,
    meter_id: str = "meter-1",
) -> list[Block]:
    """Seal ``n_blocks`` consecutive blocks signed by the key derived from ``seed``.

    Starts at genesis, or after ``prev`` (then block ``k`` after it starts at
    ``prev``'s end plus ``k * span_ms``). With ``recipient_key`` (X25519 public key)
    every payload is sealed to it with random-looking but fixed salts and ephemeral keys.

    Raises:
        ValueError: the arguments give readings or times out of range.
    """
    sk = signing_seed(seed)
    out: list[Block] = []
    header = prev.header if prev is not None else None
    base = start_ms if prev is None else prev.header.time_end_ms
    for k in range(n_blocks):
        height = 0 if header is None else header.height + 1
        t0 = base + k * span_ms
        t1 = t0 + span_ms - 1 if span_ms > 0 else t0
        readings = make_readings(meter_id, height, readings_per_block, t0, t1 - t0)
        if recipient_key is None:
            salts = [bytes(16)] * len(readings)
            eph = None
        else:
            salts = [_derive(sk, b"salt", height, i)[:16] for i in range(len(readings))]
            eph = _derive(sk, b"ephemeral", height, 0)
        block = seal_block(sk, header, readings, salts, t0, t1,
                           recipient_key=recipient_key, ephemeral_sk=eph)
        out.append(block)
        header = block.header
    return out


def encode_b64(blocks: list[Block]) -> list[str]:
    """Block records as the replica protocol carries them (standard base64, padded)."""
    return [base64.b64encode(b.encode()).decode("ascii") for b in blocks]


def _derive(sk: bytes, label: bytes, height: int, index: int) -> bytes:
    return hashlib.sha256(label + sk + height.to_bytes(8, "big") + index.to_bytes(4, "big")
                          ).digest()
