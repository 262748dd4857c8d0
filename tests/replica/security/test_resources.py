"""What an anonymous client can spend: memory, time and a gateway's rate budget."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from replica.config import Limits
from tests.replica.conftest import RunningReplica, StorageFactory, enroll
from tests.support.chains import encode_b64, gateway_key, make_chain
from tests.support.replicaproc import ReplicaProcess
from tests.support.slowclients import peak_rss_kib, slow_clients

SEED = b"resource-gw"


def raw_request(port: int, head: bytes, body: bytes = b"", source: str = "127.0.0.1",
                timeout: float = 20.0) -> tuple[int, dict[str, object]]:
    """Send ``head`` (and part of a body) and read the answer without sending more."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as s:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split()[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


def post_head(key_hex: str, length: int) -> bytes:
    return (f"POST /v1/gateways/{key_hex}/blocks HTTP/1.1\r\nHost: x\r\nContent-Type: "
            f"application/json\r\nContent-Length: {length}\r\n\r\n").encode()


def test_unknown_and_finished_revoked_keys_are_refused_before_the_body(
        replica: RunningReplica) -> None:
    status, body = raw_request(replica.port, post_head(gateway_key(b"nobody").hex(), 8_000_000))
    assert (status, body["error"]) == (403, "unknown-gateway")  # no body byte was sent
    key = enroll(replica.storage, SEED)
    chain = make_chain(SEED, 3, 2)
    assert replica.push(key, chain[:2]).status_code == 200
    replica.storage.revoke(key, chain[1].header.time_end_ms)  # the chain reached it
    status, body = raw_request(replica.port, post_head(key.hex(), 8_000_000))
    assert (status, body["error"]) == (403, "revoked")


def test_a_body_that_does_not_arrive_in_time_is_refused(
        make_replica: Callable[..., RunningReplica]) -> None:
    rep = make_replica(Limits(body_timeout_s=1.0))
    key = enroll(rep.storage, SEED)
    status, body = raw_request(rep.port, post_head(key.hex(), 1000), b'{"blocks": [')
    assert (status, body["error"]) == (408, "body-timeout")
    assert rep.head(key)["height"] == -1


def test_bodies_in_flight_are_bounded_per_client_and_in_total(
        make_replica: Callable[..., RunningReplica]) -> None:
    kib = 1024
    rep = make_replica(Limits(max_body_bytes=256 * kib, max_inflight_body_bytes=768 * kib,
                              max_inflight_body_bytes_per_client=384 * kib,
                              body_timeout_s=20.0))
    key = enroll(rep.storage, SEED)

    async def hold(source: str, n: int) -> list[asyncio.StreamWriter]:
        writers = []
        for _ in range(n):
            _r, w = await asyncio.open_connection("127.0.0.1", rep.port,
                                                  local_addr=(source, 0))
            w.write(post_head(key.hex(), 250 * kib) + b" " * (200 * kib))
            await w.drain()
            writers.append(w)
        return writers

    async def attack() -> tuple[int, int, int]:
        mine = await hold("127.0.0.2", 1)
        await asyncio.sleep(0.5)
        # a second body from the same address goes over its 384 KiB
        over_client = await asyncio.to_thread(
            raw_request, rep.port, post_head(key.hex(), 250 * kib), b" " * (200 * kib),
            "127.0.0.2")
        others = await hold("127.0.0.3", 1) + await hold("127.0.0.4", 1)
        await asyncio.sleep(0.5)
        # 3 x 200 KiB held: a fourth address goes over the 768 KiB in total
        over_total = await asyncio.to_thread(
            raw_request, rep.port, post_head(key.hex(), 250 * kib), b" " * (200 * kib),
            "127.0.0.5")
        for w in mine + others:
            w.close()
        await asyncio.sleep(0.5)
        # once they are gone, a gateway's push goes through
        ok = await asyncio.to_thread(rep.push, key, make_chain(SEED, 1, 2))
        return over_client[0], over_total[0], ok.status_code

    assert asyncio.run(attack()) == (503, 503, 200)


