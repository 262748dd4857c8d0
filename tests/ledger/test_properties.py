"""Property tests of the ledger core (hypothesis)."""

from __future__ import annotations

import hashlib

import nacl.public
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger as L
from ledger.errors import ChainError, DecryptError, MalformedError
from ledger.readings import _encode_entries as encode_entries
from tests.ledger.conftest import GATEWAY_SEED, UTILITY_SK, WRONG_SK, readings, salts

UTILITY_PK = bytes(nacl.public.PrivateKey(UTILITY_SK).public_key)
T0 = 1_767_225_600_000


def build(groups: list[list[L.Reading]], salt_bytes: bytes, sealed: bool) -> list[L.Block]:
    blocks, prev, t = [], None, T0
    for bi, group in enumerate(groups):
        s = [hashlib.sha256(salt_bytes + bytes([bi, i])).digest()[:16]
             for i in range(len(group))]
        kw = {"recipient_key": UTILITY_PK, "ephemeral_sk": hashlib.sha256(
            salt_bytes + bytes([bi])).digest()} if sealed else {}
        blk = L.seal_block(GATEWAY_SEED, prev, group, s, t, t + bi, **kw)  # type: ignore[arg-type]
        blocks.append(blk)
        prev, t = blk.header, t + bi
    return blocks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=st.lists(st.lists(readings, max_size=9), min_size=1, max_size=4),
       salt=st.binary(max_size=8), sealed=st.booleans())
def test_any_readings_seal_verify_and_read_back(groups: list[list[L.Reading]], salt: bytes,
                                                sealed: bool) -> None:
    blocks = build(groups, salt, sealed)
    records = [b.encode() for b in blocks]
    head = L.verify_records(records)
    assert head is not None and head.height == len(groups) - 1
    assert head.hash == blocks[-1].hash
    assert L.verify_chain(blocks) == head
    for blk, group in zip(blocks, groups, strict=True):
        assert L.Block.decode(blk.encode()) == blk
        got = L.block_readings(blk, UTILITY_SK if sealed else None)
        assert [r for r, _ in got] == group
        if sealed:
            assert L.open_block(blk, UTILITY_SK) == group
            with pytest.raises(DecryptError):
                L.open_block(blk, WRONG_SK)
            with pytest.raises(DecryptError):
                L.block_readings(blk)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), sealed=st.booleans())
def test_any_single_bit_flip_in_a_record_is_detected(data: st.DataObject, sealed: bool) -> None:
    group = data.draw(st.lists(readings, max_size=5))
    blocks = build([[], group, []], b"flip", sealed)
    records = [b.encode() for b in blocks]
    target = data.draw(st.integers(0, 2))
    bit = data.draw(st.integers(0, len(records[target]) * 8 - 1))
    bad = bytearray(records[target])
    bad[bit // 8] ^= 1 << (bit % 8)
    records[target] = bytes(bad)
    with pytest.raises(ChainError) as info:
        L.verify_records(records)
    assert info.value.height == target


def rfc6962_mth(data: list[bytes]) -> bytes:
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + rfc6962_mth(data[:k]) + rfc6962_mth(data[k:])).digest()


@given(st.lists(st.binary(max_size=40), max_size=70))
def test_merkle_root_is_the_rfc6962_definition(data: list[bytes]) -> None:
    assert L.merkle_root([L.leaf_hash(d) for d in data]) == rfc6962_mth(data)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=20), min_size=1, max_size=40), st.data())
