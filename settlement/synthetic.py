"""A deterministic synthetic community for tests, benchmarks and the demo.

Households draw a base load with a morning and an evening peak; producers are
rooftop PV with a bell-shaped day (no battery: a surplus at noon). Everything comes
from ``random.Random(seed)``, so the same arguments give the same data.
"""

from __future__ import annotations

import random
from typing import Any

from settlement.source import IntervalData, Source

DAY_MS = 86_400_000


def community_toml(members: int, producers: int, *, mode: str = "pro_rata",
                   name: str = "synthetic", time_zone: str = "UTC") -> dict[str, Any]:
    """A parsed ``community.toml``: members ``m0000``.., the first ``producers`` are
    prosumers (a consumption and a generation point)."""
    width = max(4, len(str(members)))
    rows = []
    for i in range(members):
        mid = f"m{i:0{width}d}"
        row: dict[str, Any] = {"id": mid, "consumption": [f"{mid}-c"], "key": 1 + i % 3,
                               "priority": i % 2, "bid_limit": 15_000 + 50 * (i % 40)}
        if i < producers:
            row["generation"] = [f"{mid}-g"]
            row["offer_limit"] = 6_000 + 100 * (i % 30)
        rows.append(row)
    sharing: dict[str, Any] = {"mode": mode}
    if mode == "coefficient_schedule":
        sharing["coefficients"] = [{"first": 0, "end": 8784, "producer": "*",
                                    "member": r["id"], "weight": r["key"]} for r in rows]
    return {"community": {"name": name, "time_zone": time_zone, "interval_minutes": 15},
            "sharing": sharing,
            "prices": {"community": 11_000, "grid_supply": 28_000, "feed_in": 7_000,
                       "grid_fee": 1_500},
            "members": rows}


def intervals(members: int, producers: int, start_ms: int, count: int, *,
              interval_ms: int = 900_000, seed: int = 1, estimated_every: int = 0,
              ) -> IntervalData:
    """Interval energy for the community of :func:`community_toml`.

    ``estimated_every`` > 0 marks every n-th consumption interval ``E`` (estimated).
    """
    rnd = random.Random(seed)
    width = max(4, len(str(members)))
    per_day = DAY_MS // interval_ms
    points: dict[str, dict[int, tuple[int, int]]] = {}
    shared: dict[tuple[int, int], tuple[int, int]] = {}  # one tuple per distinct value
    shape = []
    for k in range(per_day):
        hour = k * 24 / per_day
        sun = max(0.0, 1 - ((hour - 12.5) / 5.5) ** 2)
        load = 1 + 0.8 * max(0.0, 1 - abs(hour - 7.5) / 1.5) + 1.2 * max(
            0.0, 1 - abs(hour - 19) / 2.5)
        shape.append((round(1000 * sun), round(1000 * load)))
    for i in range(members):
        mid = f"m{i:0{width}d}"
        base = rnd.randint(40, 120)
        cons: dict[int, tuple[int, int]] = {}
        for k in range(count):
            t = start_ms + k * interval_ms
            wh = base * shape[k % per_day][1] // 1000 + rnd.randint(0, 30)
            q = 2 if estimated_every and (k + i) % estimated_every == 0 else 0
            cons[t] = shared.setdefault((wh, q), (wh, q))
        points[f"{mid}-c"] = cons
        if i < producers:
            peak = rnd.randint(600, 2000)
            gen = {}
            for k in range(count):
                t = start_ms + k * interval_ms
                sun = shape[k % per_day][0]
                v = (peak * sun // 1000 * rnd.randint(70, 100) // 100 if sun else 0, 0)
                gen[t] = shared.setdefault(v, v)
            points[f"{mid}-g"] = gen
    sources = (Source("11" * 32, 0, count - 1, "22" * 32),)
    return IntervalData(interval_ms, points, sources)
