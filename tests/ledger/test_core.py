"""Unit tests of the ledger core: validation, errors with context, chain rules, purity."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import nacl.public
import nacl.signing
import pytest

import ledger as L
import ledger.errors as E
from ledger.errors import (
    BrokenLinkError,
    ChainError,
    ForkError,
    HeightError,
    KeyChangeError,
    MalformedError,
    MerkleMismatchError,
    TimeError,
)
from tests.ledger.conftest import GATEWAY_SEED, OTHER_SEED, UTILITY_SK

T0 = 1_767_225_600_000
R1 = L.Reading.make("meter-1", "1-0:1.8.0", 1000, 0, "Wh", T0)
S = bytes(16)


def chain(n: int, seed: bytes = GATEWAY_SEED) -> list[L.Block]:
    out: list[L.Block] = []
    prev = None
    for i in range(n):
        blk = L.seal_block(seed, prev, [R1] * (i % 3), [S] * (i % 3), T0 + i, T0 + i)
        out.append(blk)
        prev = blk.header
    return out


CORE_MODULES = sorted(Path(L.__file__).parent.glob("*.py"))


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.name)
def test_core_module_is_pure(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom)}
    assert not imported & {"os", "io", "time", "datetime", "socket", "random", "secrets",
                           "pathlib", "subprocess", "threading", "asyncio", "logging",
                           "agent", "drivers", "replica", "keyfiles", "meterchain"}
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name)}
    assert "open" not in calls and "print" not in calls
    assert "time" not in {n.value.id for n in ast.walk(tree)
                          if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}


def test_core_is_split_into_small_modules() -> None:
    assert len(CORE_MODULES) >= 8
    assert all(len(p.read_text().splitlines()) <= 450 for p in CORE_MODULES)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("meter_id", "", "meter_id"), ("meter_id", "x" * 65, "meter_id"),
    ("meter_id", "a\nb", "control"), ("obis", "1-0:1.8", "OBIS"), ("obis", "1-0:1.8.256", "OBIS"),
    ("value", 2**63, "value"), ("value", 1.5, "value"), ("value", True, "value"),
    ("exponent", 128, "exponent"), ("unit", "W h", "unit"), ("unit", "µ", "unit"),
    ("unit", "W" * 17, "unit"), ("timestamp_ms", -1, "timestamp"),
    ("timestamp_ms", 2**63, "timestamp"), ("quality", 0x20, "quality"),
    ("clock", 2, "ClockSource"),
])
def test_reading_make_names_the_bad_field(field: str, value: object, words: str) -> None:
    args: dict[str, object] = {"meter_id": "m", "obis": "1-0:1.8.0", "value": 1,
                               "exponent": 0, "unit": "Wh", "timestamp_ms": 0}
    args[field] = value
    with pytest.raises(ValueError, match=words):
        L.Reading.make(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value", "words"), [
    ("meter_id", "", "meter_id"), ("meter_id", 7, "text"), ("obis", "1-0:1.8", "OBIS"),
    ("value", 2**63, "value"), ("value", -(2**63) - 1, "value"), ("value", 1.5, "value"),
    ("value", True, "value"), ("exponent", -129, "exponent"), ("exponent", 1.0, "exponent"),
    ("unit", "W h", "unit"), ("unit", None, "text"), ("timestamp_ms", -1, "timestamp"),
    ("timestamp_ms", 2**63, "timestamp"), ("quality", 0x20, "quality"),
    ("quality", -1, "quality"), ("quality", "x", "quality"), ("clock", 2, "clock"),
    ("clock", [0], "clock"),
])
def test_seal_block_names_the_bad_field_of_an_unchecked_reading(field: str, value: object,
                                                                words: str) -> None:
    """Readings built without ``make`` are checked when sealed, with the same errors."""
    args: dict[str, object] = {"meter_id": "m", "obis": "1-0:1.8.0", "value": 1,
                               "exponent": 0, "unit": "Wh", "timestamp_ms": 0}
    args[field] = value
    good = L.Reading.make("m", "1-0:1.8.0", 1, 0, "Wh", 0)
    bad = L.Reading(**args)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=words):
        L.seal_block(bytes(32), None, [good, bad], [bytes(16)] * 2, 0, 0)
    with pytest.raises(ValueError, match="salt"):
        L.seal_block(bytes(32), None, [good], [bytes(15)], 0, 0)


def test_obis_and_decimal_text() -> None:
    assert L.parse_obis("1-0:1.8.0") == bytes([1, 0, 1, 8, 0, 255])
    assert L.format_obis(L.parse_obis("1-0:1.8.0*255")) == "1-0:1.8.0"
    assert L.format_obis(L.parse_obis("1-0:1.8.0*3")) == "1-0:1.8.0*3"
    assert L.format_decimal(2304, -1) == "230.4"
    assert L.format_decimal(-5, -3) == "-0.005"
    assert L.format_decimal(7, 3) == "7000"
    assert L.format_decimal(0, -2) == "0.00"
    assert L.format_decimal(0, 3) == "0"  # zero has no trailing zeros to scale


def test_verified_chain_returns_head_and_empty_input_returns_start() -> None:
    blocks = chain(5)
    head = L.verify_chain(blocks)
    assert head is not None and head.height == 4 and head.hash == blocks[-1].hash
    assert L.verify_chain([]) is None
    mid = L.verify_chain(blocks[:2])
    assert L.verify_chain(blocks[2:], head=mid) == head
    assert L.verify_chain([], head=mid) == mid


def test_trusted_head_reports_chain_position() -> None:
    blocks = chain(5)
    mid = L.verify_chain(blocks[:3])
    with pytest.raises(HeightError) as info:
        L.verify_chain([blocks[4]], head=mid)
    assert (info.value.height, info.value.expected, info.value.actual) == (3, 3, 4)


def test_mismatch_errors_carry_expected_and_actual() -> None:
    blocks = chain(3)
    fork = L.seal_block(GATEWAY_SEED, blocks[0].header, [R1, R1], [S, S], T0 + 1, T0 + 1)
    with pytest.raises(BrokenLinkError) as link:
        L.verify_chain([blocks[0], fork, blocks[2]])
    assert link.value.expected == fork.hash and link.value.actual == blocks[1].hash
    assert fork.hash.hex() in str(link.value) and "height 2" in str(link.value)
    other = chain(1, OTHER_SEED)[0]
    with pytest.raises(KeyChangeError) as key:
        L.verify_chain([other], gateway_key=blocks[0].header.gateway_key)
    assert key.value.expected == blocks[0].header.gateway_key
    assert key.value.actual == other.header.gateway_key


def test_merkle_mismatch_on_a_re_signed_header() -> None:
    blk = chain(2)[1]
    bad_header = dataclasses.replace(blk.header, merkle_root=bytes(32))
    sig = nacl.signing.SigningKey(GATEWAY_SEED).sign(L.header_hash(bad_header.encode())).signature
    with pytest.raises(MerkleMismatchError) as info:
        L.verify_block(L.Block(bad_header, sig, blk.payload))
    assert info.value.expected == bytes(32) and info.value.actual == blk.header.merkle_root


def test_headers_built_in_code_are_validated_too() -> None:
    blk = chain(1)[0]
    sk = nacl.signing.SigningKey(GATEWAY_SEED)
    for change in ({"version": 2}, {"payload_encoding": 7}, {"reading_count": 70000},
                   {"recipient_key": b"\x01" * 32}, {"prev_hash": b"\x01" * 32}):
        h = dataclasses.replace(blk.header, **change)  # type: ignore[arg-type]
        sig = sk.sign(L.header_hash(h.encode())).signature
        with pytest.raises(ChainError):
            L.verify_block(L.Block(h, sig, blk.payload))


def test_seal_block_refuses_bad_input() -> None:
    g = chain(1)[0]
    with pytest.raises(ValueError, match="salts"):
        L.seal_block(GATEWAY_SEED, None, [R1], [], T0, T0)
    with pytest.raises(ValueError, match="before the previous"):
        L.seal_block(GATEWAY_SEED, g.header, [], [], T0 - 1, T0)
    with pytest.raises(ValueError, match="time span"):
        L.seal_block(GATEWAY_SEED, None, [], [], T0 + 1, T0)
    with pytest.raises(ValueError, match="signing key"):
        L.seal_block(OTHER_SEED, g.header, [], [], T0, T0)
    with pytest.raises(ValueError, match="ephemeral"):
        L.seal_block(GATEWAY_SEED, None, [], [], T0, T0, recipient_key=b"\x01" * 32)
    with pytest.raises(ValueError, match="salt"):
        L.seal_block(GATEWAY_SEED, None, [R1], [b"short"], T0, T0)


def test_check_time_and_time_rules() -> None:
    g = chain(1)[0]
    L.check_time(g.header, now_ms=T0, max_future_ms=0)
    with pytest.raises(TimeError, match="after now"):
        L.check_time(g.header, now_ms=T0 - 1001, max_future_ms=1000)
    inverted = dataclasses.replace(g.header, time_start_ms=T0 + 5)
    with pytest.raises(TimeError, match="inverted"):
        L.check_time(inverted, now_ms=T0, max_future_ms=0)


def test_sealed_block_verifies_without_key_and_opens_with_it() -> None:
    pk = bytes(nacl.public.PrivateKey(UTILITY_SK).public_key)
    blk = L.seal_block(GATEWAY_SEED, None, [R1, R1], [b"\x01" * 16, b"\x02" * 16], T0, T0,
                       recipient_key=pk, ephemeral_sk=b"\x07" * 32)
    assert L.verify_chain([blk]) is not None
    assert nacl.public.SealedBox(nacl.public.PrivateKey(UTILITY_SK)).decrypt(blk.payload) == \
        L.encode_payload([L.encode_reading(R1, b"\x01" * 16), L.encode_reading(R1, b"\x02" * 16)])
    assert L.open_block(blk, UTILITY_SK) == [R1, R1]
    proof = L.prove_reading(blk, 1, UTILITY_SK)
    assert proof.verify(blk.header.gateway_key) == R1


def test_fork_evidence() -> None:
    g = chain(1)[0]
    a = L.seal_block(GATEWAY_SEED, g.header, [R1], [S], T0, T0)
    b = L.seal_block(GATEWAY_SEED, g.header, [], [], T0, T0)
    assert L.verify_fork(a.header, a.signature, b.header, b.signature) == 1
    with pytest.raises(ForkError):
        L.verify_fork(a.header, a.signature, a.header, a.signature)


def test_record_decode_rejects_framing_errors() -> None:
    rec = chain(1)[0].encode()
    for bad in (b"", rec[:4], rec[:261], rec[:-1], rec + b"\x00"):
        with pytest.raises(MalformedError):
            L.Block.decode(bad)
    with pytest.raises(ChainError) as info:
        L.Block.decode(rec[:4] + b"\x09" + rec[5:])
    assert info.value.reason == "unsupported-version"


def test_at_height_rewrites_the_message() -> None:
    err = MalformedError("bad", height=None).at_height(7)
    assert err.height == 7 and str(err) == "height 7: malformed: bad"


def test_reason_codes_are_the_specs() -> None:
    spec = (Path(__file__).resolve().parents[2] / "docs" / "ledger-format.md").read_text()
    table = spec.split("### 10.1 Reason codes", 1)[1].split("### 10.2", 1)[0]
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.M))
    concrete = {c.reason for c in vars(E).values()
                if isinstance(c, type) and issubclass(c, ChainError)} - {"invalid", "mismatch"}
    assert documented == concrete


def test_cached_text_fields_still_refuse_bad_values_every_time() -> None:
    """Text fields are validated once and cached; a bad one is refused on every call and a
    good one keeps its numeric fields checked."""
    good = L.Reading("m1", "1-0:1.8.0", 1, 0, "Wh", 1)
    assert L.encode_reading(good, bytes(16)) == L.encode_reading(good, bytes(16))
    for _ in range(2):
        with pytest.raises(ValueError, match="unit"):
            L.encode_reading(L.Reading("m1", "1-0:1.8.0", 1, 0, "W h", 1), bytes(16))
        with pytest.raises(ValueError, match="value"):
            L.encode_reading(L.Reading("m1", "1-0:1.8.0", 2**63, 0, "Wh", 1), bytes(16))
        with pytest.raises(ValueError, match="clock"):
            bad_clock = L.Reading("m1", "1-0:1.8.0", 1, 0, "Wh", 1, clock=2)  # type: ignore[arg-type]
            L.encode_reading(bad_clock, bytes(16))
