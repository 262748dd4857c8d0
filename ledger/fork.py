"""Fork evidence: two different headers signed by one key at one height."""

from __future__ import annotations

from ledger.blocks import Header
from ledger.errors import (
    ForkError,
)
from ledger.verify import verify_signature

# --- fork evidence ---------------------------------------------------------------------


def verify_fork(a: Header, sig_a: bytes, b: Header, sig_b: bytes) -> int:
    """Check fork evidence: two different headers, one key, one height, both signed.

    Returns the height of the fork.

    Raises:
        ForkError: the evidence does not show a fork.
        SignatureError: one of the signatures does not verify.
    """
    if a.gateway_key != b.gateway_key:
        raise ForkError("headers are signed by different keys")
    if a.height != b.height:
        raise ForkError(f"headers are at different heights ({a.height}, {b.height})")
    if a.encode() == b.encode():
        raise ForkError("headers are identical", height=a.height)
    verify_signature(a, sig_a)
    verify_signature(b, sig_b)
    return a.height
