"""Every bad push gets its 4xx with a reason, and the replica stores nothing from it."""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import time
from collections.abc import Callable

import nacl.signing
import pytest

from ledger import Block, Header, header_hash, verify_fork
from replica.config import Limits
from tests.replica.conftest import RunningReplica, enroll
from tests.support.chains import encode_b64, gateway_key, make_chain, signing_seed

SEED = b"refusals"


def resigned(header: Header, payload: bytes, seed: bytes = SEED) -> Block:
    """A block with this (possibly inconsistent) header, validly signed by ``seed``."""
    sk = nacl.signing.SigningKey(signing_seed(seed))
    return Block(header, sk.sign(header_hash(header.encode())).signature, payload)


@pytest.fixture
def loaded(replica: RunningReplica) -> tuple[RunningReplica, bytes, list[Block]]:
    """A replica holding blocks 0..2 of SEED's chain (blocks 3..5 not yet pushed)."""
    key = enroll(replica.storage, SEED)
    chain = make_chain(SEED, 6, 3)
    assert replica.push(key, chain[:3]).status_code == 200
    return replica, key, chain


def refused(replica: RunningReplica, response_status: int, code: str,
            push: Callable[[], object]) -> dict[str, object]:
    """Run ``push``; check its status and code, that it stored nothing, and return the body."""
    before = replica.snapshot()
    r = push()
    assert r.status_code == response_status, r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    after = replica.snapshot()
    if code == "fork":
        after["forks"] = before["forks"]
    assert after == before
    return dict(body)


def test_forged_signature(loaded: tuple[RunningReplica, bytes, list[Block]]) -> None:
    replica, key, chain = loaded
    b = chain[3]
    forged = Block(b.header, bytes([b.signature[0] ^ 1]) + b.signature[1:], b.payload)
    body = refused(replica, 422, "bad-signature", lambda: replica.push(key, [forged]))
    assert body["height"] == 3
    assert body["head"] == {"height": 2, "hash": chain[2].hash.hex()}


def test_unknown_key(replica: RunningReplica) -> None:
    chain = make_chain(b"stranger", 2, 1)
    body = refused(replica, 403, "unknown-gateway",
                   lambda: replica.push(gateway_key(b"stranger"), chain))
    assert body["head"] is None


def test_revoked_key_refuses_blocks_after_revocation(
        loaded: tuple[RunningReplica, bytes, list[Block]]) -> None:
    replica, key, chain = loaded
    replica.storage.revoke(key, chain[4].header.time_start_ms)
    # block 3 ends before the revocation: still accepted
    assert replica.push(key, chain[3:4]).json()["stored"] == 1
    body = refused(replica, 403, "revoked", lambda: replica.push(key, chain[4:]))
    assert body["height"] == 4
    # earlier blocks stay valid and are still served
    assert replica.head(key)["height"] == 3


def test_wrong_previous_hash(loaded: tuple[RunningReplica, bytes, list[Block]]) -> None:
    replica, key, chain = loaded
    other = make_chain(SEED, 4, 3, meter_id="meter-2")  # same key, different history
    body = refused(replica, 422, "broken-link", lambda: replica.push(key, other[3:4]))
    assert body["height"] == 3


def test_height_gap(loaded: tuple[RunningReplica, bytes, list[Block]]) -> None:
    replica, key, chain = loaded
    body = refused(replica, 409, "gap", lambda: replica.push(key, chain[4:]))
    assert body["expected_height"] == 3
    not_consecutive = [chain[3], chain[5]]
    body = refused(replica, 409, "gap", lambda: replica.push(key, not_consecutive))
    assert body["expected_height"] == 4


def test_replay_of_another_gateways_block(
        loaded: tuple[RunningReplica, bytes, list[Block]]) -> None:
    replica, key, chain = loaded
    other_key = enroll(replica.storage, b"neighbour")
    body = refused(replica, 422, "gateway-mismatch", lambda: replica.push(other_key, chain[:1]))
    assert body["head"] is None and body["index"] == 0


