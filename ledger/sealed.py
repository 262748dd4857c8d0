"""Sealed payloads: crypto_box_seal to the utility's X25519 key, deterministic given the
ephemeral key."""

from __future__ import annotations

import nacl.exceptions
import nacl.public
import nacl.signing
from nacl.encoding import RawEncoder
from nacl.hash import blake2b

from ledger.errors import (
    DecryptError,
)

# --- sealed payloads -------------------------------------------------------------------


def seal_payload(plain: bytes, recipient_pk: bytes, ephemeral_sk: bytes) -> bytes:
    """Seal ``plain`` to an X25519 public key, as libsodium's ``crypto_box_seal``.

    The ephemeral secret key is an argument so sealing is deterministic for test
    vectors; callers pass 32 fresh random bytes. The result opens with
    ``nacl.public.SealedBox(recipient_sk).decrypt``.
    """
    esk = nacl.public.PrivateKey(ephemeral_sk)
    epk = bytes(esk.public_key)
    nonce = blake2b(epk + recipient_pk, digest_size=24, encoder=RawEncoder)
    box = nacl.public.Box(esk, nacl.public.PublicKey(recipient_pk))
    return epk + box.encrypt(plain, nonce).ciphertext


def open_payload(sealed: bytes, recipient_sk: bytes) -> bytes:
    """Open a sealed payload with the utility's X25519 secret key.

    Raises:
        DecryptError: the key is wrong or the ciphertext was altered.
    """
    try:
        return nacl.public.SealedBox(nacl.public.PrivateKey(recipient_sk)).decrypt(sealed)
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise DecryptError(f"sealed payload does not open with this key: {exc}") from None
