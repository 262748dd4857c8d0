"""One storage suite, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import pytest

from ledger import Block, block_readings
from replica.errors import EnrollmentError, StaleHeadError
from replica.storage.base import ForkRecord, Storage, StoredBlock
from tests.replica.conftest import StorageFactory
from tests.support.chains import make_chain, utility_keypair

KEY = b"\x11" * 32
OTHER = b"\x22" * 32


def stored(blocks: list[Block], known_span: bool = True) -> list[StoredBlock]:
    """As the replica stores them; the readings' span known (as with the utility key)."""
    sk, _ = utility_keypair()
    out = []
    for b in blocks:
        stamps = [r.timestamp_ms for r, _ in block_readings(b, sk)]
        span = (min(stamps), max(stamps)) if known_span else (0, 2**63 - 1)
        out.append(StoredBlock(b.height, b.hash, b.header.time_start_ms, b.header.time_end_ms,
                               b.header.reading_count, b.header.payload_encoding == 1,
                               b.encode(), *span))
    return out


def test_enroll_twice_is_refused_and_revoke_needs_enrollment(storage: Storage) -> None:
    rec = storage.enroll(KEY, "north", "site-a", 1000)
    assert (rec.name, rec.site, rec.height, rec.head_hash, rec.revoked_at_ms) == (
        "north", "site-a", -1, None, None)
    with pytest.raises(EnrollmentError, match="already enrolled"):
        storage.enroll(KEY, "again", None, 2000)
    with pytest.raises(EnrollmentError, match="not enrolled"):
        storage.revoke(OTHER, 5)
    assert storage.revoke(KEY, 5000).revoked_at_ms == 5000
    # a revocation only moves earlier: later would accept again what the key signed between
    with pytest.raises(EnrollmentError, match="only be moved earlier"):
        storage.revoke(KEY, 9000)
    assert storage.revoke(KEY, 5000).revoked_at_ms == 5000  # the same time again is fine
    assert storage.revoke(KEY, 4000).revoked_at_ms == 4000
    assert storage.gateway(OTHER) is None
    storage.enroll(OTHER, "south", None, 3000)
    assert [g.key for g in storage.gateways()] == [KEY, OTHER]


def test_append_moves_head_and_reads_back(storage: Storage) -> None:
    chain = make_chain(b"st", 5, 2)
    storage.enroll(chain[0].header.gateway_key, "gw", None, 0)
    key = chain[0].header.gateway_key
    storage.append(key, stored(chain[:3]), -1, 111)
    storage.append(key, stored(chain[3:]), 2, 222)
    rec = storage.gateway(key)
    assert rec is not None
    assert (rec.height, rec.head_hash, rec.last_seen_ms) == (4, chain[4].hash, 222)
    assert rec.head_header == chain[4].header.encode()
    assert storage.blocks(key, 0, 100) == [b.encode() for b in chain]
    assert storage.blocks(key, 3, 1) == [chain[3].encode()]
    assert storage.blocks(key, 9, 10) == []
    assert storage.block_hashes(key, 1, 2) == {1: chain[1].hash, 2: chain[2].hash}
    storage.touch(key, 333)
    assert storage.gateway(key).last_seen_ms == 333  # type: ignore[union-attr]


def test_append_against_stale_head_stores_nothing(storage: Storage) -> None:
    chain = make_chain(b"stale", 4, 1)
    key = chain[0].header.gateway_key
    storage.enroll(key, "gw", None, 0)
    storage.append(key, stored(chain[:2]), -1, 1)
    with pytest.raises(StaleHeadError):
        storage.append(key, stored(chain[2:]), 0, 2)  # head is 1, not 0
    with pytest.raises(StaleHeadError):
        storage.append(key, stored(chain[1:3]), 1, 2)  # height 1 already stored: all or none
    assert storage.gateway(key).height == 1  # type: ignore[union-attr]
    assert storage.blocks(key, 0, 10) == [chain[0].encode(), chain[1].encode()]


def test_time_range_and_sealed_queries(storage: Storage) -> None:
    _, pk = utility_keypair()
    plain = make_chain(b"time", 3, 2, start_ms=10_000, span_ms=1000)
    sealed = make_chain(b"time", 2, 2, prev=plain[-1], span_ms=1000, recipient_key=pk)
    key = plain[0].header.gateway_key
    storage.enroll(key, "gw", None, 0)
    storage.append(key, stored(plain + sealed), -1, 1)
    # block k's readings are stamped 10000 + 1000k and 10499 + 1000k
    got = storage.blocks_in_time(key, 11_499, 12_500, -1, 10)
    assert [h for h, _ in got] == [1, 2]
    assert [h for h, _ in storage.blocks_in_time(key, 0, 99_999, 1, 2)] == [2, 3]
    assert storage.blocks_in_time(key, 10_500, 11_000, -1, 10) == []
    assert not storage.sealed_in_time(key, 0, 12_999)
    assert storage.sealed_in_time(key, 0, 13_000)
    assert not storage.sealed_in_time(OTHER, 0, 99_999)
    # a sealed block whose readings' span is unknown may hold readings of any range
    more = make_chain(b"time", 1, 2, prev=sealed[-1], span_ms=1000, recipient_key=pk)
    storage.append(key, stored(more, known_span=False), 4, 2)
    assert storage.sealed_in_time(key, 0, 1)
    assert [h for h, _ in storage.blocks_in_time(key, 0, 1, -1, 10)] == [5]


def test_fork_evidence_kept_once(storage: Storage) -> None:
    f = ForkRecord(KEY, 7, b"a" * 194, b"s" * 64, b"b" * 194, b"t" * 64, 99)
    storage.add_fork(f)
    storage.add_fork(f)  # the same pair reported again
    g = ForkRecord(KEY, 7, b"a" * 194, b"s" * 64, b"c" * 194, b"u" * 64, 100)
    storage.add_fork(g)
    assert storage.forks() == [f, g]


def test_data_survives_reopen(storage_factory: StorageFactory) -> None:
    chain = make_chain(b"reopen", 3, 1)
    key = chain[0].header.gateway_key
    s1 = storage_factory.open()
    s1.enroll(key, "gw", None, 0)
    s1.append(key, stored(chain), -1, 5)
    s1.close()
    s2 = storage_factory.open()
    assert s2.gateway(key).height == 2  # type: ignore[union-attr]
    assert s2.blocks(key, 0, 10) == [b.encode() for b in chain]


def test_concurrent_appends_commit_together_and_stale_ones_alone(storage: Storage) -> None:
    """Many threads append at once (SQLite groups them in one commit); a stale append in
    the same group fails alone and the others are all stored."""
    from concurrent.futures import ThreadPoolExecutor

    chains = [make_chain(f"conc-{i}".encode(), 6, 1) for i in range(16)]
    for c in chains:
        storage.enroll(c[0].header.gateway_key, "gw", None, 0)

    def push(i: int) -> str:
        c = chains[i]
        key = c[0].header.gateway_key
        try:
            storage.append(key, stored(c[:3]), -1, 1)
            storage.append(key, stored(c[3:]), 2 if i % 4 else 1, 2)  # every 4th is stale
        except StaleHeadError:
            return "stale"
        return "ok"

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(push, range(16)))
    assert results == ["stale" if i % 4 == 0 else "ok" for i in range(16)]
    for i, c in enumerate(chains):
        key = c[0].header.gateway_key
        want = c[:3] if i % 4 == 0 else c
        assert storage.gateway(key).height == len(want) - 1  # type: ignore[union-attr]
        assert storage.blocks(key, 0, 10) == [b.encode() for b in want]
