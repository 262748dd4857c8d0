"""Sealed payloads verified without any key; proofs and CSV export with the utility's key."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger import PayloadHashMismatchError, Quality, block_readings
from ledger.errors import ProofError
from ledger.prooffile import PROOF_FORMAT, proof_from_json
from replica.config import Limits
from tests.replica.conftest import RunningReplica, enroll
from tests.support.chains import make_chain, utility_keypair

SEED = b"sealed-gw"


def key_file(tmp_path: Path) -> Path:
    sk, _ = utility_keypair()
    p = tmp_path / "utility.key"  # as `meterchain keygen --utility` writes it
    p.write_text(f"meterchain-x25519-secret-key-v1\n{sk.hex()}\n")
    p.chmod(0o600)
    return p


def test_sealed_blocks_verified_and_refused_without_key(replica: RunningReplica) -> None:
    _, pk = utility_keypair()
    key = enroll(replica.storage, SEED)
    chain = make_chain(SEED, 4, 5, recipient_key=pk)
    assert replica.push(key, chain[:2]).status_code == 200  # no key needed to verify
    b = chain[2]
    flipped = type(b)(b.header, b.signature, b.payload[:-1] + bytes([b.payload[-1] ^ 1]))
    r = replica.push(key, [flipped])
    assert r.status_code == 422
    assert r.json()["error"] == PayloadHashMismatchError.reason
    assert replica.push(key, chain[2:]).json()["stored"] == 2
    # without the utility key: no CSV, no proof for sealed blocks
    r = replica.http.get(f"/v1/gateways/{key.hex()}/readings.csv")
    assert r.status_code == 409 and r.json()["error"] == "sealed"
    r = replica.http.get(f"/v1/gateways/{key.hex()}/proof", params={"height": 1, "index": 0})
    assert r.status_code == 409 and r.json()["error"] == "sealed"


def test_csv_export_decrypts_with_utility_key(make_replica: Callable[..., RunningReplica],
                                              tmp_path: Path) -> None:
    sk, pk = utility_keypair()
    replica = make_replica(Limits(), key_file(tmp_path))
    key = enroll(replica.storage, SEED)
    plain = make_chain(SEED, 2, 3, start_ms=1_000_000, span_ms=3000)
    sealed = make_chain(SEED, 2, 3, prev=plain[-1], span_ms=3000, recipient_key=pk)
    assert replica.push(key, plain + sealed).status_code == 200
    r = replica.http.get(f"/v1/gateways/{key.hex()}/readings.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    expected = [(b.height, i, rd) for b in plain + sealed
                for i, (rd, _) in enumerate(block_readings(b, sk))]
    assert len(rows) == len(expected) == 12
    for row, (height, index, rd) in zip(rows, expected, strict=True):
        assert (int(row["height"]), int(row["index"]), row["meter_id"], row["obis"]) == (
            height, index, rd.meter_id, rd.obis)
        assert (int(row["value"]), row["decimal"], int(row["timestamp_ms"])) == (
            rd.value, rd.decimal, rd.timestamp_ms)
        assert row["gateway_key"] == key.hex() and row["unit"] == "Wh"
        assert int(row["quality"]) == Quality.NONE
    # a time range selects readings by their own timestamps, half-open
    t0 = int(rows[4]["timestamp_ms"])
    t1 = int(rows[9]["timestamp_ms"])
    r = replica.http.get(f"/v1/gateways/{key.hex()}/readings.csv",
                         params={"from_ms": t0, "to_ms": t1})
    ranged = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["timestamp_ms"] for x in ranged] == [x["timestamp_ms"] for x in rows[4:9]]
    r = replica.http.get(f"/v1/gateways/{key.hex()}/readings.csv",
                         params={"from_ms": 10, "to_ms": 5})
    assert r.status_code == 400


@pytest.mark.parametrize("sealed", [False, True])
def test_inclusion_proof_verifies_offline(make_replica: Callable[..., RunningReplica],
                                          tmp_path: Path, sealed: bool) -> None:
    sk, pk = utility_keypair()
    replica = make_replica(Limits(), key_file(tmp_path))
    key = enroll(replica.storage, SEED)
    chain = make_chain(SEED, 3, 7, recipient_key=pk if sealed else None)
    assert replica.push(key, chain).status_code == 200
    r = replica.http.get(f"/v1/gateways/{key.hex()}/proof", params={"height": 2, "index": 5})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["format"] == PROOF_FORMAT  # the same file `meterchain prove` writes
    proof = proof_from_json(json.dumps(doc))
    reading = proof.verify(gateway_key=key)
    assert reading == block_readings(chain[2], sk)[5][0]
    assert proof.header == chain[2].header
    # a proof altered in transit fails offline
    doc["path"][0] = "00" * 32
    with pytest.raises(ProofError):
        proof_from_json(json.dumps(doc)).verify(gateway_key=key)
    r = replica.http.get(f"/v1/gateways/{key.hex()}/proof", params={"height": 2, "index": 7})
    assert r.status_code == 404 and r.json()["error"] == "no-reading"
    r = replica.http.get(f"/v1/gateways/{key.hex()}/proof", params={"height": 3, "index": 0})
    assert r.status_code == 404 and r.json()["error"] == "no-block"

