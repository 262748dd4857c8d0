"""Export file and proof file: round trips, and every single-byte change is detected."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ledger
from ledger import export, prooffile
from ledger.errors import ChainError, MalformedError, ProofError
from tests.support.store import make_blocks, public_key

BLOCKS = make_blocks(4, meters=1)


def _export(blocks: list[ledger.Block], first: int = 0) -> bytes:
    buf = io.BytesIO()
    n = export.write_export(buf, [b.encode() for b in blocks], first, len(blocks))
    assert n == len(buf.getvalue())
    return buf.getvalue()


EXPORT = _export(BLOCKS)


def test_round_trip_verifies_and_reports_the_head() -> None:
    res = export.verify_export(io.BytesIO(EXPORT), gateway_key=public_key())
    assert res.head is not None and res.head.hash == BLOCKS[-1].hash
    assert res.blocks == 4 and res.readings == sum(b.header.reading_count for b in BLOCKS)
    header, records = export.read_export(io.BytesIO(EXPORT))
    assert header == export.ExportHeader(0, 4)
    assert list(records) == [b.encode() for b in BLOCKS]


def test_empty_and_pruned_exports() -> None:
    assert export.verify_export(io.BytesIO(_export([]))).head is None
    tail = _export(BLOCKS[2:], first=2)
    res = export.verify_export(io.BytesIO(tail))
    assert res.first_height == 2 and res.head is not None and res.head.height == 3
    with pytest.raises(ValueError, match="not at height"):
        _export(BLOCKS[2:], first=0)


@pytest.mark.parametrize("mutate,error", [
    (lambda b: b + b"\0", "trailing bytes"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b[:100], "truncated"),
    (lambda b: b"X" + b[1:], "not a meterchain export"),
    (lambda b: b[:8] + b"\0\2" + b[10:], "unsupported"),
    (lambda b: b"", "not a meterchain export"),
    (lambda b: b[:5], "truncated"),
])
def test_typical_damage(mutate, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ChainError, match=error):
        export.verify_export(io.BytesIO(mutate(EXPORT)))


def test_wrong_gateway_key_is_refused() -> None:
    with pytest.raises(ChainError, match="key-change"):
        export.verify_export(io.BytesIO(EXPORT), gateway_key=bytes(32))


@settings(max_examples=300, deadline=None)
@given(pos=st.integers(0, len(EXPORT) - 1), delta=st.integers(1, 255))
def test_any_single_byte_change_is_detected(pos: int, delta: int) -> None:
    data = bytearray(EXPORT)
    data[pos] = (data[pos] + delta) % 256
    with pytest.raises(ChainError):
        export.verify_export(io.BytesIO(bytes(data)))


def test_every_byte_position_is_covered() -> None:
    """Exhaustive over positions (one change each): nothing slips through anywhere."""
    for pos in range(len(EXPORT)):
        data = bytearray(EXPORT)
        data[pos] ^= 0x01
        with pytest.raises(ChainError):
            export.verify_export(io.BytesIO(bytes(data)))


def _proof() -> ledger.InclusionProof:
    return ledger.prove_reading(BLOCKS[2], 2)


def test_proof_file_round_trip() -> None:
    text = prooffile.proof_to_json(_proof())
    proof, reading = prooffile.verify_proof_text(text, public_key())
    assert proof == _proof()
    assert reading == ledger.block_readings(BLOCKS[2])[2][0]
    doc = json.loads(text)
    assert doc["format"] == prooffile.PROOF_FORMAT and doc["height"] == 2 and doc["index"] == 2


@pytest.mark.parametrize("field,value,error", [
    ("reading", None, ProofError),
    ("path", None, ProofError),
    ("signature", None, ChainError),
    ("index", 1, ProofError),
    ("height", 3, MalformedError),
    ("block_hash", "00" * 32, MalformedError),
    ("format", "other", MalformedError),
    ("extra", 1, MalformedError),
])
def test_tampered_proof_files_fail(field: str, value: object, error: type) -> None:
    doc = json.loads(prooffile.proof_to_json(_proof()))
    if value is None:  # flip one bit in the hex field
        if field == "path":
            raw = bytearray(bytes.fromhex(doc["path"][0]))
            raw[0] ^= 1
            doc["path"][0] = raw.hex()
        else:
            raw = bytearray(bytes.fromhex(doc[field]))
            raw[-1] ^= 1
            doc[field] = raw.hex()
    else:
        doc[field] = value
    with pytest.raises(error):
        prooffile.verify_proof_text(json.dumps(doc))


def test_proof_for_another_gateway_fails() -> None:
    with pytest.raises(ChainError, match="key-change"):
        prooffile.verify_proof_text(prooffile.proof_to_json(_proof()), bytes(32))


@pytest.mark.parametrize("text", [b"not json", b"[]", b"{}", b"\xff\xfe"])
def test_garbage_proof_files_fail_cleanly(text: bytes) -> None:
    with pytest.raises(MalformedError):
        prooffile.proof_from_json(text)
