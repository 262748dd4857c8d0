"""Enrollment: which gateway keys a replica accepts, and from when it stops accepting them.

Used by ``meterchain replica enroll/revoke/list``. Enrollment writes the replica's
database directly (no HTTP endpoint can enroll), so only whoever runs the replica can
change who is trusted. A revocation has a time: blocks whose span ends before it stay
valid; blocks ending at or after it are refused with 403 ``revoked``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import nacl.bindings

from replica.errors import EnrollmentError
from replica.storage.base import GatewayRecord, Storage

_KEY_RE = re.compile(r"[0-9a-fA-F]{64}")
MAX_NAME = 200
MAX_MS = 2**63 - 1


def parse_pubkey(text: str) -> bytes:
    """A gateway's Ed25519 public key from 64 hex characters.

    Raises:
        EnrollmentError: it is not 64 hex characters.
    """
    t = text.strip()
    if not _KEY_RE.fullmatch(t):
        raise EnrollmentError("PUBKEY", f"want the gateway's public key as 64 hex characters "
                              f"(see the gateway's 'meterchain keygen' output), got {t[:80]!r}")
    key = bytes.fromhex(t)
    try:  # libsodium refuses keys that are not points of the curve (or of small order)
        nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(key)
    except (RuntimeError, ValueError, TypeError):
        raise EnrollmentError("PUBKEY", f"{t} is not a valid Ed25519 public key: check it "
                              "was copied whole from the gateway's gateway.pub") from None
    return key


def parse_time_ms(text: str) -> int:
    """A time as Unix milliseconds or ISO 8601 (no zone means UTC).

    Raises:
        EnrollmentError: neither form.
    """
    t = text.strip()
    if t.isascii() and t.isdigit():
        value = int(t)
        if value > MAX_MS:
            raise EnrollmentError("--at", f"Unix milliseconds must be at most 2**63-1 "
                                  f"({MAX_MS}), got {t[:40]}")
        return value
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise EnrollmentError("--at", f"want Unix milliseconds or an ISO 8601 time such as "
                              f"2026-01-31T12:00:00Z, got {t[:80]!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def enroll(storage: Storage, pubkey: str, name: str, site: str | None,
           now_ms: int) -> GatewayRecord:
    """Enroll a gateway key under a name (and site).

    Raises:
        EnrollmentError: bad key or name, or the key is already enrolled.
    """
    key = parse_pubkey(pubkey)
    if not name.strip() or len(name) > MAX_NAME:
        raise EnrollmentError("--name", f"must be 1..{MAX_NAME} characters")
    if site is not None and len(site) > MAX_NAME:
        raise EnrollmentError("--site", f"must be at most {MAX_NAME} characters")
    return storage.enroll(key, name.strip(), site, now_ms)


def revoke(storage: Storage, pubkey: str, at_ms: int) -> GatewayRecord:
    """Revoke a key (given as hex, or as the name of exactly one enrolled gateway) from
    ``at_ms`` on.

    Raises:
        EnrollmentError: bad key or unknown or shared name, or the key is not enrolled.
    """
    if at_ms < 0:
        raise EnrollmentError("--at", f"must not be before 1970, got {at_ms}")
    if not _KEY_RE.fullmatch(pubkey.strip()):
        named = [g for g in storage.gateways() if g.name == pubkey.strip()]
        if len(named) > 1:
            raise EnrollmentError("PUBKEY", f"{len(named)} gateways are named {pubkey!r}: "
                                  "give the key")
        if named:
            return storage.revoke(named[0].key, at_ms)
    return storage.revoke(parse_pubkey(pubkey), at_ms)


def format_time(ms: int | None) -> str:
    """Milliseconds as ISO 8601 UTC, ``-`` for none."""
    if ms is None:
        return "-"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
    except (OverflowError, ValueError, OSError):
        return str(ms)
