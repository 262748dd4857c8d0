"""The agent's /metrics text read by a real Prometheus parser (prometheus_client):
every family once, typed, with all its samples, however many meters and replicas."""

from __future__ import annotations

from collections import Counter
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from agent.service.metrics import render


def _meter(i: int) -> dict[str, Any]:
    return {"meter_id": f"m{i}", "driver": "modbus-tcp", "reads": 10 + i, "errors": i,
            "timeouts": 0, "readings": 100, "skipped_ticks": 0, "invalid_readings": 0,
            "consecutive_failures": 0, "last_success_ms": 1_767_225_600_000 + i}


def _replica(name: str, error: str | None) -> dict[str, Any]:
    return {"name": name, "acked_height": 4, "backlog_blocks": 1, "required": True,
            "discrepancy": None, "last_success_ms": 1_767_225_600_000,
            "last_error_ms": None, "last_error": error}


SNAP: dict[str, Any] = {
    "meters": [_meter(i) for i in range(3)],
    "replicas": [_replica("utility", 'HTTP 503: "busy"\nretry'), _replica("coop", None)],
    "chain": {"height": 5, "first_height": 0},
    "sealer": {"pending_readings": 2, "blocks_committed": 6, "readings_committed": 60},
    "disk": {"used_bytes": 1000, "budget_bytes": 10_000, "free_bytes": 5000},
    "clock": {"steps": 0},
    "health": {"state": "ok"},
}


def test_every_family_appears_once_typed_with_all_its_samples() -> None:
    text = render(SNAP)
    families = list(text_string_to_metric_families(text))
    names = Counter(f.name for f in families)
    assert [n for n, c in names.items() if c > 1] == []
    by_name = {f.name: f for f in families}
    assert [f.name for f in families if f.type == "unknown"] == []
    reads = by_name["meterchain_meter_reads"]
    assert reads.type == "counter"
    assert {s.labels["meter"]: s.value for s in reads.samples} == {"m0": 10, "m1": 11, "m2": 12}
    last = by_name["meterchain_meter_last_success_timestamp_seconds"]
    assert len(last.samples) == 3
    acked = by_name["meterchain_replica_acked_height"]
    assert acked.type == "gauge" and {s.labels["replica"] for s in acked.samples} == {
        "utility", "coop"}
    info = by_name["meterchain_replica_last_error_info"]
    assert [s.labels["error"] for s in info.samples] == ['HTTP 503: "busy"\nretry']
    # each family's HELP and TYPE once, before all of its samples
    assert text.count("# TYPE meterchain_meter_reads_total counter") == 1
