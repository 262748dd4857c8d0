"""API tokens: how they look, how they are stored (as hashes only) and checked.

A token is ``mct_<id>_<secret>``: ``id`` is 16 hex characters (8 random bytes) that
name the token in listings and revocations, ``secret`` 64 hex characters (32 random
bytes, 256 bits). The replica stores the id, the scopes and the SHA-256 of the whole
token text, never the token: it is shown once, when created. A presented token is
looked up by its id and its hash compared in constant time (:func:`hmac.compare_digest`).

Used by ``meterchain replica token create|list|revoke`` and by the access check of
every HTTP request (:mod:`replica.access`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from replica.auth import SCOPES
from replica.errors import EnrollmentError
from replica.storage.base import Storage, TokenRecord

PREFIX = "mct_"
_TOKEN_RE = re.compile(r"mct_([0-9a-f]{16})_[0-9a-f]{64}")
MAX_NAME = 200


def token_hash(text: str) -> bytes:
    """SHA-256 of the token text (what the replica stores)."""
    return hashlib.sha256(text.encode("ascii")).digest()


def parse_token_id(text: str) -> str | None:
    """The id part of a well-formed token, or ``None`` when ``text`` is not one."""
    m = _TOKEN_RE.fullmatch(text)
    return m.group(1) if m else None


def check_token(text: str, record: TokenRecord | None) -> bool:
    """Whether ``text`` is the token ``record`` was made for and it is not revoked."""
    expected = record.hash if record is not None else b"\0" * 32
    ok = hmac.compare_digest(token_hash(text), expected)
    return ok and record is not None and record.revoked_ms is None


def parse_scopes(values: list[str]) -> tuple[str, ...]:
    """Scopes from the command line (repeated or comma-separated), checked and sorted.

    Raises:
        EnrollmentError: none given, or one is unknown.
    """
    scopes: set[str] = set()
    for v in values:
        for s in v.split(","):
            s = s.strip()
            if not s:
                continue
            if s not in SCOPES:
                raise EnrollmentError("--scope", f"unknown scope {s!r} (want one of "
                                      f"{', '.join(SCOPES)})")
            scopes.add(s)
    if not scopes:
        raise EnrollmentError("--scope", f"give at least one scope ({', '.join(SCOPES)})")
    return tuple(sorted(scopes))


def create_token(storage: Storage, name: str, scopes: tuple[str, ...],
                 now_ms: int) -> tuple[str, TokenRecord]:
    """Make a new token, store its hash; return the token text (to show once) and record.

    Raises:
        EnrollmentError: bad name or scopes.
    """
    if not name.strip() or len(name) > MAX_NAME:
        raise EnrollmentError("--name", f"must be 1..{MAX_NAME} characters")
    for s in scopes:
        if s not in SCOPES:
            raise EnrollmentError("--scope", f"unknown scope {s!r}")
    token_id = secrets.token_hex(8)
    text = f"{PREFIX}{token_id}_{secrets.token_hex(32)}"
    rec = TokenRecord(token_id, name.strip(), scopes, token_hash(text), now_ms, None)
    storage.add_token(rec)
    return text, rec


def revoke_token(storage: Storage, token_id: str, now_ms: int) -> TokenRecord:
    """Revoke a token by its id (or by the whole token text).

    Raises:
        EnrollmentError: no such token.
    """
    tid = parse_token_id(token_id.strip()) or token_id.strip()
    if not re.fullmatch(r"[0-9a-f]{16}", tid):
        raise EnrollmentError("TOKEN_ID", "want the token's 16-hex-character id as "
                              "'meterchain replica token list' shows it")
    return storage.revoke_token(tid, now_ms)