def test_fork_keeps_both_signed_headers(loaded: tuple[RunningReplica, bytes, list[Block]]) -> None:
    replica, key, chain = loaded
    other = make_chain(SEED, 3, 2)  # same key, different readings from genesis on
    body = refused(replica, 409, "fork", lambda: replica.push(key, other[1:3]))
    assert body["height"] == 1
    forks = replica.http.get("/v1/forks").json()["forks"]
    assert len(forks) == 1
    f = forks[0]
    assert (f["key"], f["height"]) == (key.hex(), 1)
    a = Header.decode(base64.b64decode(f["a"]["header"]))
    b = Header.decode(base64.b64decode(f["b"]["header"]))
    assert a == chain[1].header and b == other[1].header
    assert verify_fork(a, bytes.fromhex(f["a"]["signature"]),
                       b, bytes.fromhex(f["b"]["signature"])) == 1
    # pushing the same fork again keeps one copy of the evidence
    assert replica.push(key, other[1:2]).status_code == 409
    assert len(replica.http.get("/v1/forks").json()["forks"]) == 1


def test_forged_fork_claim_is_not_evidence(
        loaded: tuple[RunningReplica, bytes, list[Block]]) -> None:
    replica, key, chain = loaded
    other = make_chain(SEED, 2, 2)
    b = other[1]
    forged = Block(b.header, bytes(64), b.payload)
    refused(replica, 422, "bad-signature", lambda: replica.push(key, [forged]))
    assert replica.http.get("/v1/forks").json()["forks"] == []


def test_batch_is_atomic(loaded: tuple[RunningReplica, bytes, list[Block]]) -> None:
    replica, key, chain = loaded
    tampered = dataclasses.replace(chain[4], payload=chain[4].payload[:-1] + b"\x01")
    body = refused(replica, 422, "payload-hash-mismatch",
                   lambda: replica.push(key, [chain[3], tampered, chain[5]]))
    assert body["height"] == 4
    assert replica.head(key)["height"] == 2  # block 3 before the bad one was not kept


def test_merkle_mismatch_under_valid_signature(
        loaded: tuple[RunningReplica, bytes, list[Block]]) -> None:
    replica, key, chain = loaded
    b = chain[3]
    wrong = resigned(dataclasses.replace(b.header, merkle_root=bytes(32)), b.payload)
    body = refused(replica, 422, "merkle-mismatch", lambda: replica.push(key, [wrong]))
    assert body["height"] == 3


def test_oversized_body_and_batch(make_replica: Callable[..., RunningReplica]) -> None:
    replica = make_replica(Limits(max_body_bytes=4096, max_blocks_per_batch=3))
    key = enroll(replica.storage, SEED)
    chain = make_chain(SEED, 4, 20)
    body = refused(replica, 413, "too-large", lambda: replica.push(key, chain[:3]))
    assert "4096" in str(body["detail"])
    small = make_chain(SEED, 4, 1)
    refused(replica, 413, "too-large", lambda: replica.push(key, small))
    assert replica.push(key, small[:3]).status_code == 200


@pytest.mark.parametrize("content", [
    b"{not json", b"\xff\xfe", b"", b"[]", b"null", b'{"blocks": "AAAA"}', b'{"blocks": null}',
    b'{"blox": []}', b'{"blocks": [1]}', b'{"blocks": [["a"]]}', b'{"blocks": ["not base64!"]}',
    b'{"blocks": ["AAAA"]}', b'{"blocks": ["' + base64.b64encode(b"MCHB\x01" + bytes(300)) + b'"]}',
    b"[" * 50_000, b'{"blocks": ' + b"[" * 50_000,  # nested past the parser's depth
])
def test_malformed_json_and_wrong_types(loaded: tuple[RunningReplica, bytes, list[Block]],
                                        content: bytes) -> None:
    replica, key, _ = loaded
    body = refused(replica, 400, "malformed", lambda: replica.push_raw(key, content))
    assert body["head"] is not None


