"""The replica's GET /metrics under uvicorn, read with a real Prometheus parser: pushes and
refusals by reason, blocks and readings stored, forks, and per gateway when the replica
last stored a block from it (to alert on a silent gateway)."""

from __future__ import annotations

import math
import time

from prometheus_client.parser import text_string_to_metric_families

from tests.replica.conftest import RunningReplica, enroll
from tests.support.chains import gateway_key, make_chain


def _scrape(replica: RunningReplica) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    r = replica.http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    names = []
    for family in text_string_to_metric_families(r.text):
        names.append(family.name)
        assert family.type != "unknown", family.name
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    assert len(names) == len(set(names))  # every family once
    return out


def test_metrics_count_pushes_refusals_storage_forks_and_silence(
        replica: RunningReplica) -> None:
    key = enroll(replica.storage, b"metrics-a", "north")
    quiet = enroll(replica.storage, b"metrics-b", "south")
    chain = make_chain(b"metrics-a", 6, 3)
    assert replica.push(key, chain[:4]).status_code == 200
    assert replica.push(key, chain[:4]).status_code == 200  # a resend stores nothing
    stranger = gateway_key(b"metrics-stranger")
    assert replica.push(stranger, chain[4:]).status_code == 403  # unknown-gateway
    assert replica.push(key, chain[5:]).status_code == 409  # gap
    other = make_chain(b"metrics-a", 3, 2)
    assert replica.push(key, other[1:3]).status_code == 409  # fork
    t_before = time.time()
    m = _scrape(replica)

    requests = m["meterchain_replica_requests_total"]
    assert requests[(("outcome", "ok"), ("route", "push"))] == 2
    assert requests[(("outcome", "unknown-gateway"), ("route", "push"))] == 1
    assert requests[(("outcome", "gap"), ("route", "push"))] == 1
    refusals = m["meterchain_replica_refusals_total"]
    assert refusals == {(("reason", "unknown-gateway"),): 1, (("reason", "gap"),): 1,
                        (("reason", "fork"),): 1}
    assert m["meterchain_replica_blocks_stored_total"][()] == 4
    assert m["meterchain_replica_readings_stored_total"][()] == 12
    assert m["meterchain_replica_forks"][()] == 1

    north = (("gateway", key.hex()), ("name", "north"))
    south = (("gateway", quiet.hex()), ("name", "south"))
    assert m["meterchain_replica_gateway_height"] == {north: 3, south: -1}
    assert m["meterchain_replica_gateway_forks"][north] == 1
    age = m["meterchain_replica_gateway_last_stored_age_seconds"]
    assert age[north] >= 0 and math.isnan(age[south])  # south never sent anything
    seen = m["meterchain_replica_gateway_last_stored_timestamp_seconds"][north]
    assert seen <= t_before
    head = m["meterchain_replica_gateway_head_time_seconds"][north]
    assert head == chain[3].header.time_end_ms / 1000
    assert m["meterchain_replica_gateway_revoked"][north] == 0