def test_a_block_over_the_size_limit_is_refused(
        make_replica: Callable[..., RunningReplica]) -> None:
    rep = make_replica(Limits(max_block_bytes=2000))
    key = enroll(rep.storage, SEED)
    small, big = make_chain(SEED, 1, 2), make_chain(SEED, 1, 60)
    assert len(big[0].encode()) > 2000 > len(small[0].encode())
    r = rep.push(key, big)
    assert r.status_code == 413 and (r.json()["error"], r.json()["index"]) == ("too-large", 0)
    assert rep.push(key, small).status_code == 200


def test_unsigned_floods_do_not_spend_the_gateways_rate_budget(
        make_replica: Callable[..., RunningReplica]) -> None:
    # refills of one token per 100 s: the counts below hold however slow the machine is
    rep = make_replica(Limits(rate_per_gateway=0.01, rate_burst=6, junk_per_client=0.01,
                              junk_burst=5))
    key = enroll(rep.storage, SEED)
    chain = make_chain(SEED, 6, 2)
    forged = make_chain(b"someone else", 1, 2)[0]
    forged = type(forged)(chain[0].header, forged.signature, chain[0].payload)
    assert rep.push(key, chain[:1]).status_code == 200  # the gateway's own first push
    flood = httpx.Client(base_url=rep.url, transport=httpx.HTTPTransport(
        local_address="127.0.0.2"))
    codes = []
    replay = encode_b64(chain[:1])  # validly signed, already stored
    for body in ([], encode_b64([forged]), ["bm90IGEgYmxvY2s="], "nonsense", replay) * 8:
        r = flood.post(f"/v1/gateways/{key.hex()}/blocks",
                       content=json.dumps({"blocks": body}) if body != "nonsense" else body)
        codes.append(r.status_code)
    flood.close()
    assert codes.count(429) >= 30, codes  # junk is limited per address, early
    # the victim's signed pushes, from its own address, all go through
    for i in range(1, 6):
        r = rep.push(key, chain[i:i + 1])
        assert r.status_code == 200, (i, r.text)
    # and a signed push over the gateway's own budget is limited as before
    r = rep.push(key, make_chain(SEED, 7, 2)[6:7])
    assert r.status_code == 429 and "gateway" in r.json()["detail"]


@pytest.mark.slow
def test_peak_memory_under_200_slow_clients_is_bounded(tmp_path: Path) -> None:
    """200 clients each start a 4 MiB push and stall. Without bounds the server would
    hold ~800 MiB; with a 32 MiB in-flight budget its peak RSS grows by far less."""
    key = gateway_key(SEED)
    mib = 1024 * 1024
    rep = ReplicaProcess(tmp_path / "rep", enroll=[key], limits={
        "max_inflight_body_bytes": 32 * mib, "max_inflight_body_bytes_per_client": 8 * mib,
        "max_body_bytes": 8 * mib, "body_timeout_s": 15.0})
    with rep:
        assert rep.proc is not None
        pid = rep.proc.pid
        from tests.support.replicaproc import push
        push(rep.url, key, [b.encode() for b in make_chain(SEED, 2, 30)])
        time.sleep(0.5)
        before = peak_rss_kib(pid)
        outcomes, during = asyncio.run(slow_clients(
            rep.port, f"/v1/gateways/{key.hex()}/blocks", 200, 4 * mib, 2 * mib, 20.0, pid))
        after = peak_rss_kib(pid)
    grown_mib = (after - before) / 1024
    print(f"peak RSS before {before / 1024:.0f} MiB, after {after / 1024:.0f} MiB "
          f"(+{grown_mib:.0f} MiB), outcomes {outcomes}")
    assert sum(outcomes.values()) == 200
    assert outcomes.get("503", 0) >= 100, outcomes  # refused as the budget was spent
    assert grown_mib < 32 * 2 + 48, grown_mib  # the budget (x2 at join) plus overheads


