"""The spec-only verifier (tests/ledger/cleanroom.py) agrees with every test vector.

It never imports ``agent``; passing every vector shows docs/ledger-format.md is
enough to build a verifier that gives the same reasons at the same heights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.ledger import cleanroom as C

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def h(x: str) -> bytes:
    return bytes.fromhex(x)


def i64(x: str | None) -> int | None:
    """64-bit integers are decimal strings in the vector files (tests/vectors/README.md)."""
    return None if x is None else int(x)


def test_cleanroom_does_not_import_the_reference_implementation() -> None:
    source = (Path(__file__).parent / "cleanroom.py").read_text()
    assert "import agent" not in source and "from agent" not in source


def test_readings() -> None:
    data = load("readings.json")
    for v in data["valid"]:
        enc = h(v["encoding"])
        assert C.reading_ok(enc), v
        assert C.sha(b"\x00" + enc).hex() == v["leaf_hash"]
    for v in data["invalid"]:
        assert not C.reading_ok(h(v["encoding"])), v["name"]


def test_valid_chains_and_their_hashes() -> None:
    data = load("chains.json")
    for chain in data["chains"]:
        records = [h(b["record"]) for b in chain["blocks"]]
        assert C.verify_chain(records, h(chain["gateway_key"])) is None
        assert C.parse(records[-1]).block_hash.hex() == chain["head_hash"]
        for b, rec in zip(chain["blocks"], records, strict=True):
            parsed = C.parse(rec)
            assert parsed.block_hash.hex() == b["block_hash"]
            encodings = [h(r["encoding"]) for r in b["readings"]]
            assert C.mth(encodings).hex() == b["merkle_root"]
            if chain["payload_encoding"] == "sealed":
                assert C.open_sealed(rec, h(data["utility_sk"])) == encodings
                assert C.seal(h(b["plain_payload"]), h(data["utility_pk"]),
                              h(b["ephemeral_sk"])) == parsed.payload
                assert C.open_sealed(rec, h(data["wrong_utility_sk"])) == \
                    ("decrypt-failed", None)
            else:
                assert C.split(parsed.payload) == encodings


def test_low_order_ephemeral_key_does_not_open() -> None:
    data = load("chains.json")
    for v in data["undecryptable"]:
        assert C.verify_chain([h(r) for r in v["records"]]) is None
        assert C.open_sealed(h(v["records"][-1]), h(data["utility_sk"])) == \
            ("decrypt-failed", None)


@pytest.mark.parametrize("vec", load("corrupt.json")["vectors"], ids=lambda v: v["name"])
def test_corruption_vectors(vec: dict[str, Any]) -> None:
    pin = h(vec["gateway_key"]) if vec["gateway_key"] else None
    got = C.verify_chain([h(r) for r in vec["records"]], pin)
    assert got == (vec["want_error"], i64(vec["want_height"]))


def test_merkle_vectors() -> None:
    data = load("merkle.json")
    for r in data["roots"]:
        assert C.mth([f"leaf {i}".encode() for i in range(r["size"])]).hex() == r["root"]
    for p in data["proofs"]:
        assert C.verify_path(h(p["leaf_data"]), p["index"], p["size"],
                             [h(x) for x in p["path"]], h(p["root"])) is None
    for p in data["tampered"]:
        assert C.verify_path(h(p["leaf_data"]), p["index"], p["size"],
                             [h(x) for x in p["path"]], h(p["root"])) == p["want_error"], p["name"]


def test_signed_proofs_and_fork_evidence() -> None:
    data = load("proofs.json")
    for v in data["inclusion"]:
        pin = h(v["gateway_key"]) if v["gateway_key"] else None
        got = C.verify_proof(h(v["header"]), h(v["signature"]), v["index"], h(v["reading"]),
                             [h(x) for x in v["path"]], pin)
        want = None if v["want_error"] is None else (v["want_error"], i64(v["want_height"]))
        assert got == want, v["name"]
    for v in data["forks"]:
        got = C.verify_fork(h(v["header_a"]), h(v["signature_a"]), h(v["header_b"]),
                            h(v["signature_b"]))
        want_fork = i64(v["want_height"]) if v["want_error"] is None else (
            v["want_error"], i64(v["want_height"]))
        assert got == want_fork, v["name"]


@pytest.mark.parametrize("vec", load("proofs.json")["files"], ids=lambda v: v["name"])
def test_proof_files(vec: dict[str, Any]) -> None:
    got = C.verify_proof_file(h(vec["file"]), h(vec["gateway_key"]))
    assert got == (None if vec["want_error"] is None else (vec["want_error"],
                                                           i64(vec["want_height"])))


@pytest.mark.parametrize("vec", load("exports.json")["files"], ids=lambda v: v["name"])
def test_export_files(vec: dict[str, Any]) -> None:
    pin = h(vec["gateway_key"]) if vec["gateway_key"] else None
    got = C.verify_export(h(vec["export"]), pin)
    if vec["want_error"] is None:
        assert got == (i64(vec["head_height"]), vec["head_hash"])
    else:
        assert got == (vec["want_error"], i64(vec["want_height"]))


LEDGERDIRS = load("ledgerdirs.json")


@pytest.mark.parametrize("vec", LEDGERDIRS["vectors"], ids=lambda v: v["name"])
def test_ledger_directories(vec: dict[str, Any]) -> None:
    got = C.verify_segments([(s["file"], h(s["bytes"])) for s in vec["segments"]],
                            LEDGERDIRS["version_1_align"])
    if vec["want_error"] is None:
        assert got == (i64(vec["head_height"]), vec["head_hash"])
    else:
        assert got == (vec["want_error"], i64(vec["want_height"]))
