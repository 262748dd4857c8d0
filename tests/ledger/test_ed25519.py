"""Section 6.2's strict Ed25519 rule holds whatever libsodium build is installed.

The strictness vectors (``ed25519.*`` in corrupt.json) are forged signatures that a lax
verifier accepts; the reference verifier must refuse each with ``bad-signature`` even
when libsodium itself is replaced by an accept-everything stand-in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

import ledger as L
from ledger import ed25519
from ledger.errors import ChainError
from tests.support import ed25519_math as ed

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
STRICT = [v for v in json.loads((VECTORS / "corrupt.json").read_text())["vectors"]
          if v["name"].startswith("ed25519.")]


def test_strictness_vectors_exist_for_each_rule() -> None:
    names = {v["name"] for v in STRICT}
    assert {"ed25519.identity-key", "ed25519.non-canonical-key", "ed25519.small-order-R@identity",
            "ed25519.small-order-R@order-8", "ed25519.non-canonical-R",
            "ed25519.S-plus-L"} <= names


@pytest.mark.parametrize("vec", STRICT, ids=lambda v: v["name"])
def test_a_lax_verifier_accepts_the_forgery(vec: dict[str, Any]) -> None:
    rec = bytes.fromhex(vec["records"][int(vec["want_height"])])
    header, sig = rec[: L.HEADER_SIZE], rec[L.HEADER_SIZE : L.HEADER_SIZE + 64]
    key, msg = header[6:38], L.header_hash(header)
    assert ed.permissive_verify(key, msg, sig, cofactored="order-8" in vec["name"])


@pytest.mark.parametrize("vec", STRICT, ids=lambda v: v["name"])
def test_refused_even_with_a_permissive_libsodium(vec: dict[str, Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nacl.signing.VerifyKey, "verify", lambda self, *a, **k: b"")
    pin = bytes.fromhex(vec["gateway_key"]) if vec["gateway_key"] else None
    with pytest.raises(ChainError) as info:
        L.verify_records([bytes.fromhex(r) for r in vec["records"]], gateway_key=pin)
    assert (info.value.reason, info.value.height) == ("bad-signature", int(vec["want_height"]))


def test_small_order_set_is_the_eight_torsion_points() -> None:
    t8 = ed.decode(bytes.fromhex(
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"))
    assert t8 is not None
    ys = set()
    for k in range(8):
        enc = ed.encode(ed.mul(k, t8))
        assert ed.encode(ed.mul(8, ed.decode(enc) or ed.IDENTITY)) == ed.encode(ed.IDENTITY)
        ys.add(int.from_bytes(enc, "little") & ((1 << 255) - 1))
        assert ed25519.point_error(enc) == "is a point of small order"
    assert ys == ed25519.SMALL_ORDER_Y


def test_a_correct_signature_passes_the_strict_checks() -> None:
    sk = nacl.signing.SigningKey(bytes(range(32)))
    sig = sk.sign(b"m" * 32).signature
    assert ed25519.signature_error(bytes(sk.verify_key), sig) is None
    s = int.from_bytes(sig[32:], "little")
    bad = sig[:32] + (s + ed25519.L).to_bytes(32, "little")
    assert ed25519.signature_error(bytes(sk.verify_key), bad) is not None