def test_block_reads_are_bounded_by_bytes_and_streamed(
        make_replica: Callable[..., RunningReplica]) -> None:
    chain = make_chain(SEED, 8, 30)
    size = len(chain[0].encode())
    rep = make_replica(Limits(max_read_bytes=3 * size + size // 2))
    key = enroll(rep.storage, SEED)
    assert rep.push(key, chain).status_code == 200
    r = rep.http.get(f"/v1/gateways/{key.hex()}/blocks", params={"from": 2, "limit": 100})
    assert r.status_code == 200 and r.headers.get("transfer-encoding") == "chunked"
    assert r.json()["blocks"] == encode_b64(chain[2:5])  # 3 blocks fit, never a 4th
    tiny = make_replica(Limits(max_read_bytes=1), storage=rep.storage)
    r = tiny.http.get(f"/v1/gateways/{key.hex()}/blocks", params={"from": 7})
    assert r.json()["blocks"] == encode_b64(chain[7:8])  # one block always comes


def test_fork_evidence_is_bounded_per_height_and_paged(
        make_replica: Callable[..., RunningReplica]) -> None:
    rep = make_replica(Limits(max_forks_per_height=2, junk_per_client=0.0))
    key = enroll(rep.storage, SEED)
    chain = make_chain(SEED, 3, 2)
    assert rep.push(key, chain).status_code == 200
    for i in range(6):  # six different signed blocks at height 1 from the same key
        other = make_chain(SEED, 2, 2, meter_id=f"fork-{i}")[1]
        assert rep.push(key, [other]).json()["error"] == "fork"
    body = rep.http.get("/v1/forks").json()
    assert (len(body["forks"]), body["total"], body["dropped"], body["next"]) == (2, 2, 4, None)
    first = rep.http.get("/v1/forks", params={"limit": 1}).json()
    assert len(first["forks"]) == 1 and first["next"]
    second = rep.http.get("/v1/forks", params={"limit": 1, "after": first["next"]}).json()
    assert second["next"] is None
    assert first["forks"] + second["forks"] == body["forks"]
    for bad in ("nonsense", "00.1.00", f"{key.hex()}.x.00"):
        r = rep.http.get("/v1/forks", params={"after": bad})
        assert r.status_code == 400 and r.json()["error"] == "malformed", bad
    assert rep.http.get("/v1/forks", params={"limit": 0}).status_code == 400


def test_per_gateway_storage_quota(make_replica: Callable[..., RunningReplica]) -> None:
    chain = make_chain(SEED, 5, 10)
    sizes = [len(b.encode()) for b in chain]
    rep = make_replica(Limits(max_bytes_per_gateway=sum(sizes[:3]) + 1))
    key = enroll(rep.storage, SEED)
    other = enroll(rep.storage, b"other-gw")
    assert rep.push(key, chain[:2]).status_code == 200
    r = rep.push(key, chain[2:4])  # would go over: nothing of the batch is stored
    assert r.status_code == 507 and r.json()["error"] == "quota-exceeded"
    assert rep.head(key)["height"] == 1
    assert rep.push(key, chain[2:3]).status_code == 200  # what fits still fits
    assert rep.storage.gateway(key).stored_bytes == sum(sizes[:3])  # type: ignore[union-attr]
    # the quota is per gateway
    assert rep.push(other, make_chain(b"other-gw", 3, 10)).status_code == 200


def test_a_database_from_before_quotas_counts_what_it_holds(
        storage_factory: StorageFactory) -> None:
    from replica.storage.base import StoredBlock

    s = storage_factory.open()
    key = gateway_key(SEED)
    s.enroll(key, "gw", None, 1)
    chain = make_chain(SEED, 2, 3)
    s.append(key, [StoredBlock(b.height, b.hash, b.header.time_start_ms, b.header.time_end_ms,
                               b.header.reading_count, False, b.encode()) for b in chain], -1, 5)
    # as made by the previous release: no stored_bytes column
    if storage_factory.backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(storage_factory.url[len("sqlite:///"):])
        conn.execute("ALTER TABLE gateways DROP COLUMN stored_bytes")
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(storage_factory.url, autocommit=True) as conn:
            conn.execute("ALTER TABLE gateways DROP COLUMN stored_bytes")
    again = storage_factory.open()
    got = again.gateway(key)
    assert got is not None and got.stored_bytes == sum(len(b.encode()) for b in chain)
