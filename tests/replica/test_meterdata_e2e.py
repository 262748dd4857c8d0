"""End to end: the demo's gateway pipeline (simulated meters over Modbus TCP, RTU on a
pseudo-terminal, SunSpec and DSMR P1; the agent; its forwarder) pushes to a replica,
and `meterchain replica intervals` answers the utility's everyday questions:

- how much did the Miller household import and export yesterday, per 15 minutes?
- which gateways are silent or behind?
- consumption against rooftop generation over a day.

The agent's clock is the real one, so yesterday's history is sealed into the gateway's
ledger with the gateway's own key before the pipeline starts; the forwarder pushes it
with the live blocks, and the replica indexes everything as it is stored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import keyfiles
from agent.storage.store import BlockStore
from ledger import block_readings
from meterchain.cli import main
from meterchain.demo_pipeline import run_pipeline_demo
from replica.meterdata import calendar
from replica.meterdata.query import MeterData
from replica.storage.base import open_storage
from tests.support.chains import gateway_key
from tests.support.meterdata import register_readings, seal_readings

STEP = 300_000
REGISTRY = """
[[point]]
id = "miller-grid"
role = "grid"
member = "Miller"
  [[point.meter]]
  gateway = "demo-gateway"
  meter = "grid-p1"

[[point]]
id = "miller-pv"
role = "pv"
member = "Miller"
  [[point.meter]]
  gateway = "demo-gateway"
  meter = "rooftop-pv"

[[point]]
id = "miller-heatpump"
role = "heat-pump"
member = "Miller"
  [[point.meter]]
  gateway = "demo-gateway"
  meter = "heat-pump"
