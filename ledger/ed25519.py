"""Strict Ed25519 verification (docs/ledger-format.md section 6.2), independent of how the
installed libsodium was built.

libsodium's ``crypto_sign_verify_detached`` (PyNaCl 1.6's bundled build) already refuses
everything below; a libsodium built with ``ED25519_COMPAT`` or another Ed25519 library
does not. So the rule the spec states is checked here in plain Python first, on the bytes:

- ``S`` (the signature's last 32 bytes, little-endian) is below the group order ``L``;
- the public key ``A`` and the signature's ``R`` are canonical encodings: the 255-bit
  ``y`` is below ``p = 2^255 - 19``;
- neither ``A`` nor ``R`` is a point of small order (order 1, 2, 4 or 8): their ``y``
  is none of the five ``y`` values of those eight points, whatever the sign bit. (The
  two encodings of ``x = 0`` with the sign bit set, which are not canonical, have
  ``y = 1`` or ``p - 1`` and are refused by the same test.)

Then libsodium checks that ``A`` decodes to a curve point and the cofactorless equation
``encode([S]B - [k]A) = R`` with ``k = SHA-512(R || A || M) mod L``. Only byte
comparisons and integer conversions happen here: no curve arithmetic, so the extra cost
per signature is a few microseconds.
"""

from __future__ import annotations

P = 2**255 - 19
"""The field prime."""
L = 2**252 + 27742317777372353535851937790883648493
"""The order of the base point (the prime subgroup)."""
_Y_MASK = (1 << 255) - 1

SMALL_ORDER_Y = frozenset({
    0,  # order 4: (+-sqrt(-1), 0)
    1,  # order 1: the identity (0, 1)
    P - 1,  # order 2: (0, -1)
    # order 8: the two y values of the four points of exact order 8
    int.from_bytes(bytes.fromhex(
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"),
    int.from_bytes(bytes.fromhex(
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"), "little"),
})
"""``y`` of the eight points of small order (their encodings with either sign bit)."""


def point_error(encoding: bytes) -> str | None:
    """Why a 32-byte point encoding is refused as ``A`` or ``R``, or None.

    Checks only what the module docstring lists (canonical ``y``, not small order); that
    the point lies on the curve is left to libsodium.
    """
    if len(encoding) != 32:
        return f"is {len(encoding)} bytes, not 32"
    y = int.from_bytes(encoding, "little") & _Y_MASK
    if y >= P:
        return "is not a canonical encoding (y >= 2^255 - 19)"
    if y in SMALL_ORDER_Y:
        return "is a point of small order"
    return None


def signature_error(public_key: bytes, signature: bytes) -> str | None:
    """Why ``signature`` by ``public_key`` breaks the strict rule before the equation, or None.

    Order of checks: signature length, ``S < L``, ``R``, then ``A``.
    """
    if len(signature) != 64:
        return f"signature is {len(signature)} bytes, not 64"
    if int.from_bytes(signature[32:], "little") >= L:
        return "signature scalar S is not below the group order L"
    why = point_error(signature[:32])
    if why is not None:
        return f"signature point R {why}"
    why = point_error(public_key)
    if why is not None:
        return f"public key {why}"
    return None
