"""Forging a sealed payload for a low-order ephemeral key (docs/ledger-format.md 5.2).

With ``epk`` of low order, ``X25519(rsk, epk)`` is all zeros for every recipient key, so
the box key is ``HSalsa20(0^32, 0^16)``, known to everyone: an opener that does not refuse
the all-zero shared secret (libsodium does) would accept attacker-chosen plaintext. Used
only to build the ``decrypt-failed`` vectors.
"""

from __future__ import annotations

import hashlib
import struct

import nacl.bindings

_SIGMA = struct.unpack("<4I", b"expand 32-byte k")
_M32 = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _M32


def hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    """HSalsa20 (Bernstein, "Extending the Salsa20 nonce"), the crypto_box key derivation."""
    k, n = struct.unpack("<8I", key), struct.unpack("<4I", nonce16)
    x = [_SIGMA[0], *k[:4], _SIGMA[1], *n, _SIGMA[2], *k[4:], _SIGMA[3]]
    for _ in range(10):
        for a, b, c, d in ((0, 4, 8, 12), (5, 9, 13, 1), (10, 14, 2, 6), (15, 3, 7, 11),
                           (0, 1, 2, 3), (5, 6, 7, 4), (10, 11, 8, 9), (15, 12, 13, 14)):
            x[b] ^= _rotl((x[a] + x[d]) & _M32, 7)
            x[c] ^= _rotl((x[b] + x[a]) & _M32, 9)
            x[d] ^= _rotl((x[c] + x[b]) & _M32, 13)
            x[a] ^= _rotl((x[d] + x[c]) & _M32, 18)
    return struct.pack("<8I", *(x[i] for i in (0, 5, 10, 15, 6, 7, 8, 9)))


def seal_with_zero_secret(plain: bytes, recipient_pk: bytes, epk: bytes) -> bytes:
    """``epk || secretbox(plain)`` under the key an all-zero X25519 secret gives."""
    nonce = hashlib.blake2b(epk + recipient_pk, digest_size=24).digest()
    key = hsalsa20(bytes(32), bytes(16))
    return epk + nacl.bindings.crypto_secretbox(plain, nonce, key)


def check_hsalsa20() -> None:
    """HSalsa20 agrees with libsodium's crypto_box_beforenm (which is HSalsa20(X25519, 0))."""
    sk, pk = bytes(range(32)), nacl.bindings.crypto_scalarmult_base(bytes(range(1, 33)))
    shared = nacl.bindings.crypto_scalarmult(sk, pk)
    assert nacl.bindings.crypto_box_beforenm(pk, sk) == hsalsa20(shared, bytes(16))
