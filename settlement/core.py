"""The one place settlement imports the ledger core from (Merkle tree, errors, key files).

Settlement builds on the pure ledger core and the key-file layer just above it only;
keeping the imports here means the core's move to its own package changes one file.
"""

from __future__ import annotations

from agent.errors import ConfigError, ConfigErrors, MeterchainError, ProofError
from agent.keys import load_public_key, load_signing_key
from agent.ledger import (
    HASH_SIZE,
    NODE_PREFIX,
    inclusion_proof,
    merkle_root,
    root_from_inclusion,
)

__all__ = [
    "HASH_SIZE",
    "NODE_PREFIX",
    "ConfigError",
    "ConfigErrors",
    "MeterchainError",
    "ProofError",
    "inclusion_proof",
    "load_public_key",
    "load_signing_key",
    "merkle_root",
    "root_from_inclusion",
]
