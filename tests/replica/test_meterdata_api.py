"""Meter data over HTTP (uvicorn, both backends): intervals by gateway name, member and
ISO dates, traces that `proof` backs, CSV, raw readings with filters, gateway status,
names wherever keys go, and unknown query parameters refused."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from ledger.prooffile import verify_proof_text
from replica.config import Limits
from replica.meterdata.cli import assign
from replica.meterdata.query import MeterData
from replica.meterdata.registry import make_point
from tests.replica.conftest import RunningReplica
from tests.support.chains import gateway_key
from tests.support.meterdata import register_readings, seal_readings

DAY0 = 1_764_457_200_000  # 2025-11-30T00:00+01:00
STEP = 300_000
N = 300  # 25 hours of readings from 10 minutes before the day


@pytest.fixture
def loaded(make_replica: Callable[..., RunningReplica]) -> tuple[RunningReplica, bytes]:
    rep = make_replica(Limits(rate_per_gateway=0.0))
    key = gateway_key(b"api-gw")
    rep.storage.enroll(key, "north", "plant-2", 1)
    rs = register_readings("grid", "1-0:1.8.0", DAY0 - 600_000, n=N, step_ms=STEP,
                           wh_per_step=lambda k: 50)
    rs += register_readings("grid", "1-0:2.8.0", DAY0 - 600_000, n=N, step_ms=STEP,
                            wh_per_step=lambda k: 5)
    rs += register_readings("pv", "1-0:2.8.0", DAY0 - 600_000, n=N, step_ms=STEP,
                            wh_per_step=lambda k: 30 if 90 <= k < 200 else 0)
    rs += register_readings("spare", "1-0:1.8.0", DAY0, n=5, step_ms=STEP,
                            wh_per_step=lambda k: 1)
    blocks = seal_readings(b"api-gw", rs, per_block=100)
    for i in range(0, len(blocks), 50):
        r = rep.push(key, blocks[i:i + 50])
        assert r.status_code == 200, r.text
    md = MeterData(rep.storage)
    md.store.put_point(make_point("miller-grid", "grid", member="Miller"))
    md.store.put_point(make_point("miller-pv", "pv", member="Miller"))
    assign(md, "miller-grid", "north", "grid", 0, None)
    assign(md, "miller-pv", "north", "pv", 0, None)
    return rep, key


def get(rep: RunningReplica, path: str, **params: Any) -> Any:
    r = rep.http.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json() if "json" in r.headers["content-type"] else r.text


def test_household_import_and_export_per_quarter_hour_by_name_and_date(
        loaded: tuple[RunningReplica, bytes]) -> None:
    rep, key = loaded
    doc = get(rep, "/v1/meterdata/intervals", gateway="north", member="Miller",
              **{"from": "2025-11-30"}, to="2025-11-30")
    assert doc["from_ms"] == DAY0 and doc["to_ms"] == DAY0 + 86_400_000
    series = {(s["point"], s["direction"]): s for s in doc["series"]}
    assert set(series) == {("miller-grid", "import"), ("miller-grid", "export"),
                           ("miller-pv", "export")}
    imp = series[("miller-grid", "import")]
    assert len(imp["intervals"]) == 96
    assert [iv["wh"] for iv in imp["intervals"]] == [150] * 96
    assert imp["total_wh"] == 96 * 150 and imp["quality_counts"]["measured"] == 96
    assert imp["intervals"][0]["start"] == "2025-11-30T00:00:00+01:00"
    assert series[("miller-grid", "export")]["total_wh"] == 96 * 15
    pv = series[("miller-pv", "export")]
    assert pv["total_wh"] == 110 * 30  # readings 90..199 each add 30 Wh
    # the same by key and by milliseconds, with a 1-hour grid
    doc2 = get(rep, "/v1/meterdata/intervals", gateway=key.hex(), point="miller-grid",
               **{"from": str(DAY0)}, to=str(DAY0 + 86_400_000), interval="1h")
    assert [iv["wh"] for iv in doc2["series"][0]["intervals"]] == [600] * 24


def test_traces_are_backed_by_proofs(loaded: tuple[RunningReplica, bytes]) -> None:
    rep, key = loaded
    doc = get(rep, "/v1/meterdata/intervals", point="miller-grid",
              **{"from": "2025-11-30T06:00+01:00"}, to="2025-11-30T07:00+01:00",
              traces="true")
    iv = doc["series"][0]["intervals"][0]
    (start,), (end,) = iv["start_trace"], iv["end_trace"]
    values = []
    for o in (start, end):
        assert o["gateway"] == key.hex()
        proof = get(rep, f"/v1/gateways/{o['gateway']}/proof", height=o["height"],
                    index=o["index"])
        _, reading = verify_proof_text(json.dumps(proof), key)  # signed by the gateway
        assert reading.obis == "1-0:1.8.0" and reading.meter_id == "grid"
        values.append(reading.value)
    assert values[1] - values[0] == iv["wh"] == 150


def test_csv_and_day_totals(loaded: tuple[RunningReplica, bytes]) -> None:
    rep, _ = loaded
    text = get(rep, "/v1/meterdata/intervals", point="miller-pv", **{"from": "2025-11-30"},
               to="2025-11-30", format="csv", traces="true")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 96 and rows[0]["point"] == "miller-pv"
    assert sum(int(r["wh"]) for r in rows) == 110 * 30
    assert all(r["start_trace"].count(":") == 2 for r in rows)
    day = get(rep, "/v1/meterdata/intervals", point="miller-pv", **{"from": "2025-11-30"},
              to="2025-11-30", interval="day")
    (d,) = day["series"][0]["intervals"]
    assert d["wh"] == 110 * 30 and d["start"] == "2025-11-30T00:00:00+01:00"


def test_points_list_and_unassigned(loaded: tuple[RunningReplica, bytes]) -> None:
    rep, _ = loaded
    doc = get(rep, "/v1/meterdata/points")
    assert [p["point"] for p in doc["points"]] == ["miller-grid", "miller-pv"]
    assert doc["points"][0]["meters"][0]["gateway_name"] == "north"
    assert [(u["gateway_name"], u["meter"]) for u in doc["unassigned"]] == [("north", "spare")]


def test_raw_readings_by_name_date_meter_and_register(
        loaded: tuple[RunningReplica, bytes]) -> None:
    rep, key = loaded
    text = get(rep, "/v1/meterdata/readings.csv", gateway="north", meter="pv",
               register="1-0:2.8.0", **{"from": "2025-11-30T00:00+01:00"},
               to="2025-11-30T01:00+01:00")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 12
    assert {r["meter_id"] for r in rows} == {"pv"} and {r["obis"] for r in rows} == {"1-0:2.8.0"}
    # the gateway's own export endpoint takes its name and ISO times too
    text2 = get(rep, "/v1/gateways/north/readings.csv", from_ms="2025-11-29T23:00:00Z",
                to_ms="2025-11-30T00:00:00Z")
    assert len(list(csv.DictReader(io.StringIO(text2)))) == 12 * 3 + 5  # + spare
    assert get(rep, "/v1/gateways/north/head")["height"] == get(
        rep, f"/v1/gateways/{key.hex()}/head")["height"]


def test_gateway_status_names_silent_ones(loaded: tuple[RunningReplica, bytes]) -> None:
    rep, _ = loaded
    rep.storage.enroll(gateway_key(b"never-pushed"), "quiet", None, 1)
    doc = get(rep, "/v1/meterdata/gateways", silent_after="2h")
    states = {g["name"]: g for g in doc["gateways"]}
    assert states["quiet"]["state"] == "silent" and states["quiet"]["last_seen_ms"] is None
    # north pushed just now, but its newest reading is from 2025: behind
    assert states["north"]["state"] == "behind"
    assert states["north"]["newest_reading_ms"] == DAY0 - 600_000 + (N - 1) * STEP
    assert doc["silent"] == 1 and doc["behind"] == 1


@pytest.mark.parametrize("path,params,code", [
    ("/v1/meterdata/intervals", {"gateway": "north", "from": "2025-11-30", "to": "2025-11-30",
                                 "meterid": "grid"}, "unknown-parameter"),
    ("/v1/gateways/north/head", {"verbose": "1"}, "unknown-parameter"),
    ("/v1/meterdata/intervals", {"gateway": "north", "from": "30.11.2025", "to": "2025-11-30"},
     "malformed"),
    ("/v1/meterdata/intervals", {"gateway": "north", "from": "2025-11-30", "to": "2025-11-29"},
     "malformed"),
    ("/v1/meterdata/intervals", {"gateway": "north", "from": "2025-11-30", "to": "2025-11-30",
                                 "interval": "7m"}, "malformed"),
    ("/v1/meterdata/intervals", {"gateway": "north", "from": "2025-11-30", "to": "2025-11-30",
                                 "tz": "Mars/Olympus"}, "malformed"),
    ("/v1/meterdata/intervals", {"meter": "grid", "from": "2025-11-30", "to": "2025-11-30"},
     "malformed"),
    ("/v1/meterdata/intervals", {"from": "2025-01-01", "to": "2030-01-01", "gateway": "north"},
     "malformed"),
    ("/v1/meterdata/readings.csv", {"gateway": "north", "register": "1.8"}, "malformed"),
    ("/v1/meterdata/gateways", {"silent_after": "soon"}, "malformed"),
])
def test_bad_requests_are_refused_with_the_reason(loaded: tuple[RunningReplica, bytes],
                                                  path: str, params: dict[str, str],
                                                  code: str) -> None:
    rep, _ = loaded
    r = rep.http.get(path, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == code
    assert "Traceback" not in r.text


def test_unknown_names_are_404(loaded: tuple[RunningReplica, bytes]) -> None:
    rep, _ = loaded
    for params in ({"gateway": "south"}, {"point": "nope"}, {"member": "Nobody"},
                   {"gateway": "north", "meter": "ghost"}):
        r = rep.http.get("/v1/meterdata/intervals",
                         params={**params, "from": "2025-11-30", "to": "2025-11-30"})
        assert r.status_code == 404, (params, r.text)
    rep.storage.enroll(gateway_key(b"twin"), "north", None, 1)
    r = rep.http.get("/v1/meterdata/intervals", params={"gateway": "north", "from": "2025-11-30",
                                                        "to": "2025-11-30"})
    assert r.status_code == 400 and r.json()["error"] == "ambiguous-gateway"