def test_malformed_record_names_its_index(
        loaded: tuple[RunningReplica, bytes, list[Block]]) -> None:
    replica, key, chain = loaded
    records = encode_b64(chain[3:5]) + [base64.b64encode(chain[5].encode()[:-1]).decode()]
    body = refused(replica, 400, "malformed",
                   lambda: replica.push_raw(key, json.dumps({"blocks": records})))
    assert body["index"] == 2


@pytest.mark.parametrize("path,params", [
    ("/v1/gateways/{k}/blocks", {"from": "abc"}),
    ("/v1/gateways/{k}/blocks", {"from": "-1"}),
    ("/v1/gateways/{k}/blocks", {"from": str(2**70)}),
    ("/v1/gateways/{k}/blocks", {"limit": "0"}),
    ("/v1/gateways/{k}/blocks/-5/hash", {}),
    ("/v1/gateways/{k}/blocks/x/hash", {}),
    ("/v1/gateways/{k}/proof", {"height": "0"}),
    ("/v1/gateways/" + "AB" * 32 + "/head", {}),  # a key, but not lowercase (names: 404)
    ("/v1/gateways/{k}/readings.csv", {"to_ms": str(2**70)}),
    ("/v1/gateways/{k}/readings.csv", {"from_ms": "-1"}),
])
def test_bad_read_parameters(loaded: tuple[RunningReplica, bytes, list[Block]], path: str,
                             params: dict[str, str]) -> None:
    replica, key, _ = loaded
    r = replica.http.get(path.format(k=key.hex()), params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "malformed"


def test_absurd_heights(loaded: tuple[RunningReplica, bytes, list[Block]]) -> None:
    replica, key, chain = loaded
    b = chain[3]
    for height in (2**63 - 1, 2**40, 4):
        far = resigned(dataclasses.replace(b.header, height=height), b.payload)
        body = refused(replica, 409, "gap", functools.partial(replica.push, key, [far]))
        assert body["expected_height"] == 3
    assert replica.http.get(f"/v1/gateways/{key.hex()}/blocks/{2**63 - 1}/hash"
                            ).status_code == 404
    r = replica.http.get(f"/v1/gateways/{key.hex()}/blocks",
                         params={"from": 2**63 - 1, "limit": 1000})
    assert r.status_code == 200 and r.json() == {"blocks": []}


def test_future_timestamps(loaded: tuple[RunningReplica, bytes, list[Block]]) -> None:
    replica, key, chain = loaded
    tomorrow = time.time_ns() // 1_000_000 + 86_400_000
    future = make_chain(SEED, 1, 2, prev=chain[2], start_ms=0, span_ms=0)[0]
    future = resigned(dataclasses.replace(future.header, time_start_ms=tomorrow,
                                          time_end_ms=tomorrow + 1000), future.payload)
    body = refused(replica, 422, "bad-time", lambda: replica.push(key, [future]))
    assert body["height"] == 3


def test_rate_limit(make_replica: Callable[..., RunningReplica]) -> None:
    # one token per 100 s: the third push is over budget however slow the machine is
    replica = make_replica(Limits(rate_per_gateway=0.01, rate_burst=2))
    key = enroll(replica.storage, SEED)
    chain = make_chain(SEED, 3, 1)
    assert replica.push(key, chain[:1]).status_code == 200
    assert replica.push(key, chain[1:2]).status_code == 200
    before = replica.snapshot()
    r = replica.push(key, chain[2:])
    assert r.status_code == 429
    assert r.json()["error"] == "rate-limited"
    assert int(r.headers["Retry-After"]) >= 1
    assert replica.snapshot() == before
    other = enroll(replica.storage, b"other-gw")  # the limit is per gateway
    assert replica.push(other, make_chain(b"other-gw", 1, 1)).status_code == 200
