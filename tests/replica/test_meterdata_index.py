"""Registry and readings index on both storage backends: pushes are indexed as they are
stored, a rebuild gives identical rows, sealed payloads need the utility key, and
intervals recomputed from a rebuilt index equal the originals."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Reading, block_readings
from replica.config import Limits
from replica.meterdata.cli import assign
from replica.meterdata.indexer import catch_up, reindex
from replica.meterdata.query import MeterData, Request, parse_request, to_wh
from replica.meterdata.registry import (
    RegistryError,
    make_point,
    parse_registry_file,
    select_registers,
)
from replica.service import ReplicaService
from replica.storage.base import Storage
from tests.replica.conftest import StorageFactory
from tests.support.chains import encode_b64, gateway_key, utility_keypair
from tests.support.meterdata import register_readings, seal_readings

DAY0 = 1_764_457_200_000  # 2025-11-30T00:00+01:00 (Europe/Vienna)
STEP = 300_000


def service(storage: Storage, utility_sk: bytes | None = None) -> ReplicaService:
    return ReplicaService(storage, Limits(rate_per_gateway=0.0), utility_sk=utility_sk,
                          clock_ms=lambda: DAY0 + 10 * 86_400_000)


def push(svc: ReplicaService, key: bytes, blocks: list) -> None:
    for i in range(0, len(blocks), 200):
        svc.push(key.hex(), json.dumps({"blocks": encode_b64(blocks[i:i + 200])}).encode())


def household(n: int = 300, start: int = DAY0 - 600_000) -> list:
    rs = register_readings("p1", "1-0:1.8.1", start, n=n, step_ms=STEP,
                           wh_per_step=lambda k: 40 + k % 7)
    rs += register_readings("p1", "1-0:1.8.2", start, n=n, step_ms=STEP,
                            wh_per_step=lambda k: 3)
    rs += register_readings("p1", "1-0:2.8.0", start, n=n, step_ms=STEP, unit="kWh",
                            exponent=-3, wh_per_step=lambda k: 25 if 100 < k < 200 else 0)
    rs += register_readings("p1", "1-0:32.7.0", start, n=n, step_ms=STEP, unit="V",
                            wh_per_step=lambda k: 0, base_wh=230)
    return rs


def test_pushed_blocks_are_indexed_and_a_rebuild_gives_identical_rows(storage: Storage
                                                                       ) -> None:
    key = gateway_key(b"idx-a")
    storage.enroll(key, "north", None, 1)
    svc = service(storage)
    readings = household()
    blocks = seal_readings(b"idx-a", readings, per_block=40)
    push(svc, key, blocks)
    store = svc.index.store
    rows = store.index_rows()
    assert len(rows) == len(readings)
    assert store.index_state(key).indexed_height == len(blocks) - 1
    assert store.index_state(key).newest_reading_ms == max(r.timestamp_ms for r in readings)
    # each row names its reading's place in the ledger
    by_pos = {(b.height, i): r for b in blocks for i, (r, _s) in enumerate(block_readings(b))}
    for (_k, m, o, u, e, ts, h, i, v, _f) in rows:
        r = by_pos[(h, i)]
        assert (m, o, u, e, ts, v) == (r.meter_id, r.obis, r.unit, r.exponent,
                                       r.timestamp_ms, r.value)
    assert reindex(storage, store, None) == len(readings)
    assert store.index_rows() == rows
    # a resend stores nothing and indexes nothing twice
    push(svc, key, blocks[-3:])
    assert store.index_rows() == rows


def test_unassigned_meters_are_indexed_and_listed(storage: Storage) -> None:
    from replica.meterdata.listing import unassigned_json

    key = gateway_key(b"idx-b")
    storage.enroll(key, "south", None, 1)
    svc = service(storage)
    push(svc, key, seal_readings(b"idx-b", household(20), per_block=20))
    md = MeterData(storage, None, svc.index.store)
    got = unassigned_json(md)
    assert [(u["gateway_name"], u["meter"]) for u in got] == [("south", "p1")]
    assert got[0]["registers"] == ["1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.0", "1-0:32.7.0"]
    md.store.put_point(make_point("h-grid", "grid", member="H"))
    assign(md, "h-grid", "south", "p1", 0, None)
    assert unassigned_json(md) == []


def test_sealed_blocks_are_indexed_only_with_the_utility_key(storage_factory: StorageFactory
                                                             ) -> None:
    sk, pk = utility_keypair()
    storage = storage_factory.open()
    key = gateway_key(b"idx-sealed")
    storage.enroll(key, "sealed-gw", None, 1)
    readings = household(30)
    blocks = seal_readings(b"idx-sealed", readings, per_block=30, recipient_key=pk)
    blind = service(storage)
    push(blind, key, blocks)
    st_ = blind.index.store.index_state(key)
    assert blind.index.store.index_rows() == []
    assert st_.sealed_skipped == len(blocks) and st_.indexed_height == len(blocks) - 1
    keyed = service(storage, utility_sk=sk)
    assert reindex(storage, keyed.index.store, sk) == len(readings)
    assert keyed.index.store.index_state(key).sealed_skipped == 0


def test_an_index_that_lags_catches_up_without_doubles(storage: Storage) -> None:
    key = gateway_key(b"idx-lag")
    storage.enroll(key, "lag", None, 1)
    svc = service(storage)
    store = svc.index.store
    blocks = seal_readings(b"idx-lag", household(40), per_block=10)
    # stored behind the indexer's back (as by a process that died before indexing)
    from ledger import PayloadEncoding
    from replica.storage.base import StoredBlock
    stored = [StoredBlock(b.height, b.hash, b.header.time_start_ms, b.header.time_end_ms,
                          b.header.reading_count,
                          b.header.payload_encoding == PayloadEncoding.SEALED, b.encode())
              for b in blocks]
    storage.append(key, stored, -1, 5)
    assert store.index_rows() == []
    assert catch_up(storage, store, key, None, page_blocks=3) == 160
    assert catch_up(storage, store, key, None) == 0
    assert len(store.index_rows()) == 160
    # a stale cursor move is refused, nothing is written twice
    assert not store.add_index_rows(key, -1, 3, [], 0)


def test_registry_points_assignments_and_history_across_gateways(storage: Storage) -> None:
    a, b = gateway_key(b"reg-a"), gateway_key(b"reg-b")
    storage.enroll(a, "old-gw", None, 1)
    storage.enroll(b, "new-gw", None, 1)
    md = MeterData(storage)
    md.store.put_point(make_point("m-grid", "grid", member="Miller", rated_max_w=30_000))
    with pytest.raises(RegistryError, match="already exists"):
        md.store.put_point(make_point("m-grid", "pv"), create_only=True)
    assign(md, "m-grid", "old-gw", "p1", 0, None)
    assign(md, "m-grid", b.hex(), "p1-new", DAY0, None)  # replaced: the old one ends
    got = md.store.assignments("m-grid")
    assert [(x.gateway_key, x.meter_id, x.from_ms, x.to_ms) for x in got] == [
        (a, "p1", 0, DAY0), (b, "p1-new", DAY0, None)]
    md.store.put_point(make_point("other", "sub-meter"))
    with pytest.raises(RegistryError, match="already measures"):
        assign(md, "other", "new-gw", "p1-new", DAY0 + 1, None)
    assert md.store.point("m-grid") == make_point("m-grid", "grid", member="Miller",
                                                  rated_max_w=30_000)


def test_a_meter_replaced_on_another_gateway_keeps_the_points_series(storage: Storage
                                                                     ) -> None:
    a, b = gateway_key(b"swap-a"), gateway_key(b"swap-b")
    storage.enroll(a, "gw-old", None, 1)
    storage.enroll(b, "gw-new", None, 1)
    svc = service(storage)
    swap = DAY0 + 12 * 3_600_000  # noon, on a boundary
    old = register_readings("m-old", "1-0:1.8.0", DAY0 - STEP, n=146, step_ms=STEP,
                            wh_per_step=lambda k: 10)
    new = register_readings("m-new", "1-0:1.8.0", swap, n=146, step_ms=STEP,
                            wh_per_step=lambda k: 20, base_wh=5)
    push(svc, a, seal_readings(b"swap-a", old, per_block=50))
    push(svc, b, seal_readings(b"swap-b", new, per_block=50))
    md = MeterData(storage, None, svc.index.store)
    md.store.put_point(make_point("pt", "grid"))
    assign(md, "pt", "gw-old", "m-old", 0, None)
    assign(md, "pt", "gw-new", "m-new", swap, None)
    req = parse_request("2025-11-30", "2025-11-30", "1h", "Europe/Vienna")
    (s,) = md.series(md.targets(point="pt", start_ms=req.start_ms, end_ms=req.end_ms)[0], req)
    assert [iv.wh for iv in s.intervals] == [120] * 12 + [240] * 12
    assert {iv.quality.value for iv in s.intervals} == {"measured"}
    assert {o.gateway for iv in s.intervals[:12] for o in iv.end_trace} == {a.hex()}
    assert {o.gateway for iv in s.intervals[12:] for o in iv.start_trace} == {b.hex()}


def test_registry_file_names_the_bad_key() -> None:
    good = {"point": [{"id": "a", "role": "pv", "member": "M", "export": ["1-0:2.8.x"],
                       "meter": [{"gateway": "north", "meter": "pv", "from": "2026-01-01"}]}]}
    ((p, meters),) = parse_registry_file(good)
    assert p.export_registers == ("1-0:2.8.x",) and meters[0]["meter"] == "pv"
    for bad, path in (({"point": [{"id": "a", "role": "solar"}]}, "point[0].role"),
                      ({"point": [{"id": "a", "role": "pv", "colour": 1}]}, "point[0].colour"),
                      ({"point": [{"id": "a", "role": "pv", "meter": [{"meter": "x"}]}]},
                       "point[0].meter[0].gateway"),
                      ({"point": [{"id": "a", "role": "pv", "import": ["1-0:1.8"]}]},
                       "point[0].import"),
                      ({"points": []}, "points")):
        with pytest.raises(RegistryError) as e:
            parse_registry_file(bad, source="reg.toml")
        assert e.value.path == path, (e.value, path)


def test_register_selection_and_scaling() -> None:
    have = ["1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.0", "1-0:2.8.1", "1-0:32.7.0"]
    assert select_registers(["1-0:1.8.x"], have) == ["1-0:1.8.1", "1-0:1.8.2"]
    assert select_registers(["1-0:2.8.x"], have) == ["1-0:2.8.0"]  # the total wins
    assert select_registers(["1-0:2.8.1"], have) == ["1-0:2.8.1"]
    assert select_registers(["1-0:3.8.x"], have) == []
    assert to_wh(123456, -3, "kWh") == 123456 and to_wh(1234567, -4, "kWh") == 123456
    assert to_wh(15, -1, "Wh") == 1 and to_wh(-15, -1, "Wh") == -2  # floored
    assert to_wh(5, 0, "V") is None


# --- property: recomputation from a rebuilt index equals the original -------------------

gaps = st.lists(st.tuples(st.integers(0, 250), st.integers(1, 60)), max_size=4)


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gaps=gaps, steps=st.lists(st.integers(0, 90), min_size=8, max_size=8),
       late=st.integers(0, 20_000))
def test_intervals_from_a_rebuilt_index_equal_the_originals(
        storage: Storage, gaps: list[tuple[int, int]], steps: list[int], late: int) -> None:
    holes = {k for s, n in gaps for k in range(s, s + n)}
    seed = f"prop-{sorted(holes)}-{steps}-{late}".encode()
    key = gateway_key(seed)
    if storage.gateway(key) is not None:
        return
    storage.enroll(key, seed.hex()[:40], None, 1)
    svc = service(storage)
    rs = register_readings("m", "1-0:1.8.0", DAY0 - 3 * STEP + late, n=300, step_ms=STEP,
                           wh_per_step=lambda k: steps[k % 8], skip=lambda k: k in holes)
    if not rs:
        return
    push(svc, key, seal_readings(seed, rs, per_block=17))
    md = MeterData(storage, None, svc.index.store)
    req = parse_request("2025-11-30", "2025-11-30", "15m", "UTC")
    target = md.targets(gateway=key.hex(), meter="m", start_ms=req.start_ms,
                        end_ms=req.end_ms)[0]
    before = md.series(target, req)
    rows = md.store.index_rows()
    reindex(storage, md.store, None)
    assert md.store.index_rows() == rows
    assert md.series(target, req) == before
    (s,) = before
    values = [iv.wh for iv in s.intervals if iv.wh is not None]
    assert all(v >= 0 for v in values)
    _check_sum(s.intervals, rs, req)


def _check_sum(intervals: list, rs: list, req: Request) -> None:
    """Where both ends are read within tolerance, a run of intervals with values sums to
    the register difference between those two readings."""
    tol = req.interval_ms // 100
    by_t = {r.timestamp_ms: r.value for r in rs}
    ends = [iv for iv in intervals if iv.quality.value == "measured"]
    if len(ends) < 2:
        return
    first, last = ends[0], ends[-1]
    span = [iv for iv in intervals if first.start_ms <= iv.start_ms < last.end_ms]
    if any(iv.wh is None for iv in span):
        return
    t0 = min((t for t in by_t if abs(t - first.start_ms) <= tol),
             key=lambda t: abs(t - first.start_ms))
    t1 = min((t for t in by_t if abs(t - last.end_ms) <= tol),
             key=lambda t: abs(t - last.end_ms))
    assert sum(iv.wh for iv in span) == by_t[t1] - by_t[t0]


readings_st = st.builds(
    lambda m, o, v, e, u, t, q: Reading.make(m, o, v, e, u, t, quality=q),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"),
            min_size=1, max_size=20),
    st.sampled_from(["1-0:1.8.0", "1-0:2.8.1", "0-1:24.2.1", "1-0:32.7.0*7"]),
    st.integers(-(2**63), 2**63 - 1), st.integers(-128, 127),
    st.sampled_from(["Wh", "kWh", "V", "", "%", "m3"]), st.integers(0, 2**63 - 1),
    st.integers(0, 0x1F))


@settings(max_examples=60, deadline=None)
@given(st.lists(readings_st, min_size=1, max_size=12))
def test_index_rows_read_every_field_as_the_ledger_decodes_it(rs: list) -> None:
    from replica.meterdata.indexer import block_rows

    ordered = sorted(rs, key=lambda r: r.timestamp_ms)
    (block,) = seal_readings(b"decode", ordered, per_block=len(ordered))
    rows = block_rows(block, None)
    want = [(r.meter_id, r.obis, r.unit, r.exponent, r.timestamp_ms, 0, i, r.value, r.quality)
            for i, (r, _) in enumerate(block_readings(block))]
    assert rows == want


def test_findings_reach_the_series_frozen_register_and_rollover(storage: Storage) -> None:
    key = gateway_key(b"find")
    storage.enroll(key, "finder", None, 1)
    svc = service(storage)
    start = DAY0 - 600_000
    frozen = range(100, 113)  # an hour at the same value while drawing 2 kW
    rs = register_readings("m", "1-0:1.8.0", start, n=300, step_ms=STEP,
                           wh_per_step=lambda k: 0 if k in frozen else 150)
    rs += register_readings("m", "1-0:1.7.0", start, n=300, step_ms=STEP, unit="W",
                            wh_per_step=lambda k: 0, base_wh=2000)
    rs += register_readings("m", "1-0:2.8.0", start, n=300, step_ms=STEP, base_wh=99_900,
                            wh_per_step=lambda k: -99_950 if k == 150 else 50)
    push(svc, key, seal_readings(b"find", rs, per_block=50))
    md = MeterData(storage, None, svc.index.store)
    md.store.put_point(make_point("p", "grid", register_modulus=100_000))
    assign(md, "p", "finder", "m", 0, None)
    req = parse_request("2025-11-30", "2025-11-30", "15m", "Europe/Vienna")
    imp, exp = md.series(md.targets(point="p", start_ms=req.start_ms, end_ms=req.end_ms)[0], req)
    assert [f.kind for f in imp.findings] == ["frozen-register"]
    assert [f.kind for f in exp.findings] == ["register-decrease"]
    assert exp.findings[0].effect == "unwrapped"
    assert sum(iv.wh or 0 for iv in exp.intervals) == 96 * 150  # nothing lost at rollover
