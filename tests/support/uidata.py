"""A fixed data set for the web view's browser tests and ``bench/ui.py``.

Built through :class:`replica.service.ReplicaService` (every block verified as a push
would be), with the replica's clock set per push so that each gateway lands in a known
state of the overview at ``now_ms``: ``north`` ok, ``east`` behind (pushes, old
readings), ``south`` silent (no block), ``dormant`` silent (pushed long ago), ``west``
revoked, ``forky`` with fork evidence, and ``meadow`` (behind: its readings are of a
past day), a household
with metering points (grid import and export, PV generation) read every 5 minutes over
:data:`DAY` (Europe/Vienna), with a 40-minute gap (substituted intervals) and a 3-hour
gap (estimated ones) in the grid meter's readings. ``extra`` more gateways
(``gw-0000``...) are ok, behind or silent in turn.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from replica.config import Limits
from replica.meterdata.cli import assign
from replica.meterdata.query import MeterData
from replica.meterdata.registry import make_point
from replica.service import ReplicaService
from replica.storage.base import ForkRecord, Storage
from tests.support.chains import gateway_key, make_chain
from tests.support.meterdata import register_readings, seal_readings

DAY_MS = 86_400_000
BEHIND_S = 900
SILENT_S = 3600
DAY = "2025-11-30"
DAY0_MS = 1_764_457_200_000
"""Midnight starting :data:`DAY` in Europe/Vienna (UTC+1)."""
STEP_MS = 300_000
GAP_SHORT = range(70, 78)
"""Readings left out of the grid meter: 40 minutes (substituted, linear)."""
GAP_LONG = range(150, 186)
"""Readings left out of the grid meter: 3 hours (estimated)."""
FIXED_GATEWAYS = 7


@dataclass
class UiDataSet:
    """What was built: ``keys`` by gateway name, ``now_ms`` the time states refer to."""

    now_ms: int
    keys: dict[str, str] = field(default_factory=dict)
    expected_state: dict[str, str] = field(default_factory=dict)


def push_chain(storage: Storage, key: bytes, seed: bytes, n: int, start_ms: int,
               seen_ms: int, per_block: int = 4) -> None:
    """Push ``n`` blocks of ``per_block`` readings through the service, seen at ``seen_ms``."""
    blocks = make_chain(seed, n, per_block, start_ms=start_ms, span_ms=900_000)
    svc = ReplicaService(storage, Limits(rate_per_gateway=0), clock_ms=lambda: seen_ms)
    body = json.dumps({"blocks": [base64.b64encode(b.encode()).decode() for b in blocks]})
    svc.push(key.hex(), body.encode())


def build(storage: Storage, now_ms: int, extra: int = 0) -> UiDataSet:
    """Enroll and fill the data set's gateways into ``storage``."""
    ds = UiDataSet(now_ms)
    old = now_ms - DAY_MS

    def recent(n: int) -> int:
        """Start of ``n`` blocks of 15 minutes whose last ends a minute before now."""
        return now_ms - 60_000 - n * 900_000

    def enroll(name: str, site: str | None, state: str) -> bytes:
        key = gateway_key(name.encode())
        storage.enroll(key, name, site, old - 60_000)
        ds.keys[name] = key.hex()
        ds.expected_state[name] = state
        return key

    k = enroll("north", "plant-1", "ok")
    push_chain(storage, k, b"north", 6, recent(6), now_ms - 60_000)
    k = enroll("east", "plant-2", "behind")  # pushes, but only day-old readings
    push_chain(storage, k, b"east", 3, old, now_ms - 60_000)
    enroll("south", None, "silent")  # never pushed
    k = enroll("dormant", "plant-2", "silent")  # pushed, long ago
    push_chain(storage, k, b"dormant", 2, old, now_ms - 2 * SILENT_S * 1000)
    k = enroll("west", "plant-1", "revoked")
    push_chain(storage, k, b"west", 2, old, now_ms - 120_000)
    storage.revoke(k, now_ms - 60_000)
    k = enroll("forky", "plant-3", "fork")
    push_chain(storage, k, b"forky", 3, recent(3), now_ms - 30_000)
    a = make_chain(b"forky", 3, 4, start_ms=recent(3), span_ms=900_000)[2]
    b = make_chain(b"forky", 3, 5, start_ms=recent(3), span_ms=900_000)[2]
    storage.add_fork(ForkRecord(k, 2, a.header.encode(), a.signature, b.header.encode(),
                                b.signature, now_ms - 30_000))
    k = enroll("meadow", "village", "behind")  # pushes now, readings of DAY only
    _household(storage, k, now_ms - 60_000)
    for i in range(extra):
        name = f"gw-{i:04d}"
        kind = ("ok", "behind", "silent")[i % 3]
        k = enroll(name, f"site-{i % 37}", kind)
        if kind != "silent":
            push_chain(storage, k, name.encode(), 2, recent(2) if kind == "ok" else old,
                       now_ms - 60_000)
    return ds


def _household(storage: Storage, key: bytes, seen_ms: int) -> None:
    """``meadow``'s readings over :data:`DAY` and its metering points."""
    t0 = DAY0_MS - 600_000
    n = 24 * 12 + 2  # 23:50 the day before to 23:55: the last interval has no end reading

    def gaps(k: int) -> bool:
        return k in GAP_SHORT or k in GAP_LONG

    rs = register_readings("grid", "1-0:1.8.0", t0, n=n, step_ms=STEP_MS,
                           wh_per_step=lambda k: 40 + (k * 7) % 23, skip=gaps)
    rs += register_readings("grid", "1-0:2.8.0", t0, n=n, step_ms=STEP_MS,
                            wh_per_step=lambda k: 25 if 110 <= k < 190 else 0, skip=gaps)
    rs += register_readings("pv", "1-0:2.8.0", t0, n=n, step_ms=STEP_MS,
                            wh_per_step=lambda k: max(0, 60 - abs(k - 150)))
    blocks = seal_readings(b"meadow", rs, per_block=96)
    svc = ReplicaService(storage, Limits(rate_per_gateway=0), clock_ms=lambda: seen_ms)
    body = json.dumps({"blocks": [base64.b64encode(b.encode()).decode() for b in blocks]})
    svc.push(key.hex(), body.encode())
    md = MeterData(storage)
    md.store.put_point(make_point("meadow-grid", "grid", member="Meadow"))
    md.store.put_point(make_point("meadow-pv", "pv", member="Meadow"))
    assign(md, "meadow-grid", "meadow", "grid", 0, None)
    assign(md, "meadow-pv", "meadow", "pv", 0, None)
