"""The forwarder against a protocol-v1 replica on loopback: order, batches, resync, refusals."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.forwarder import Forwarder
from agent.ledger import Block
from tests.forwarding.conftest import FAST, KEY, SEED, open_state, run_until
from tests.support.chains import make_chain
from tests.support.minireplica import MiniReplica


def _same_chain(replica_records: list[bytes], store: object, upto: int) -> None:
    assert len(replica_records) == upto + 1
    for h, rec in enumerate(replica_records):
        assert rec == store.get_record(h), f"block {h} differs"  # type: ignore[attr-defined]


def test_sends_whole_chain_in_order_and_saves_cursor(store, state, tmp_path: Path) -> None:
    with MiniReplica([KEY]) as rep:
        fw = Forwarder("r1", rep.url, store, state, gateway_key=KEY, options=FAST)
        run_until([fw], lambda: fw.acked_height == 39)
        _same_chain(rep.blocks(KEY), store, 39)
        assert rep.duplicates_total == 0
        st = fw.status
        assert st["state"] in ("idle", "stopped")
        assert st["backlog_blocks"] == 0 and st["discrepancy"] is None
        assert st["sent_blocks"] == 40
    state.close()
    reopened = open_state(tmp_path / "state.json")
    assert reopened.cursor("r1") == 39
    reopened.close()


def test_resumes_at_replica_head_not_at_stale_cursor(store, state, chain: list[Block]) -> None:
    with MiniReplica([KEY]) as rep:
        rep.preload(KEY, chain[:25])
        state.set_cursor("r1", 3)  # the cursor lags (cursor writes are rate-limited)
        fw = Forwarder("r1", rep.url, store, state, gateway_key=KEY, options=FAST)
        run_until([fw], lambda: fw.acked_height == 39)
        _same_chain(rep.blocks(KEY), store, 39)
        assert rep.duplicates_total == 0, "blocks the replica already held were resent"
        assert fw.status["sent_blocks"] == 15


def test_batches_are_bounded_in_bytes(store, state) -> None:
    bound = 4096
    with MiniReplica([KEY]) as rep:
        fw = Forwarder("r1", rep.url, store, state, gateway_key=KEY,
                       options=replace(FAST, batch_max_bytes=bound))
        run_until([fw], lambda: fw.acked_height == 39)
        _same_chain(rep.blocks(KEY), store, 39)
        assert rep.pushes > 1
        assert max(rep.body_sizes) <= bound


def test_too_large_answer_shrinks_the_batch(store, state) -> None:
    with MiniReplica([KEY], max_body=3000) as rep:
        fw = Forwarder("r1", rep.url, store, state, gateway_key=KEY,
                       options=replace(FAST, batch_max_bytes=1_000_000))
        run_until([fw], lambda: fw.acked_height == 39)
        _same_chain(rep.blocks(KEY), store, 39)
        refused = [n for n in rep.body_sizes if n > 3000]
        assert 1 <= len(refused) <= 12  # halving from 1 MB reaches 3000 bytes in ~9 steps
        first_ok = rep.body_sizes.index(next(n for n in rep.body_sizes if n <= 3000))
        assert all(n <= 3000 for n in rep.body_sizes[first_ok:]), "the bound grew back"


def test_new_blocks_are_sent_as_they_are_committed(store, state, chain: list[Block]) -> None:
    more = make_chain(SEED, 30, 5, prev=chain[-1])

    def grow(_elapsed: float) -> None:
        if more and store.height >= 39:
            store.append(more.pop(0))

    with MiniReplica([KEY]) as rep:
        fw = Forwarder("r1", rep.url, store, state, gateway_key=KEY, options=FAST)
        run_until([fw], lambda: not more and fw.acked_height == 69, during=grow)
        _same_chain(rep.blocks(KEY), store, 69)
        assert rep.duplicates_total == 0


def test_unknown_gateway_is_reported_and_retried(store, state) -> None:
    with MiniReplica([]) as rep:
        fw = Forwarder("r1", rep.url, store, state, gateway_key=KEY, options=FAST)
        seen: list[dict] = []
        run_until([fw], lambda: seen.append(fw.status) or seen[-1]["consecutive_failures"] >= 3)
        st = seen[-1]
        assert st["state"] == "refused"
        assert "unknown-gateway" in st["last_error"]
        assert st["acked_height"] == -1


def test_bad_options_are_config_errors(store, state) -> None:
    with pytest.raises(ConfigError, match="pin_sha256"):
        Forwarder("r1", "https://127.0.0.1:1", store, state, gateway_key=KEY,
                  options=replace(FAST, pin_sha256="xyz"))
    with pytest.raises(ConfigError, match="url"):
        Forwarder("r1", "ftp://127.0.0.1:1", store, state, gateway_key=KEY, options=FAST)


def test_replica_with_a_different_block_is_a_discrepancy(store, state, caplog) -> None:
    forked = make_chain(SEED, 10, 4)  # same key, different readings: a fork at height 0..9
    with MiniReplica([KEY]) as rep:
        rep.preload(KEY, forked)
        fw = Forwarder("r1", rep.url, store, state, gateway_key=KEY, options=FAST)
        with caplog.at_level(logging.CRITICAL, logger="meterchain.forwarder"):
            run_until([fw], lambda: fw.status["state"] == "discrepancy")
        st = fw.status
        assert st["discrepancy"]["height"] == 9
        assert st["discrepancy"]["replica_hash"] == forked[9].hash.hex()
        assert st["discrepancy"]["local_hash"] == store.get(9).hash.hex()
        assert rep.pushes == 0, "the forwarder sent blocks to a contradicting replica"
        assert any("DISCREPANCY" in r.getMessage() for r in caplog.records
                   if r.levelno == logging.CRITICAL)


def test_replica_ahead_of_local_chain_is_a_discrepancy(tmp_path: Path, state) -> None:
    from tests.forwarding.conftest import open_store

    full = make_chain(SEED, 12, 2)
    s = open_store(tmp_path / "short")
    s.append_many(full[:8])  # e.g. the gateway was restored from an old backup
    with MiniReplica([KEY]) as rep:
        rep.preload(KEY, full)
        fw = Forwarder("r1", rep.url, s, state, gateway_key=KEY, options=FAST)
        run_until([fw], lambda: fw.status["state"] == "discrepancy")
        assert fw.status["discrepancy"]["height"] == 11
        assert "ahead" in fw.status["discrepancy"]["detail"]
        assert rep.pushes == 0
    s.close()


def test_head_returned_by_a_push_that_contradicts_is_detected(store, state) -> None:
    with MiniReplica([KEY]) as rep:
        # From the second push on, the head the replica reports names a hash the local
        # chain does not have at that height.
        rep.lie_head = {"height": 2, "hash": "ab" * 32}
        rep.lie_after_pushes = 2
        fw = Forwarder("r1", rep.url, store, state, gateway_key=KEY,
                       options=replace(FAST, batch_max_bytes=2048))
        run_until([fw], lambda: fw.status["state"] == "discrepancy")
        d = fw.status["discrepancy"]
        assert d["height"] == 2 and d["replica_hash"] == "ab" * 32
        assert "push" in d["detail"]
        assert rep.pushes == 2, "sent more blocks to a replica that contradicted the chain"
        # A fresh forwarder (agent restart) sees the contradiction on connect, sends nothing.
        fw2 = Forwarder("r1", rep.url, store, state, gateway_key=KEY, options=FAST)
        run_until([fw2], lambda: fw2.status["state"] == "discrepancy")
        assert rep.pushes == 2