"""


def _pv_step(k: int) -> int:
    hour = (k * 5 // 60) % 24
    return 0 if not 7 <= hour < 17 else 60 + 10 * (5 - abs(12 - hour))


def _history(y0: int, y1: int) -> list:
    """Yesterday (and 10 minutes either side) as the demo's meters would have read it."""
    start = y0 - 600_000
    n = (y1 + 600_000 - start) // STEP + 1
    rs = []
    for obis, per in (("1-0:1.8.1", lambda k: 30 + k % 5), ("1-0:1.8.2", lambda k: 7),
                      ("1-0:2.8.1", lambda k: _pv_step(k) // 2), ("1-0:2.8.2", lambda k: 0)):
        rs += register_readings("grid-p1", obis, start, n=n, step_ms=STEP, wh_per_step=per,
                                unit="kWh", exponent=-3)
    rs += register_readings("rooftop-pv", "1-0:2.8.0", start, n=n, step_ms=STEP,
                            wh_per_step=_pv_step, base_wh=8_765_430)
    rs += register_readings("heat-pump", "1-0:1.8.0", start, n=n, step_ms=STEP, unit="kWh",
                            exponent=-2, wh_per_step=lambda k: 20)
    return rs


def _register_at(rs: list, meter: str, obis: str, ts: int) -> int:
    (r,) = [r for r in rs if r.meter_id == meter and r.obis == obis and r.timestamp_ms == ts]
    scale = {"kWh": 3}.get(r.unit, 0) + r.exponent
    return r.value * 10**scale if scale >= 0 else r.value // 10**-scale


@pytest.mark.slow
def test_demo_pipeline_answers_the_utilitys_questions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tz = calendar.zone("Europe/Vienna")
    today = datetime.now(UTC).astimezone(tz).date()
    yesterday = today - timedelta(days=1)
    y0, y1 = calendar.day_range(yesterday, tz)
    top = tmp_path / "demo"
    BlockStore.open(top).close()
    keydir = top / "keys"
    keydir.mkdir()
    keyfiles.generate_gateway_key(keydir)
    seed = keyfiles.load_signing_key(keydir / keyfiles.GATEWAY_KEY)
    history = [r for r in _history(y0, y1)
               if r.timestamp_ms < datetime.now(UTC).timestamp() * 1000 - 60_000]
    with BlockStore.open(top) as store:
        store.append_many(seal_readings(seed, history, per_block=48))

    lines: list[str] = []
    result = run_pipeline_demo(top, seconds=5.0, out=lines.append)
    assert result.identical and result.readings > 0

    cfg = tmp_path / "replica.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite:///{top / "demo" / "replica.db"}"\n')
    reg = tmp_path / "registry.toml"
    reg.write_text(REGISTRY)

    def cli(*args: str) -> str:
        code = main(["replica", *args, "--config", str(cfg)])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    cli("enroll", gateway_key(b"quiet-gateway").hex(), "--name", "quiet", "--site", "barn")
    cli("meter", "import", str(reg))

    # every reading of the agent's ledger is in the index, at its ledger position
    storage = open_storage(f"sqlite:///{top / 'demo' / 'replica.db'}")
    try:
        rows = MeterData(storage).store.index_rows()
    finally:
        storage.close()
    with BlockStore.open(top) as store:
        ledger = {(h, i): r for h in range(store.height + 1)
                  for i, (r, _) in enumerate(block_readings(store.get(h)))}
    assert {(h, i) for (_k, _m, _o, _u, _e, _t, h, i, _v, _f) in rows} == set(ledger)
    assert len(rows) == len(ledger)

    # 1. the household's import and export yesterday, per 15 minutes
    doc = json.loads(cli("intervals", "--gateway", "demo-gateway", "--member", "Miller",
                         "--from", yesterday.isoformat(), "--to", yesterday.isoformat(),
                         "--interval", "15m", "--format", "json"))
    got = {(s["point"], s["direction"]): s for s in doc["series"]}
    quarter_hours = (y1 - y0) // 900_000
    for direction, regs in (("import", ["1-0:1.8.1", "1-0:1.8.2"]),
                            ("export", ["1-0:2.8.1", "1-0:2.8.2"])):
        s = got[("miller-grid", direction)]
        assert s["registers"] == regs  # tariff registers summed
        assert len(s["intervals"]) == quarter_hours
        assert s["quality_counts"]["measured"] == quarter_hours
        want = sum(_register_at(history, "grid-p1", o, y1)
                   - _register_at(history, "grid-p1", o, y0) for o in regs)
        assert s["total_wh"] == want > 0

    # 2. which gateways are silent or behind
    status = json.loads(cli("status", "--json", "--silent-after", "10m"))
    states = {g["name"]: g["state"] for g in status["gateways"]}
    assert states == {"demo-gateway": "ok", "quiet": "silent"}
    table = cli("status")
    assert "silent" in table and "quiet" in table

    # 3. consumption against rooftop generation, hour by hour
    doc = json.loads(cli("intervals", "--member", "Miller", "--from", yesterday.isoformat(),
                         "--to", yesterday.isoformat(), "--interval", "1h", "--format",
                         "json"))
    got = {(s["point"], s["direction"]): s for s in doc["series"]}
    pv = got[("miller-pv", "export")]
    use = got[("miller-grid", "import")]
    assert len(pv["intervals"]) == len(use["intervals"]) == (y1 - y0) // 3_600_000
    assert pv["total_wh"] == (_register_at(history, "rooftop-pv", "1-0:2.8.0", y1)
                              - _register_at(history, "rooftop-pv", "1-0:2.8.0", y0))
    noon = [iv for iv in pv["intervals"] if iv["start"][11:13] == "12"]
    night = [iv for iv in pv["intervals"] if iv["start"][11:13] == "02"]
    assert noon[0]["wh"] > 0 and night[0]["wh"] == 0
    assert ("miller-heatpump", "import") in got
    table = cli("intervals", "--member", "Miller", "--from", yesterday.isoformat(), "--to",
                yesterday.isoformat(), "--interval", "day")
    assert "miller-pv (pv, member Miller) export" in table
