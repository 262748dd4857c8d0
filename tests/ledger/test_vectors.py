"""The committed test vectors: byte-for-byte reproducible, and every outcome holds."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.bindings
import pytest

import ledger as L
from agent.storage.dirverify import verify_ledger_dir
from ledger import export, prooffile
from ledger.errors import ChainError
from tests.support import sealed_forge

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
FILES = ["readings.json", "chains.json", "corrupt.json", "merkle.json", "proofs.json",
         "exports.json", "ledgerdirs.json"]
INT64_KEYS = {"value", "timestamp_ms", "height", "head_height", "want_height"}


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def h(x: str) -> bytes:
    return bytes.fromhex(x)


def i64(x: str | None) -> int | None:
    """A 64-bit integer field: decimal text in the vector files (null stays None)."""
    if x is None:
        return None
    assert isinstance(x, str) and re.fullmatch(r"-?(0|[1-9][0-9]*)", x), x
    return int(x)


def _int64_fields(doc: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(doc, list):
        for x in doc:
            yield from _int64_fields(x)
    elif isinstance(doc, dict):
        for k, v in doc.items():
            if k in INT64_KEYS:
                yield k, v
            else:
                yield from _int64_fields(v)


@pytest.mark.parametrize("name", FILES)
def test_64_bit_integers_are_written_as_strings(name: str) -> None:
    seen = 0
    for key, value in _int64_fields(load(name)):
        assert value is None or isinstance(value, str), (name, key, value)
        i64(value)
        seen += 1
    assert seen or name == "merkle.json"
    assert load(name)["vector_format"] == 2


def test_generator_reproduces_committed_vectors_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(VECTORS / "generate.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (VECTORS / name).read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


def test_valid_readings_encode_decode_and_hash() -> None:
    data = load("readings.json")
    assert len(data["valid"]) >= 9
    for v in data["valid"]:
        r = L.Reading.make(v["meter_id"], v["obis"], i64(v["value"]), v["exponent"], v["unit"],
                           i64(v["timestamp_ms"]), L.ClockSource(v["clock"]), v["quality"])
        enc = L.encode_reading(r, h(v["salt"]))
        assert enc.hex() == v["encoding"]
        assert L.leaf_hash(enc).hex() == v["leaf_hash"]
        assert L.decode_reading(enc) == (r, h(v["salt"]))
        assert L.reading_encoding_error(enc) is None
        assert L.is_canonical_reading(enc)
        assert r.decimal == v["decimal"]


def test_decimal_text_form() -> None:
    cases = load("readings.json")["decimals"]
    assert any(c["decimal"] == "0" and c["exponent"] > 0 for c in cases)
    for c in cases:
        value, e, text = i64(c["value"]), c["exponent"], c["decimal"]
        assert L.format_decimal(value, e) == text
        assert re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text)
        if e < 0:
            assert len(text.split(".")[1]) == -e
        # the text is exact: it denotes value * 10**e
        if e >= 0:
            assert int(text) == value * 10**e
        else:
            assert int(text.replace(".", "")) == value


@pytest.mark.parametrize("vec", load("readings.json")["invalid"], ids=lambda v: v["name"])
def test_invalid_readings_are_rejected_by_both_checks(vec: dict[str, Any]) -> None:
    enc = h(vec["encoding"])
    with pytest.raises(ChainError) as info:
        L.decode_reading(enc)
    assert info.value.reason == vec["want_error"]
    assert L.reading_encoding_error(enc) is not None
    assert not L.is_canonical_reading(enc)


@pytest.mark.parametrize("chain", load("chains.json")["chains"], ids=lambda c: c["name"])
def test_valid_chains_verify_with_expected_hashes(chain: dict[str, Any]) -> None:
    keys = load("chains.json")
    records = [h(b["record"]) for b in chain["blocks"]]
    head = L.verify_records(records, gateway_key=h(chain["gateway_key"]))
    assert head is not None
    assert (head.height, head.hash.hex()) == (i64(chain["head_height"]), chain["head_hash"])
    for b, rec in zip(chain["blocks"], records, strict=True):
        blk = L.Block.decode(rec)
        assert blk.encode() == rec
        assert blk.header.encode().hex() == b["header"]
        assert blk.hash.hex() == b["block_hash"]
        assert blk.header.merkle_root.hex() == b["merkle_root"]
        assert blk.header.payload_hash.hex() == b["payload_hash"]
        assert blk.header.reading_count == b["reading_count"] == len(b["readings"])
        sk = h(keys["utility_sk"]) if chain["payload_encoding"] == "sealed" else None
        got = L.block_readings(blk, sk)
        assert [(enc_r, s.hex()) for enc_r, s in
                ((L.encode_reading(r, s).hex(), s) for r, s in got)] == \
               [(r["encoding"], r["salt"]) for r in b["readings"]]
        if sk is not None:
            assert L.open_payload(blk.payload, sk).hex() == b["plain_payload"]
            with pytest.raises(ChainError) as info:
                L.open_block(blk, h(keys["wrong_utility_sk"]))
            assert info.value.reason == "decrypt-failed"
            with pytest.raises(ChainError):
                L.block_readings(blk, None)


@pytest.mark.parametrize("vec", load("chains.json")["undecryptable"], ids=lambda v: v["name"])
def test_low_order_ephemeral_key_is_decrypt_failed(vec: dict[str, Any]) -> None:
    records = [h(r) for r in vec["records"]]
    assert L.verify_records(records) is not None  # the payload hash is intact
    blk = L.Block.decode(records[-1])
    # the box key is public (all-zero shared secret): a lax opener would read the payload
    epk = blk.payload[:32]
    nonce = hashlib.blake2b(epk + blk.header.recipient_key, digest_size=24).digest()
    key = sealed_forge.hsalsa20(bytes(32), bytes(16))
    assert nacl.bindings.crypto_secretbox_open(blk.payload[32:], nonce, key) == \
        h(vec["plain_payload"])
    with pytest.raises(ChainError) as info:
        L.open_block(blk, h(load("chains.json")["utility_sk"]))
    assert (info.value.reason, info.value.height) == (vec["want_error"], i64(vec["want_height"]))


def test_chains_cover_the_promised_edge_cases() -> None:
    chains = {c["name"]: c for c in load("chains.json")["chains"]}
    counts = [b["reading_count"] for b in chains["plain"]["blocks"]]
    assert 0 in counts and any(c > 2 and c & (c - 1) for c in counts)
    readings = [r for b in chains["plain"]["blocks"] for r in b["readings"]]
    assert any(i64(r["value"]) < 0 for r in readings) and any(r["exponent"] < 0 for r in readings)
    assert any(not r["meter_id"].isascii() for r in readings)
    assert 0 in [b["reading_count"] for b in chains["sealed"]["blocks"]]


CORRUPT = load("corrupt.json")


@pytest.mark.parametrize("vec", CORRUPT["vectors"], ids=lambda v: v["name"])
def test_corruption_vector_gives_its_reason_and_height(vec: dict[str, Any]) -> None:
    pin = h(vec["gateway_key"]) if vec["gateway_key"] else None
    with pytest.raises(ChainError) as info:
        L.verify_records([h(r) for r in vec["records"]], gateway_key=pin)
    assert (info.value.reason, info.value.height) == (vec["want_error"], i64(vec["want_height"]))


def test_corruption_vectors_cover_every_field_and_the_named_attacks() -> None:
    names = {v["name"] for v in CORRUPT["vectors"]}
    for field in ("magic", "version", "payload_encoding", "gateway_key", "height", "prev_hash",
                  "time_start_ms", "time_end_ms", "reading_count", "merkle_root",
                  "payload_hash", "recipient_key"):
        assert f"header.{field}@first-bit" in names and f"header.{field}@last-bit" in names
    for field in ("salt", "meter_id_len", "meter_id", "obis", "value", "exponent", "unit_len",
                  "unit", "timestamp_ms", "clock", "quality", "length_prefix"):
        assert f"reading.{field}@first-bit+resigned" in names
    for attack in ("signature@first-bit", "reordered-blocks", "deleted-block",
                   "inserted-fork-block", "truncated-chain@last-byte",
                   "trailing-garbage-after-record", "height-rollback", "key-substitution"):
        assert attack in names
    assert L.verify_records([h(r) for r in CORRUPT["base_chain"]]) is not None


MERKLE = load("merkle.json")


def test_merkle_roots_and_every_inclusion_proof() -> None:
    for r in MERKLE["roots"]:
        leaves = [L.leaf_hash(f"leaf {i}".encode()) for i in range(r["size"])]
        assert L.merkle_root(leaves).hex() == r["root"]
    for p in MERKLE["proofs"]:
        L.verify_inclusion(h(p["leaf_data"]), p["index"], p["size"],
                           [h(x) for x in p["path"]], h(p["root"]))
        leaves = [L.leaf_hash(f"leaf {i}".encode()) for i in range(p["size"])]
        assert [x.hex() for x in L.inclusion_proof(leaves, p["index"])] == p["path"]


@pytest.mark.parametrize("vec", MERKLE["tampered"], ids=lambda v: v["name"])
def test_tampered_merkle_proof_fails(vec: dict[str, Any]) -> None:
    with pytest.raises(ChainError) as info:
        L.verify_inclusion(h(vec["leaf_data"]), vec["index"], vec["size"],
                           [h(x) for x in vec["path"]], h(vec["root"]))
    assert info.value.reason == vec["want_error"]


PROOFS = load("proofs.json")


@pytest.mark.parametrize("vec", PROOFS["inclusion"], ids=lambda v: v["name"])
def test_signed_inclusion_proof(vec: dict[str, Any]) -> None:
    args = (h(vec["header"]), h(vec["signature"]), vec["index"], h(vec["reading"]),
            tuple(h(x) for x in vec["path"]))
    pin = h(vec["gateway_key"]) if vec["gateway_key"] else None
    if vec["want_error"] is None:
        reading = L.verify_proof_parts(*args, pin)
        assert L.encode_reading(reading, h(vec["reading"])[:16]) == h(vec["reading"])
    else:
        with pytest.raises(ChainError) as info:
            L.verify_proof_parts(*args, pin)
        assert (info.value.reason, info.value.height) == (vec["want_error"],
                                                          i64(vec["want_height"]))


@pytest.mark.parametrize("vec", PROOFS["forks"], ids=lambda v: v["name"])
def test_fork_evidence(vec: dict[str, Any]) -> None:
    args = (h(vec["header_a"]), h(vec["signature_a"]), h(vec["header_b"]),
            h(vec["signature_b"]))
    if vec["want_error"] is None:
        assert L.verify_fork_parts(*args) == i64(vec["want_height"])
    else:
        with pytest.raises(ChainError) as info:
            L.verify_fork_parts(*args)
        assert (info.value.reason, info.value.height) == (vec["want_error"],
                                                          i64(vec["want_height"]))


def test_fork_errors_after_decoding_carry_header_a_height() -> None:
    for vec in PROOFS["forks"]:
        if vec["want_error"] in ("bad-fork-evidence", "bad-signature"):
            assert i64(vec["want_height"]) == L.Header.decode(h(vec["header_a"])).height


@pytest.mark.parametrize("vec", PROOFS["files"], ids=lambda v: v["name"])
def test_proof_file(vec: dict[str, Any]) -> None:
    pin = h(vec["gateway_key"]) if vec["gateway_key"] else None
    if vec["want_error"] is None:
        prooffile.verify_proof_text(h(vec["file"]), pin)
        return
    with pytest.raises(ChainError) as info:
        prooffile.verify_proof_text(h(vec["file"]), pin)
    assert (info.value.reason, info.value.height) == (vec["want_error"], i64(vec["want_height"]))


EXPORTS = load("exports.json")


@pytest.mark.parametrize("vec", EXPORTS["files"], ids=lambda v: v["name"])
def test_export_file_gives_its_reason_and_height(vec: dict[str, Any]) -> None:
    pin = h(vec["gateway_key"]) if vec["gateway_key"] else None
    if vec["want_error"] is None:
        result = export.verify_export(io.BytesIO(h(vec["export"])), gateway_key=pin)
        got = (result.head.height, result.head.hash.hex()) if result.head else (None, None)
        assert got == (i64(vec["head_height"]), vec["head_hash"])
        return
    with pytest.raises(ChainError) as info:
        export.verify_export(io.BytesIO(h(vec["export"])), gateway_key=pin)
    assert (info.value.reason, info.value.height) == (vec["want_error"], i64(vec["want_height"]))


def test_export_vectors_cover_each_check() -> None:
    got = {(v["name"].split("/")[0], v["want_error"]) for v in EXPORTS["files"]}
    for want in [("file-header", "malformed"), ("file-header", "unsupported-version"),
                 ("framing", "malformed"), ("chain", "bad-signature"),
                 ("chain", "height-mismatch"), ("chain", "bad-time"), ("trailer", "malformed"),
                 ("digest", "digest-mismatch"), ("trailing", "malformed"), ("valid", None)]:
        assert want in got, want


LEDGERDIRS = load("ledgerdirs.json")


@pytest.mark.parametrize("vec", LEDGERDIRS["vectors"], ids=lambda v: v["name"])
def test_ledger_directory_gives_its_reason_and_height(vec: dict[str, Any],
                                                      tmp_path: Path) -> None:
    (tmp_path / "segments").mkdir()
    (tmp_path / "FORMAT").write_text(LEDGERDIRS["format_text"])
    for seg in vec["segments"]:
        (tmp_path / "segments" / seg["file"]).write_bytes(h(seg["bytes"]))
    if vec["want_error"] is None:
        head = verify_ledger_dir(tmp_path).head
        got = (head.height, head.hash.hex()) if head else (None, None)
        assert got == (i64(vec["head_height"]), vec["head_hash"])
        return
    with pytest.raises(ChainError) as info:
        verify_ledger_dir(tmp_path)
    assert (info.value.reason, info.value.height) == (vec["want_error"], i64(vec["want_height"]))
