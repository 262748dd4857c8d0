"""The forwarder against the real replica server on loopback: order, batches, resync,
refusals and discrepancies."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from agent.pipeline.forwarder import Forwarder
from ledger import Block
from ledger.errors import ConfigError
from tests.forwarding.conftest import FAST, open_state, open_store, run_until, same_chain
from tests.support.chains import make_chain
from tests.support.minireplica import MiniReplica
from tests.support.replicaproc import ReplicaProcess, push


def test_sends_whole_chain_in_order_and_saves_cursor(replica, key, store, state,
                                                      tmp_path: Path) -> None:
    replica.enroll(key)
    fw = Forwarder("r1", replica.url, store, state, gateway_key=key, options=FAST)
    run_until([fw], lambda: fw.acked_height == 39)
    same_chain(replica.records(key), store, 39)
    st = fw.status
    assert st["backlog_blocks"] == 0 and st["discrepancy"] is None
    assert st["sent_blocks"] == 40 and st["replica_height"] == 39
    assert st["last_error"] is None
    state.close()
    reopened = open_state(tmp_path / "state.json")
    assert reopened.cursor("r1") == 39
    reopened.close()


def test_resumes_at_replica_head_not_at_stale_cursor(replica, key, store, state,
                                                     chain: list[Block]) -> None:
    replica.enroll(key)
    push(replica.url, key, [b.encode() for b in chain[:25]])
    state.set_cursor("r1", 3)  # the saved cursor lags (its writes are rate-limited)
    fw = Forwarder("r1", replica.url, store, state, gateway_key=key, options=FAST)
    run_until([fw], lambda: fw.acked_height == 39)
    same_chain(replica.records(key), store, 39)
    assert fw.status["sent_blocks"] == 15, "blocks the replica already held were resent"


def test_batches_are_bounded_in_bytes(key, store, state) -> None:
    bound = 4096
    with MiniReplica([key]) as rep:  # records every body size it receives
        fw = Forwarder("r1", rep.url, store, state, gateway_key=key,
                       options=replace(FAST, batch_max_bytes=bound))
        run_until([fw], lambda: fw.acked_height == 39)
        same_chain(rep.blocks(key), store, 39)
        assert rep.pushes > 1
        assert max(rep.body_sizes) <= bound
        assert rep.duplicates_total == 0


def test_too_large_answer_shrinks_the_batch(tmp_path: Path, key, store, state) -> None:
    rep = ReplicaProcess(tmp_path / "small", enroll=[key],
                         limits={"max_blocks_per_batch": 7, "max_body_bytes": 6000})
    with rep:
        fw = Forwarder("r1", rep.url, store, state, gateway_key=key,
                       options=replace(FAST, batch_max_bytes=1_000_000))
        run_until([fw], lambda: fw.acked_height == 39)
        same_chain(rep.records(key), store, 39)
        assert fw.status["consecutive_failures"] == 0


def test_new_blocks_are_sent_as_they_are_committed(replica, key, seed, store, state,
                                                   chain: list[Block]) -> None:
    replica.enroll(key)
    more = make_chain(seed, 30, 5, prev=chain[-1])

    def grow(_elapsed: float) -> None:
        if more:
            store.append(more.pop(0))

    fw = Forwarder("r1", replica.url, store, state, gateway_key=key, options=FAST)
    run_until([fw], lambda: not more and fw.acked_height == 69, during=grow)
    same_chain(replica.records(key), store, 69)


def test_unknown_gateway_is_reported_and_retried(replica, key, store, state) -> None:
    fw = Forwarder("r1", replica.url, store, state, gateway_key=key, options=FAST)
    seen: list[dict] = []
    run_until([fw], lambda: seen.append(fw.status) or seen[-1]["consecutive_failures"] >= 3)
    st = seen[-1]
    assert st["state"] == "refused"
    assert "unknown-gateway" in st["last_error"]
    # status shows the replica's name beside the error: the error does not repeat it
    assert "r1" not in st["last_error"], st["last_error"]
    # ...and it is what the technician's guide tells them to look for
    shown = "HTTP 404: GET head: unknown-gateway"
    assert st["last_error"].startswith(shown), st["last_error"]
    guide = (Path(__file__).resolve().parents[2] / "docs" / "install.md").read_text()
    assert shown in guide
    assert st["acked_height"] == -1
    # Enrolled later: the forwarder gets through without a restart.
    replica.enroll(key)
    run_until([fw], lambda: fw.acked_height == 39)
    same_chain(replica.records(key), store, 39)


def test_bad_options_are_config_errors(key, store, state) -> None:
    with pytest.raises(ConfigError, match="pin_sha256"):
        Forwarder("r1", "https://127.0.0.1:1", store, state, gateway_key=key,
                  options=replace(FAST, pin_sha256="xyz"))
    with pytest.raises(ConfigError, match="url"):
        Forwarder("r1", "ftp://127.0.0.1:1", store, state, gateway_key=key, options=FAST)


def test_replica_with_a_different_block_is_a_discrepancy(replica, key, seed, store, state,
                                                         caplog) -> None:
    replica.enroll(key)
    forked = make_chain(seed, 10, 4)  # same key, other readings: differs at every height
    push(replica.url, key, [b.encode() for b in forked])
    fw = Forwarder("r1", replica.url, store, state, gateway_key=key, options=FAST)
    with caplog.at_level(logging.CRITICAL, logger="meterchain.forwarder"):
        run_until([fw], lambda: fw.status["state"] == "discrepancy")
    d = fw.status["discrepancy"]
    assert d["height"] == 9
    assert d["replica_hash"] == forked[9].hash.hex()
    assert d["local_hash"] == store.get(9).hash.hex()
    assert fw.status["sent_blocks"] == 0
    assert replica.records(key) == [b.encode() for b in forked], "replica copy was changed"
    assert any("DISCREPANCY" in r.getMessage() for r in caplog.records
               if r.levelno == logging.CRITICAL)


def test_replica_ahead_of_local_chain_is_a_discrepancy(replica, key, seed, tmp_path: Path,
                                                       state) -> None:
    replica.enroll(key)
    full = make_chain(seed, 12, 2)
    push(replica.url, key, [b.encode() for b in full])
    s = open_store(tmp_path / "short")
    s.append_many(full[:8])  # e.g. the gateway was restored from an old backup
    fw = Forwarder("r1", replica.url, s, state, gateway_key=key, options=FAST)
    run_until([fw], lambda: fw.status["state"] == "discrepancy")
    assert fw.status["discrepancy"]["height"] == 11
    assert "ahead" in fw.status["discrepancy"]["detail"]
    assert fw.status["sent_blocks"] == 0
    s.close()


def test_head_returned_by_a_push_that_contradicts_is_detected(key, store, state) -> None:
    # The product replica never lies about its head; this protocol-faithful test server
    # can, from its second push on (a tampered or buggy replica).
    with MiniReplica([key]) as rep:
        rep.lie_head = {"height": 2, "hash": "ab" * 32}
        rep.lie_after_pushes = 2
        fw = Forwarder("r1", rep.url, store, state, gateway_key=key,
                       options=replace(FAST, batch_max_bytes=2048))
        run_until([fw], lambda: fw.status["state"] == "discrepancy")
        d = fw.status["discrepancy"]
        assert d["height"] == 2 and d["replica_hash"] == "ab" * 32
        assert "push" in d["detail"]
        assert rep.pushes == 2, "sent more blocks to a replica that contradicted the chain"
        # A fresh forwarder (agent restart) sees the contradiction on connect, sends nothing.
        fw2 = Forwarder("r1", rep.url, store, state, gateway_key=key, options=FAST)
        run_until([fw2], lambda: fw2.status["state"] == "discrepancy")
        assert rep.pushes == 2
