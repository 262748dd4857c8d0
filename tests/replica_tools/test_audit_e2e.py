"""``meterchain audit`` across three real replica servers on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from ledger import Block
from meterchain.cli import main
from tests.replica_tools.conftest import LiveReplica
from tests.support.chains import gateway_key, make_chain

SEED_A, SEED_B = b"audit-e2e-a", b"audit-e2e-b"
KEY_A, KEY_B = gateway_key(SEED_A), gateway_key(SEED_B)
CHAIN_A = make_chain(SEED_A, 40, 3)
CHAIN_B = make_chain(SEED_B, 9, 2)


def three(replicas: Callable[..., LiveReplica], a: list[Block] = CHAIN_A,
          b: list[Block] = CHAIN_B) -> list[LiveReplica]:
    reps = [replicas() for _ in range(3)]
    for rep in reps:
        rep.enroll(KEY_A, "a")
        rep.enroll(KEY_B, "b")
        rep.push_ok(KEY_A, a)
        rep.push_ok(KEY_B, b)
    return reps


def audit(capsys: pytest.CaptureFixture[str], reps: list[LiveReplica],
          *extra: str) -> tuple[int, dict]:
    code = main(["audit", *(r.url for r in reps), "--json", "--page-size", "7", *extra])
    out = capsys.readouterr()
    return code, json.loads(out.out.strip().splitlines()[-1])


def kinds(report: dict) -> set[tuple[str, str, str, int | None]]:
    return {(f["kind"], f["gateway"][:8], f["replica"], f["height"]) for f in report["findings"]}


def test_equal_copies_agree_and_exit_zero(replicas, capsys) -> None:
    reps = three(replicas)
    code, report = audit(capsys, reps)
    assert code == 0 and report["ok"] and report["findings"] == []
    assert report["gateways"] == 2
    assert report["blocks_checked"] == 3 * (len(CHAIN_A) + len(CHAIN_B))


def test_human_output_has_progress_bar_on_stderr(replicas, capsys) -> None:
    reps = three(replicas)
    assert main(["audit", *(r.url for r in reps)]) == 0
    out = capsys.readouterr()
    assert "all copies agree" in out.out
    assert "audit [" in out.err and "2/2" in out.err


def test_lagging_copy_and_missing_gateway_are_reported(replicas, capsys) -> None:
    reps = [replicas() for _ in range(3)]
    for i, rep in enumerate(reps):
        rep.enroll(KEY_A)
        rep.push_ok(KEY_A, CHAIN_A if i < 2 else CHAIN_A[:25])
        if i < 2:
            rep.enroll(KEY_B)
            rep.push_ok(KEY_B, CHAIN_B)
    code, report = audit(capsys, reps)
    # lag between consistent copies is reported, and is not a failure
    assert code == 0 and report["ok"] and report["discrepancies"] == 0
    assert kinds(report) == {("lagging", KEY_A.hex()[:8], reps[2].url, 25),
                             ("missing-gateway", KEY_B.hex()[:8], reps[2].url, None)}
    behind = {f["kind"]: f["behind"] for f in report["findings"]}
    assert behind == {"lagging": 15, "missing-gateway": len(CHAIN_B)}
    assert report["max_lag_blocks"] == 15
    # --max-lag turns too much lag into exit 3; within it, still 0
    assert audit(capsys, reps, "--max-lag", "14")[0] == 3
    assert audit(capsys, reps, "--max-lag", "15")[0] == 0
    # one sentence per finding, naming replica, kind and height
    assert main(["audit", *(r.url for r in reps), "-q"]) == 0
    out = capsys.readouterr().out
    assert (f"lag: replica {reps[2].url} lags behind on gateway {KEY_A.hex()[:16]}... "
            "at height 25: at height 24, 15 block(s) behind") in out
    assert "copies agree; 2 lagging (at most 15 block(s) behind)" in out


def flip_byte(record: bytes, offset: int) -> bytes:
    return record[:offset] + bytes([record[offset] ^ 0x40]) + record[offset + 1:]


def test_reading_altered_in_the_database_is_found(replicas, capsys) -> None:
    reps = three(replicas)
    record = reps[1].records(KEY_A)[23]
    changed = reps[1].sql("UPDATE blocks SET record = ? WHERE gateway_key = ? AND height = ?",
                          flip_byte(record, len(record) - 20), KEY_A, 23)
    assert changed == 1
    code, report = audit(capsys, reps)
    assert code == 1
    assert kinds(report) == {("tampered", KEY_A.hex()[:8], reps[1].url, 23)}
    assert "payload-hash-mismatch" in report["findings"][0]["detail"]


def test_header_and_hash_index_rewritten_is_found_by_binary_search(replicas, capsys) -> None:
    """An attacker rewrites a block's header and the stored hash to match: the served
    hashes diverge from height 11 and the block no longer verifies there."""
    from ledger import header_hash

    reps = three(replicas)
    record = reps[2].records(KEY_A)[11]
    forged = flip_byte(record, 90)  # inside time_end_ms of the header
    reps[2].sql("UPDATE blocks SET record = ?, hash = ? WHERE gateway_key = ? AND height = ?",
                forged, header_hash(forged[:194]), KEY_A, 11)
    code, report = audit(capsys, reps)
    assert code == 1
    assert kinds(report) == {("tampered", KEY_A.hex()[:8], reps[2].url, 11)}


def test_served_hash_that_differs_from_the_block_is_found(replicas, capsys) -> None:
    """The hash index of the last block is altered (the block's bytes are not): the
    binary search sees the copies differ there, the bytes show the index is false."""
    reps = three(replicas)
    last = len(CHAIN_B) - 1
    reps[0].sql("UPDATE blocks SET hash = ? WHERE gateway_key = ? AND height = ?",
                bytes(32), KEY_B, last)
    code, report = audit(capsys, reps)
    assert code == 1
    assert kinds(report) == {("tampered", KEY_B.hex()[:8], reps[0].url, last)}


def test_fork_between_replicas_is_reported_at_first_divergent_height(replicas, capsys) -> None:
    forked = CHAIN_A[:17] + make_chain(SEED_A, 10, 3, prev=CHAIN_A[16], meter_id="meter-x")
    reps = [replicas() for _ in range(3)]
    for i, rep in enumerate(reps):
        rep.enroll(KEY_A)
        rep.push_ok(KEY_A, forked if i == 1 else CHAIN_A)
    code, report = audit(capsys, reps)
    assert code == 1
    assert kinds(report) == {("fork", KEY_A.hex()[:8], reps[1].url, 17)}
    assert main(["audit", *(r.url for r in reps), "-q"]) == 1
    out = capsys.readouterr().out
    assert (f"DISCREPANCY: replica {reps[1].url} holds a fork of gateway "
            f"{KEY_A.hex()[:16]}... at height 17: holds a different") in out


def test_fork_evidence_recorded_by_a_replica_is_reported(replicas, capsys) -> None:
    reps = three(replicas)
    other = make_chain(SEED_B, 1, 2, prev=CHAIN_B[4], meter_id="meter-y")
    assert reps[0].push(KEY_B, other).status_code == 409
    code, report = audit(capsys, reps)
    assert code == 1
    assert kinds(report) == {("fork", KEY_B.hex()[:8], reps[0].url, 5)}


def test_unreachable_replica_is_a_usage_error(replicas, capsys) -> None:
    rep = replicas()
    code = main(["audit", rep.url, "http://127.0.0.1:9", "-q"])
    assert code == 2
    assert "cannot audit" in capsys.readouterr().err


def test_fewer_than_two_urls_is_a_usage_error(capsys) -> None:
    assert main(["audit", "http://127.0.0.1:9"]) == 2
    assert "at least two" in capsys.readouterr().err


def test_http_requests_are_not_logged_unless_verbose(replicas) -> None:
    """httpx logs every request at INFO; audit's output is its findings, not those."""
    import subprocess
    import sys

    reps = three(replicas)
    urls = [r.url for r in reps[:2]]
    quiet = subprocess.run([sys.executable, "-m", "meterchain", "audit", *urls, "-q"],
                           capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0, quiet.stderr
    assert "HTTP Request" not in quiet.stderr and quiet.stderr == ""
    loud = subprocess.run([sys.executable, "-m", "meterchain", "-v", "audit", *urls, "-q"],
                          capture_output=True, text=True, timeout=60)
    assert loud.returncode == 0
    assert "HTTP Request: GET" in loud.stderr
