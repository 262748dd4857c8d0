"""Forwarding through outages, network faults, dead and slow replicas, and TLS trust."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from agent.pipeline.forwarder import Forwarder
from agent.pipeline.replica_client import spki_sha256
from agent.storage.store import BlockStore
from ledger import Block, block_readings
from tests.forwarding.conftest import FAST, run_until, same_chain
from tests.support.chains import make_chain
from tests.support.faultproxy import FAULTS, FaultProxy
from tests.support.replicaproc import ReplicaProcess


def _readings_once_in_order(records: list[bytes], store: BlockStore) -> None:
    """Every local reading is on the replica exactly once, in the local order."""
    mine = [r for h in range(store.height + 1) for r, _ in block_readings(store.get(h))]
    theirs = [r for rec in records for r, _ in block_readings(Block.decode(rec))]
    assert theirs == mine
    assert len({(r.meter_id, r.obis, r.timestamp_ms, r.value) for r in theirs}) == len(theirs)


@pytest.mark.slow
def test_replica_outage_then_back_every_reading_once_in_order(
        tmp_path: Path, key: bytes, seed: bytes, store, state, chain: list[Block]) -> None:
    rep = ReplicaProcess(tmp_path / "rep", enroll=[key]).start()
    more = make_chain(seed, 60, 5, prev=chain[-1])
    phase = {"down_at": None, "up_at": None}
    seen_backoff: list[bool] = []

    def script(elapsed: float) -> None:
        if more and elapsed > 0.05 * (60 - len(more)):
            store.append(more.pop(0))  # the agent keeps sealing through the outage
        if phase["down_at"] is None and elapsed > 0.5:
            rep.stop()
            phase["down_at"] = elapsed
        elif (phase["up_at"] is None and phase["down_at"] is not None and elapsed > 2.0
              and any(seen_backoff)):  # back only once the outage was noticed
            rep.start()
            phase["up_at"] = elapsed

    fw = Forwarder("r1", rep.url, store, state, gateway_key=key, options=FAST)

    def done() -> bool:
        seen_backoff.append(fw.status["state"] == "backoff")
        return phase["up_at"] is not None and not more and fw.acked_height == 99

    try:
        run_until([fw], done, timeout=40, during=script)
        assert any(seen_backoff), "the outage was never noticed"
        records = rep.records(key)
    finally:
        rep.stop()
    same_chain(records, store, 99)
    _readings_once_in_order(records, store)


@pytest.mark.slow
def test_fault_proxy_no_loss_no_duplicates(replica, key, seed, store, state,
                                           chain: list[Block]) -> None:
    replica.enroll(key)
    rates = {f: 0.07 for f in FAULTS if f != "pass"}  # ~60 % of requests hit a fault
    more = make_chain(seed, 80, 5, prev=chain[-1])
    with FaultProxy(("127.0.0.1", replica.port), seed=5, rates=rates, delay_s=0.2) as proxy:
        fw = Forwarder("r1", proxy.url, store, state, gateway_key=key,
                       options=replace(FAST, batch_max_bytes=3000, timeout_s=1.0))

        def grow(_elapsed: float) -> None:
            if more:
                store.append(more.pop(0))

        run_until([fw], lambda: not more and fw.acked_height == 119, timeout=90,
                  during=grow)
        counts = dict(proxy.counts)
    records = replica.records(key)
    same_chain(records, store, 119)
    _readings_once_in_order(records, store)
    missing = [f for f in FAULTS if counts.get(f, 0) == 0]
    assert not missing, f"faults never injected: {missing} ({counts})"
    assert fw.status["discrepancy"] is None


def _blackhole() -> socket.socket:
    """A listening socket nobody accepts on: connects succeed, requests hang forever."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def test_dead_and_slow_replicas_do_not_hold_back_a_live_one(replica, key, seed, store,
                                                             state, chain) -> None:
    replica.enroll(key)
    hole = _blackhole()
    slow_opts = replace(FAST, timeout_s=5.0)
    with FaultProxy(("127.0.0.1", replica.port), rates={"delay": 1.0}, delay_s=3.0) as slow:
        dead_url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        fws = [Forwarder("dead", dead_url, store, state, gateway_key=key, options=slow_opts),
               Forwarder("slow", slow.url, store, state, gateway_key=key, options=slow_opts),
               Forwarder("live", replica.url, store, state, gateway_key=key, options=FAST)]
        more = make_chain(seed, 10, 5, prev=chain[-1])

        def grow(elapsed: float) -> None:
            if more and elapsed > 0.3 and fws[2].acked_height == store.height:
                store.append(more.pop(0))

        slow_when_live_done: list[int] = []

        def live_done() -> bool:
            done = not more and fws[2].acked_height == 49
            if done:
                slow_when_live_done.append(fws[1].acked_height)
            return done

        run_until(fws, live_done, during=grow)
    hole.close()
    # Not a time limit (that would measure the machine): the live replica got every block
    # while the slow one (3 s per request) was still behind and the dead one had nothing.
    assert slow_when_live_done and slow_when_live_done[0] < 49
    same_chain(replica.records(key), store, 49)
    assert fws[0].acked_height == -1 and fws[0].status["state"] in ("connecting", "backoff",
                                                                      "stopped")


