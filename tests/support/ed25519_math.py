"""Textbook Ed25519 arithmetic in plain Python, for crafting and judging the strictness
vectors (tests/vectors/generate.py, tests/ledger/test_ed25519.py). Slow and not constant
time: never use it to sign anything real.

``permissive_verify`` is the lax verifier the spec warns about (section 6.2): it reduces
``S`` and ``y`` modulo their bounds, accepts any point, and optionally uses the cofactored
equation. A strictness vector is only worth having if this accepts it.
"""

from __future__ import annotations

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)
IDENTITY: Point = (0, 1, 1, 0)


def _inv(x: int) -> int:
    return pow(x, P - 2, P)


def _x_from_y(y: int, sign: int) -> int | None:
    x2 = (y * y - 1) * _inv(D * y * y + 1) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * _SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    return P - x if x & 1 != sign else x


def decode(enc: bytes, *, strict: bool = True) -> Point | None:
    """The point an encoding names; ``strict=False`` reduces a ``y >= p`` modulo p."""
    y = int.from_bytes(enc, "little") & ((1 << 255) - 1)
    if strict and y >= P:
        return None
    y %= P
    x = _x_from_y(y, enc[31] >> 7)
    return None if x is None else (x, y, 1, x * y % P)


def add(p: Point, q: Point) -> Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * 2 * D * t2 % P
    d = z1 * 2 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def mul(s: int, p: Point) -> Point:
    q = IDENTITY
    while s:
        if s & 1:
            q = add(q, p)
        p = add(p, p)
        s >>= 1
    return q


def encode(p: Point) -> bytes:
    x, y, z, _ = p
    zi = _inv(z)
    x, y = x * zi % P, y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


_BY = 4 * _inv(5) % P
_BX = _x_from_y(_BY, 0)
assert _BX is not None
BASE: Point = (_BX, _BY, 1, _BX * _BY % P)


def challenge(r: bytes, a: bytes, message: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + a + message).digest(), "little") % L


def secret_scalar(seed: bytes) -> int:
    """The clamped secret scalar ``a`` of an RFC 8032 seed."""
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    return (a & ((1 << 254) - 8)) | (1 << 254)


def sign_with_r(seed: bytes, r_enc: bytes, message: bytes) -> bytes:
    """A signature with a chosen ``R`` encoding and ``S = k * a mod L``: valid under the
    permissive equation whenever ``R`` has small order (cofactorless only for the identity)."""
    a = secret_scalar(seed)
    a_enc = encode(mul(a, BASE))
    return r_enc + (challenge(r_enc, a_enc, message) * a % L).to_bytes(32, "little")


def forge_for_identity_key() -> bytes:
    """A signature that verifies for *every* message under the identity public key with a
    permissive verifier: R = B, S = 1 (since [1]B = B + [k]O)."""
    return encode(BASE) + (1).to_bytes(32, "little")


def permissive_verify(a_enc: bytes, message: bytes, sig: bytes, *,
                      cofactored: bool = False) -> bool:
    """A lax Ed25519 verifier (what section 6.2 forbids)."""
    a, r = decode(a_enc, strict=False), decode(sig[:32], strict=False)
    if a is None or r is None:
        return False
    s = int.from_bytes(sig[32:], "little") % L
    k = challenge(sig[:32], a_enc, message)
    lhs, rhs = mul(s, BASE), add(r, mul(k, a))
    if cofactored:
        lhs, rhs = mul(8, lhs), mul(8, rhs)
    return encode(lhs) == encode(rhs)
