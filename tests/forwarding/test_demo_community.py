"""The demo's community on days that are not ordinary: 25 hours (the autumn clock
change) and midsummer, on a replica under uvicorn as the demo runs it; the same day
sealed twice gives the same readings, and a second run adds nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest

import keyfiles
from meterchain.demo_community import settle_community_day
from meterchain.demo_households import GATEWAYS, day_bounds_ms, day_readings
from meterchain.demo_pipeline import _ReplicaThread


def test_a_day_of_readings_is_the_same_every_time_and_integer() -> None:
    day = dt.date(2026, 11, 30)
    a = day_readings(GATEWAYS[1], day, -1, {})
    b = day_readings(GATEWAYS[1], day, -1, {})
    assert [[(r.meter_id, r.value, r.timestamp_ms) for r in rnd] for rnd in a] == \
        [[(r.meter_id, r.value, r.timestamp_ms) for r in rnd] for rnd in b]
    start, end = day_bounds_ms(day)
    assert len(a) == (end - start) // 300_000 + 1  # both midnights included
    pv = [rnd[1].value for rnd in a]
    assert pv == sorted(pv) and pv[-1] > pv[0]  # a register only counts up
    # continuing after a reading: only later times, registers carried on
    regs = {("clara-grid", "1-0:1.8.0"): a[100][0].value, ("clara-pv", "1-0:2.8.0"): pv[100]}
    rest = day_readings(GATEWAYS[1], day, a[100][0].timestamp_ms, regs)
    assert [rnd[0].timestamp_ms for rnd in rest] == [rnd[0].timestamp_ms for rnd in a[101:]]
    # the same energy from there on, less the fraction of a Wh not yet counted at 100
    assert all(0 <= whole - cont <= 1 for whole, cont in
               zip(pv[101:], (rnd[1].value for rnd in rest), strict=True))


@pytest.mark.parametrize(("day", "intervals"), [(dt.date(2026, 10, 25), 100),
                                                (dt.date(2026, 6, 21), 96)])
def test_the_community_settles_any_day(tmp_path: Path, day: dt.date, intervals: int) -> None:
    keydir = tmp_path / "keys"
    replica = _ReplicaThread(tmp_path, keyfiles.generate_gateway_key(keydir))
    replica.start()
    lines: list[str] = []
    try:
        result = asyncio.run(settle_community_day(tmp_path / "community", replica.url,
                                                  replica.storage_url, day=day,
                                                  out=lines.append))
        again = asyncio.run(settle_community_day(tmp_path / "community", replica.url,
                                                 replica.storage_url, day=day,
                                                 out=lines.append))
    finally:
        replica.stop()
    text = "\n".join(lines)
    assert result.verified and again.verified and result.root == again.root, text
    assert text.count("sealed 0 block(s)") == 2  # the second run found the day sealed
    doc = json.loads(result.settlement.read_text())["document"]
    st = json.loads((result.settlement.parent / "members" / "clara.json").read_text())
    assert sum(ln.startswith("I,") for ln in st["lines"]) == intervals
    assert st["channels_wh"]["P.01_surplus"] > 0 and st["provisional_intervals"] == 0
    assert doc["totals"]["covered"] == doc["totals"]["generation"] - doc["totals"]["surplus"]