def test_stop_is_prompt_while_a_request_hangs(key, store, state) -> None:
    hole = _blackhole()
    fw = Forwarder("dead", f"http://127.0.0.1:{hole.getsockname()[1]}", store, state,
                   gateway_key=key, options=replace(FAST, timeout_s=60.0))
    # run_until asserts the forwarder stops within 20 s although its request would hang 60 s
    run_until([fw], lambda: fw.status["state"] == "connecting", timeout=30)
    hole.close()


# --- TLS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A self-signed certificate for 127.0.0.1 and openssl's SPKI SHA-256 of its key."""
    d = tmp_path_factory.mktemp("tls")
    cert, keyf = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(keyf), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         check=True, capture_output=True).stdout
    import hashlib

    return cert, keyf, hashlib.sha256(der).hexdigest()


@pytest.fixture(scope="module")
def tls_replica(tmp_path_factory, tls_pair):  # type: ignore[no-untyped-def]
    rep = ReplicaProcess(tmp_path_factory.mktemp("tlsrep"), enroll=[],
                         tls=(tls_pair[0], tls_pair[1]))
    rep.start()
    yield rep
    rep.stop()


def test_spki_hash_matches_openssl(tls_pair) -> None:
    import ssl

    der = ssl.PEM_cert_to_DER_cert(tls_pair[0].read_text())
    assert spki_sha256(der) == tls_pair[2]
    with pytest.raises(ValueError):
        spki_sha256(der[:40])


@pytest.mark.parametrize("trust", ["ca", "pin", "ca+pin"])
def test_https_with_ca_or_pinned_key(tls_replica, tls_pair, key, store, state,
                                     trust: str) -> None:
    tls_replica.enroll(key)
    opts = replace(FAST, ca_file=str(tls_pair[0]) if "ca" in trust else None,
                   pin_sha256=tls_pair[2] if "pin" in trust else None)
    fw = Forwarder("tls", tls_replica.url, store, state, gateway_key=key, options=opts)
    run_until([fw], lambda: fw.acked_height == 39)
    same_chain(tls_replica.records(key), store, 39)


@pytest.mark.parametrize("trust", ["wrong-pin", "system-ca"])
def test_https_refuses_an_untrusted_server(tls_replica, tls_pair, key, store, state,
                                           trust: str) -> None:
    tls_replica.enroll(key)
    opts = replace(FAST, pin_sha256="00" * 32) if trust == "wrong-pin" else FAST
    fw = Forwarder("tls", tls_replica.url, store, state, gateway_key=key, options=opts)
    run_until([fw], lambda: fw.status["consecutive_failures"] >= 2)
    err = fw.status["last_error"]
    if trust == "wrong-pin":
        assert "not the pinned" in err and tls_pair[2] in err
    else:
        assert "CERTIFICATE_VERIFY_FAILED" in err
    assert fw.acked_height == -1
    assert tls_replica.records(key) == []
