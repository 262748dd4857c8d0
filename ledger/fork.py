"""Fork evidence: two different headers signed by one key at one height."""

from __future__ import annotations

from ledger.blocks import Header, decode_bare_header
from ledger.errors import (
    ForkError,
)
from ledger.verify import verify_signature

# --- fork evidence ---------------------------------------------------------------------


def verify_fork(a: Header, sig_a: bytes, b: Header, sig_b: bytes) -> int:
    """Check fork evidence: two different headers, one key, one height, both signed.

    Returns the height of the fork. Every failure is reported at header ``a``'s height
    (docs/ledger-format.md section 12).

    Raises:
        ForkError: the evidence does not show a fork.
        SignatureError: one of the signatures does not verify.
    """
    if a.gateway_key != b.gateway_key:
        raise ForkError("headers are signed by different keys", height=a.height)
    if a.height != b.height:
        raise ForkError(f"headers are at different heights ({a.height}, {b.height})",
                        height=a.height)
    if a.encode() == b.encode():
        raise ForkError("headers are identical", height=a.height)
    verify_signature(a, sig_a)
    verify_signature(b, sig_b)
    return a.height


def verify_fork_parts(a: bytes, sig_a: bytes, b: bytes, sig_b: bytes) -> int:
    """:func:`verify_fork` on header bytes: both must decode as bare headers first
    (section 8.1; an undecodable header is reported without a height).

    Raises:
        ChainError: a header does not decode, or as :func:`verify_fork`.
    """
    return verify_fork(decode_bare_header(a), sig_a, decode_bare_header(b), sig_b)