def test_inclusion_proofs_verify_for_every_leaf_and_fail_when_tampered(
    data: list[bytes], draw: st.DataObject
) -> None:
    leaves = [L.leaf_hash(d) for d in data]
    root = L.merkle_root(leaves)
    n = len(data)
    for i in range(n):
        path = L.inclusion_proof(leaves, i)
        L.verify_inclusion(data[i], i, n, path, root)
    i = draw.draw(st.integers(0, n - 1))
    path = L.inclusion_proof(leaves, i)
    tampered: list[tuple[bytes, int, list[bytes]]] = [(data[i] + b"x", i, path),
                                                      (data[i], i, [*path, root])]
    if path:
        k = draw.draw(st.integers(0, len(path) - 1))
        bit = draw.draw(st.integers(0, 255))
        flipped = bytearray(path[k])
        flipped[bit // 8] ^= 1 << (bit % 8)
        tampered += [(data[i], i, [*path[:k], bytes(flipped), *path[k + 1:]]),
                     (data[i], i, path[:-1])]
    j = draw.draw(st.integers(0, n - 1))
    if data[j] != data[i]:
        tampered.append((data[i], j, L.inclusion_proof(leaves, j)))
    for d, idx, p in tampered:
        with pytest.raises(ChainError) as info:
            L.verify_inclusion(d, idx, n, p, root)
        assert info.value.reason == "bad-proof"


def slow_ok(data: bytes) -> bool:
    try:
        L.decode_reading(data)
    except MalformedError:
        return False
    return True


def mutate(enc: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(enc)
    for kind, pos, val in ops:
        if not out and kind != 2:
            continue
        p = pos % (len(out) + 1)
        if kind == 0 and p < len(out):
            out[p] = val
        elif kind == 1 and p < len(out):
            del out[p]
        elif kind == 2:
            out.insert(p, val)
        elif kind == 3:
            del out[p:]
    return bytes(out)


@settings(max_examples=1500, deadline=None)
@given(readings, salts, st.lists(st.tuples(st.integers(0, 3), st.integers(0, 200),
                                           st.integers(0, 255)), max_size=3))
def test_fast_reading_check_agrees_with_decode_and_reencode(
    r: L.Reading, salt: bytes, ops: list[tuple[int, int, int]]
) -> None:
    data = mutate(L.encode_reading(r, salt), ops)
    slow = slow_ok(data)
    assert (L.reading_encoding_error(data) is None) == slow
    assert L.is_canonical_reading(data) == slow


@settings(max_examples=500)
@given(st.binary(max_size=130))
def test_fast_reading_check_agrees_on_arbitrary_bytes(data: bytes) -> None:
    slow = slow_ok(data)
    assert (L.reading_encoding_error(data) is None) == slow
    assert L.is_canonical_reading(data) == slow


@settings(max_examples=1000)
@given(st.binary(min_size=16, max_size=16), st.integers(0, 70), st.binary(max_size=70),
       st.binary(min_size=15, max_size=15), st.integers(0, 20), st.binary(max_size=20),
       st.binary(min_size=11, max_size=11))
def test_fast_reading_check_agrees_on_structured_bytes(
    salt: bytes, mlen: int, mid: bytes, middle: bytes, ulen: int, unit: bytes, tail: bytes
) -> None:
    """Random field bytes in the reading layout, so most draws reach the deep checks."""
    data = salt + bytes([mlen]) + mid + middle + bytes([ulen]) + unit + tail
    slow = slow_ok(data)
    assert (L.reading_encoding_error(data) is None) == slow
    assert L.is_canonical_reading(data) == slow


@given(readings, salts)
def test_reading_round_trip(r: L.Reading, salt: bytes) -> None:
    enc = L.encode_reading(r, salt)
    assert L.decode_reading(enc) == (r, salt)
    assert len(enc) == 44 + len(r.meter_id.encode()) + len(r.unit)


@settings(max_examples=150, deadline=None)
@given(group=st.lists(readings, max_size=12), salt_list=st.lists(salts, min_size=12,
                                                                 max_size=12))
def test_sealing_fast_path_encodes_as_the_reference(group: list[L.Reading],
                                                   salt_list: list[bytes]) -> None:
    """seal_block's one-pass encoder gives exactly encode_reading's bytes and leaves."""
    ss = salt_list[: len(group)]
    payload, leaves = encode_entries(group, ss)
    encoded = [L.encode_reading(r, s) for r, s in zip(group, ss, strict=True)]
    assert payload == L.encode_payload(encoded)
    assert leaves == [L.leaf_hash(e) for e in encoded]
