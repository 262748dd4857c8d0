"""The committed settlement vectors: reproducible byte for byte, and every outcome holds."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.merkle import merkle_root
from settlement import errors
from settlement.build import make_body
from settlement.config import parse_community
from settlement.document import canonical, document_hash, verify_document
from settlement.engine import TOTAL_FIELDS, run
from settlement.period import parse_period
from settlement.proof import verify_proof
from settlement.source import parse_intervals

DIR = Path(__file__).resolve().parents[1] / "vectors" / "settlement"
DATA = json.loads((DIR / "settlement.json").read_text())


def test_generator_reproduces_committed_vectors_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(DIR / "generate.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    assert (tmp_path / "settlement.json").read_bytes() == (DIR / "settlement.json").read_bytes()


@pytest.mark.parametrize("vec", DATA["vectors"], ids=lambda v: v["name"])
def test_vector_recomputes_from_its_inputs(vec: dict[str, Any]) -> None:
    text = vec["community_toml"]
    c = parse_community(tomllib.loads(text),
                        sha256=hashlib.sha256(text.encode()).hexdigest())
    data = parse_intervals(DATA["intervals"])
    r = run(c, parse_period(vec["period"], c.time_zone), data)
    for m in vec["members"]:
        assert [x["line"] for x in m["lines"]] == r.lines[m["id"]]
        # line and member hashes by the spec's formulas, independently of the package
        hashes = [hashlib.sha256(b"\x10" + x["line"].encode()).digest() for x in m["lines"]]
        assert [h.hex() for h in hashes] == [x["hash"] for x in m["lines"]]
        assert merkle_root(hashes).hex() == m["root"]
        leaf = hashlib.sha256(b"\x11" + bytes.fromhex(m["root"]) + m["id"].encode())
        assert leaf.hexdigest() == m["leaf"]
    body = make_body(r, data.sources, bytes.fromhex(DATA["operator_key"]))
    assert canonical(body).decode() == vec["body_canonical"]
    assert hashlib.sha256(b"\x12" + canonical(body)).hexdigest() == vec["document_hash"]
    assert document_hash(body).hex() == vec["document_hash"]
    assert body == vec["signed"]["document"]
    doc = verify_document(vec["signed"], bytes.fromhex(DATA["operator_key"]))
    _, lines, _ = verify_proof(vec["proof_anna"])
    assert lines == r.lines["anna"] and doc.hash.hex() == vec["document_hash"]


def test_partial_proof_vector() -> None:
    vec = DATA["vectors"][0]
    _, lines, _ = verify_proof(vec["proof_anna_partial"])
    every = [x["line"] for x in vec["members"][0]["lines"]]
    assert lines == every[40:42] and vec["proof_anna_partial"]["line_count"] == len(every)


CORRUPT = [(c["name"], c) for c in DATA["vectors"][0]["corrupt_documents"]]
CORRUPT_PROOFS = [(c["name"], c) for c in DATA["vectors"][0]["corrupt_proofs"]]


def _fails_as_stated(check: Callable[[dict[str, Any]], object], data: dict[str, Any],
                     vec: dict[str, Any]) -> None:
    """``check(data)`` raises the vector's error class with the vector's message."""
    with pytest.raises(errors.DocumentError) as info:
        check(data)
    assert type(info.value).__name__ == vec["want_error"]
    assert str(info.value) == vec["message"]


@pytest.mark.parametrize("name, vec", CORRUPT, ids=[n for n, _ in CORRUPT])
def test_corrupt_documents_fail_as_stated(name: str, vec: dict[str, Any]) -> None:
    _fails_as_stated(verify_document, vec["signed"], vec)


@pytest.mark.parametrize("name, vec", CORRUPT_PROOFS, ids=[n for n, _ in CORRUPT_PROOFS])
def test_corrupt_proofs_fail_as_stated(name: str, vec: dict[str, Any]) -> None:
    _fails_as_stated(verify_proof, vec["proof"], vec)


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 tree hash written from the spec alone (split at the largest power of 2)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


@pytest.mark.parametrize("vec", DATA["vectors"], ids=lambda v: v["name"])
def test_a_verifier_written_from_the_spec_alone_accepts_the_vectors(
        vec: dict[str, Any]) -> None:
    import nacl.signing
    signed = vec["signed"]
    body = signed["document"]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert text == vec["body_canonical"]
    digest = hashlib.sha256(b"\x12" + text.encode()).digest()
    nacl.signing.VerifyKey(bytes.fromhex(body["operator_key"])).verify(
        digest, bytes.fromhex(signed["signature"]))
    leaves = []
    for m, entry in zip(vec["members"], body["members"], strict=True):
        root = _mth([hashlib.sha256(b"\x10" + x["line"].encode()).digest()
                     for x in m["lines"]])
        assert root.hex() == entry["root"] and entry["lines"] == len(m["lines"])
        leaves.append(hashlib.sha256(b"\x11" + root + m["id"].encode()).digest())
    assert _mth(leaves).hex() == body["root"]
    # the totals are the sums of the members' T lines
    sums: dict[str, int] = {}
    for m in vec["members"]:
        last = m["lines"][-1]["line"].split(",")
        assert last[0] == "T"
        for name, v in zip(TOTAL_FIELDS, last[2:], strict=True):
            sums[name] = sums.get(name, 0) + int(v)
    assert {k: body["totals"][k] for k in sums} == sums
