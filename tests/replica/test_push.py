"""End to end over loopback: a gateway's chain pushed, resent, out of order, across a restart."""

from __future__ import annotations

import base64
from collections.abc import Callable

from ledger import Block, verify_chain
from tests.replica.conftest import RunningReplica, StorageFactory, enroll
from tests.support.chains import make_chain


def test_push_chain_in_batches_then_read_it_back(replica: RunningReplica) -> None:
    key = enroll(replica.storage, b"e2e", "north", "site-1")
    chain = make_chain(b"e2e", 7, 3)
    assert replica.head(key) == {"height": -1, "hash": None}
    r = replica.push(key, chain[:4])
    assert r.status_code == 200, r.text
    assert r.json() == {"head": {"height": 3, "hash": chain[3].hash.hex()}, "stored": 4,
                        "duplicates": 0}
    r = replica.push(key, chain[4:])
    assert r.json()["stored"] == 3
    assert replica.head(key) == {"height": 6, "hash": chain[6].hash.hex()}
    got = replica.http.get(f"/v1/gateways/{key.hex()}/blocks", params={"from": 2, "limit": 3})
    records = [base64.b64decode(s) for s in got.json()["blocks"]]
    assert records == [b.encode() for b in chain[2:5]]
    h = replica.http.get(f"/v1/gateways/{key.hex()}/blocks/5/hash").json()
    assert h == {"height": 5, "hash": chain[5].hash.hex()}
    assert replica.http.get(f"/v1/gateways/{key.hex()}/blocks/7/hash").status_code == 404
    gws = replica.http.get("/v1/gateways").json()["gateways"]
    assert len(gws) == 1
    g = gws[0]
    assert (g["key"], g["name"], g["site"], g["height"], g["head_hash"], g["revoked_at_ms"]) == (
        key.hex(), "north", "site-1", 6, chain[6].hash.hex(), None)
    assert isinstance(g["last_seen_ms"], int) and g["last_seen_ms"] > 1_700_000_000_000


def test_resend_is_idempotent(replica: RunningReplica) -> None:
    key = enroll(replica.storage, b"resend")
    chain = make_chain(b"resend", 5, 2)
    assert replica.push(key, chain[:3]).status_code == 200
    before = replica.snapshot()
    r = replica.push(key, chain[:3])  # exact resend
    assert r.status_code == 200
    assert r.json() == {"head": {"height": 2, "hash": chain[2].hash.hex()}, "stored": 0,
                        "duplicates": 3}
    assert replica.snapshot() == before
    r = replica.push(key, chain[1:5])  # overlapping resend: two old, two new
    assert r.json() == {"head": {"height": 4, "hash": chain[4].hash.hex()}, "stored": 2,
                        "duplicates": 2}
    assert replica.push(key, []).json() == {"head": {"height": 4, "hash": chain[4].hash.hex()},
                                            "stored": 0, "duplicates": 0}


def test_out_of_order_gets_gap_with_expected_height_then_fills(replica: RunningReplica) -> None:
    key = enroll(replica.storage, b"ooo")
    chain = make_chain(b"ooo", 6, 1)
    r = replica.push(key, chain[2:4])
    assert r.status_code == 409
    body = r.json()
    assert (body["error"], body["expected_height"], body["head"]) == ("gap", 0, None)
    assert replica.push(key, chain[:2]).status_code == 200
    r = replica.push(key, chain[4:])
    assert r.status_code == 409
    assert r.json()["expected_height"] == 2
    assert r.json()["head"] == {"height": 1, "hash": chain[1].hash.hex()}
    assert replica.push(key, chain[2:]).json()["stored"] == 4
    blocks = replica.http.get(f"/v1/gateways/{key.hex()}/blocks", params={"limit": 50})
    got = [Block.decode(base64.b64decode(s)) for s in blocks.json()["blocks"]]
    head = verify_chain(got)
    assert head is not None and head.hash == chain[-1].hash


def test_push_across_restart(storage_factory: StorageFactory,
                             make_replica: Callable[..., RunningReplica]) -> None:
    chain = make_chain(b"restart", 6, 2)
    first = make_replica()
    key = enroll(first.storage, b"restart")
    assert first.push(key, chain[:3]).status_code == 200
    port = first.port
    first.stop()
    first.storage.close()
    second = make_replica(storage=storage_factory.open(), port=port)
    assert second.head(key) == {"height": 2, "hash": chain[2].hash.hex()}
    r = second.push(key, chain[2:])  # the gateway resends its last unacknowledged block
    assert r.json() == {"head": {"height": 5, "hash": chain[5].hash.hex()}, "stored": 3,
                        "duplicates": 1}


def test_many_gateways_are_kept_apart(replica: RunningReplica) -> None:
    chains = {}
    for i in range(4):
        seed = f"many-{i}".encode()
        key = enroll(replica.storage, seed, f"gw{i}")
        chains[key] = make_chain(seed, 2 + i, 1)
    for key, chain in chains.items():
        assert replica.push(key, chain).status_code == 200
    for key, chain in chains.items():
        assert replica.head(key) == {"height": len(chain) - 1, "hash": chain[-1].hash.hex()}


def test_health_and_openapi(replica: RunningReplica) -> None:
    assert replica.http.get("/v1/health").json()["status"] == "ok"
    spec = replica.http.get("/openapi.json").json()
    paths = spec["paths"]
    for p in ("/v1/gateways/{gw}/blocks", "/v1/gateways/{gw}/head", "/v1/gateways/{gw}/proof",
              "/v1/gateways/{gw}/blocks/{height}/hash", "/v1/gateways", "/v1/forks",
              "/v1/gateways/{gw}/readings.csv", "/v1/health"):
        assert p in paths, p
    assert "requestBody" in paths["/v1/gateways/{gw}/blocks"]["post"]


def test_concurrent_resends_store_each_block_once(replica: RunningReplica) -> None:
    """Several connections push overlapping batches of one gateway at once (a forwarder
    retrying while its first attempt is still in flight): each block is stored once."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    key = enroll(replica.storage, b"racer")
    chain = make_chain(b"racer", 12, 2)
    batches = [chain[:6], chain[:6], chain[:9], chain[:12], chain[:4], chain[:12]] * 2

    def push(batch: list[Block]) -> httpx.Response:
        with httpx.Client(base_url=replica.url, timeout=30) as c:
            return c.post(f"/v1/gateways/{key.hex()}/blocks",
                          json={"blocks": [base64.b64encode(b.encode()).decode()
                                           for b in batch]})

    with ThreadPoolExecutor(len(batches)) as pool:
        answers = list(pool.map(push, batches))
    # every push is accepted (or, if it started before the blocks below it landed, told
    # where to resume), and nothing is stored twice
    for r in answers:
        assert r.status_code in (200, 409), r.text
        if r.status_code == 409:
            assert r.json()["error"] in ("gap", "concurrent-push")
    stored = sum(r.json()["stored"] for r in answers if r.status_code == 200)
    final = replica.push(key, chain)
    assert final.json()["duplicates"] + final.json()["stored"] == 12
    assert stored + final.json()["stored"] == 12
    assert replica.head(key) == {"height": 11, "hash": chain[11].hash.hex()}
