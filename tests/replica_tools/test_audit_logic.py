"""The pure comparison logic of ``meterchain audit`` on synthetic copies (no I/O)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import Block
from replica.audit import (
    ChainCheck,
    assess_forks,
    assess_gateway,
    check_records,
    first_divergence,
    pick_reference,
)
from replica.client import EMPTY_HEAD, Head
from tests.support.chains import gateway_key, make_chain

SEED = b"audit-gw"
KEY = gateway_key(SEED)
CHAIN = make_chain(SEED, 8, 2)
RECORDS = [b.encode() for b in CHAIN]
FORK = CHAIN[:4] + make_chain(SEED, 4, 2, prev=CHAIN[3], meter_id="other-meter")


def head_of(blocks: list[Block]) -> Head:
    return Head(blocks[-1].height, blocks[-1].hash) if blocks else EMPTY_HEAD


def check(blocks: list[Block]) -> ChainCheck:
    return check_records(KEY, [b.encode() for b in blocks])


def flip(record: bytes, offset: int) -> bytes:
    return record[:offset] + bytes([record[offset] ^ 0x01]) + record[offset + 1:]


# --- binary search ---------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 5000), data=st.data())
def test_first_divergence_finds_the_first_differing_height(n: int, data: st.DataObject) -> None:
    d = data.draw(st.integers(0, n), label="first differing height (n = none)")
    probes: list[int] = []

    def equal_at(h: int) -> bool:
        assert 0 <= h < n, "probe out of range"
        probes.append(h)
        return h < d

    got = first_divergence(n - 1, equal_at)
    assert got == (None if d == n else d)
    assert len(probes) <= math.ceil(math.log2(n)) + 1


def test_first_divergence_of_empty_range_probes_nothing() -> None:
    def never(h: int) -> bool:
        raise AssertionError(f"probed {h}")

    assert first_divergence(-1, never) is None


# --- one copy --------------------------------------------------------------------------


def test_valid_copy_checks_clean_with_every_hash() -> None:
    c = check(CHAIN)
    assert c.error is None and c.gap_at is None
    assert c.hashes == [b.hash for b in CHAIN]


def test_altered_reading_is_found_at_its_height() -> None:
    records = list(RECORDS)
    records[5] = flip(records[5], len(records[5]) - 3)  # inside the last reading
    c = check_records(KEY, records)
    assert c.error is not None and c.bad_height == 5
    assert c.error.reason == "payload-hash-mismatch"
    assert c.hashes[5] == CHAIN[5].hash  # the header (so its hash) is unchanged


def test_altered_header_is_found_at_its_height() -> None:
    records = list(RECORDS)
    records[2] = flip(records[2], 120)  # time span bytes of the header
    c = check_records(KEY, records)
    assert c.bad_height == 2
    assert c.error is not None and c.error.reason in ("bad-signature", "bad-time")
    assert c.hashes[2] != CHAIN[2].hash


def test_truncated_record_is_malformed_at_its_height() -> None:
    records = list(RECORDS)
    records[6] = records[6][:-1]
    c = check_records(KEY, records)
    assert c.bad_height == 6 and c.error is not None and c.error.reason == "malformed"


def test_out_of_order_records_stop_the_check() -> None:
    records = RECORDS[:3] + RECORDS[4:]
    c = check_records(KEY, records)
    assert c.gap_at == 3 and c.count == 3


# --- across copies ---------------------------------------------------------------------


def test_all_copies_agree_gives_no_finding() -> None:
    heads = {"a": head_of(CHAIN), "b": head_of(CHAIN), "c": head_of(CHAIN)}
    assert assess_gateway(KEY, heads, {r: check(CHAIN) for r in heads}) == []


def test_lagging_copy_is_reported_with_how_far_behind() -> None:
    heads = {"a": head_of(CHAIN), "b": head_of(CHAIN[:5]), "c": EMPTY_HEAD}
    checks = {"a": check(CHAIN), "b": check(CHAIN[:5]), "c": check([])}
    findings = assess_gateway(KEY, heads, checks)
    got = {(f.kind, f.replica, f.height, f.other) for f in findings}
    assert got == {("lagging", "b", 5, "a"), ("lagging", "c", 0, "a")}
    assert "3 block(s) behind a" in next(f for f in findings if f.replica == "b").detail


def test_missing_gateway_and_missing_blocks() -> None:
    heads = {"a": head_of(CHAIN), "b": None, "c": head_of(CHAIN)}
    checks = {"a": check(CHAIN), "c": check(CHAIN[:6])}  # c claims 7 but serves 0..5
    got = {(f.kind, f.replica, f.height) for f in assess_gateway(KEY, heads, checks)}
    assert ("missing-gateway", "b", None) in got
    assert ("missing-blocks", "c", 6) in got


def test_fork_is_reported_at_first_divergent_height() -> None:
    heads = {"a": head_of(CHAIN), "b": head_of(FORK)}
    findings = assess_gateway(KEY, heads, {"a": check(CHAIN), "b": check(FORK)})
    assert [(f.kind, f.height) for f in findings] == [("fork", 4)]


def test_tampered_copy_is_reported_once_at_its_first_bad_height() -> None:
    records = list(RECORDS)
    records[3] = flip(records[3], len(records[3]) - 3)
    bad = check_records(KEY, records)
    heads = {"a": head_of(CHAIN), "b": head_of(CHAIN), "c": head_of(CHAIN)}
    findings = assess_gateway(KEY, heads, {"a": check(CHAIN), "b": bad, "c": check(CHAIN)})
    assert [(f.kind, f.replica, f.height) for f in findings] == [("tampered", "b", 3)]
    assert pick_reference(heads, {"a": check(CHAIN), "b": bad, "c": check(CHAIN)}) == "a"


def test_tampered_reference_candidate_is_not_chosen() -> None:
    records = list(RECORDS)
    records[1] = flip(records[1], 100)
    heads = {"a": head_of(CHAIN), "b": head_of(CHAIN)}
    checks = {"a": check_records(KEY, records), "b": check(CHAIN)}
    assert pick_reference(heads, checks) == "b"
    assert {(f.kind, f.replica, f.height) for f in assess_gateway(KEY, heads, checks)} == {
        ("tampered", "a", 1)}


def test_head_hash_that_differs_from_the_block_is_tampering() -> None:
    heads = {"a": head_of(CHAIN), "b": Head(CHAIN[-1].height, bytes(32))}
    findings = assess_gateway(KEY, heads, {"a": check(CHAIN), "b": check(CHAIN)})
    assert [(f.kind, f.replica, f.height) for f in findings] == [("tampered", "b", 7)]


def test_served_hash_that_differs_from_the_bytes_is_tampering() -> None:
    heads = {"a": head_of(CHAIN), "b": head_of(CHAIN)}
    served = {"a": {2: CHAIN[2].hash, 7: CHAIN[7].hash}, "b": {2: bytes(32), 7: CHAIN[7].hash}}
    findings = assess_gateway(KEY, heads, {"a": check(CHAIN), "b": check(CHAIN)}, served, "a")
    assert [(f.kind, f.replica, f.height) for f in findings] == [("tampered", "b", 2)]


def test_recorded_fork_evidence_is_verified() -> None:
    a, b = CHAIN[4], FORK[4]
    good = (KEY, 4, a.header.encode(), a.signature, b.header.encode(), b.signature)
    forged = (KEY, 4, a.header.encode(), a.signature, b.header.encode(), bytes(64))
    assert [(f.kind, f.height) for f in assess_forks("r", [good])] == [("fork", 4)]
    assert [(f.kind, f.height) for f in assess_forks("r", [forged])] == [("tampered", 4)]
