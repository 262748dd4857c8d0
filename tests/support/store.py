"""Helpers for store, export and CLI tests: a fixed gateway key and quick valid chains."""

from __future__ import annotations

from pathlib import Path

import ledger
from ledger import Block, Header
from meterchain.demo import SyntheticMeters, seal_chain

SEED = bytes(range(32))
"""Fixed Ed25519 seed of the test gateway (tests only)."""

START_MS = 1_767_225_600_000


def make_blocks(n: int, *, prev: Header | None = None, meters: int = 1,
                seed: bytes = SEED) -> list[Block]:
    """``n`` valid signed blocks after ``prev`` (genesis when None)."""
    return list(seal_chain(seed, SyntheticMeters(meters, seed=1), n, prev=prev,
                           start_ms=START_MS))


def write_key_file(directory: Path, seed: bytes = SEED) -> Path:
    """Write ``gateway.key`` (0600) holding ``seed``; return its path."""
    path = directory / "gateway.key"
    path.write_text(f"meterchain-ed25519-secret-key-v1\n{seed.hex()}\n")
    path.chmod(0o600)
    return path


def public_key(seed: bytes = SEED) -> bytes:
    import nacl.signing

    return bytes(nacl.signing.SigningKey(seed).verify_key)


def chain_hashes(blocks: list[Block]) -> list[bytes]:
    return [ledger.header_hash(b.header.encode()) for b in blocks]
