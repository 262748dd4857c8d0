"""The small "vectorhof" community the settlement-against-a-replica tests share.

One day (2026-11-02, Europe/Vienna) of 5-minute register readings: a household with a
one-hour gap (anna), a prosumer with a grid and a PV meter (bert), a PV plant. The live
test (``tests/replica/test_settle_live.py``) pushes them to a running replica; the
capture script (``tests/settlement/captures/capture_meterdata.py``) recorded a replica's
answers over the same readings for ``tests/settlement/test_replica_source.py``.
"""

from __future__ import annotations

from typing import Any

from tests.support.meterdata import register_readings

DAY = "2026-11-02"
DAY0 = 1_793_574_000_000  # 2026-11-02T00:00:00+01:00
STEP = 300_000
N = 300  # 25 hours of readings from 10 minutes before the day
FIRST = DAY0 - 600_000

MEMBERS = """
[[members]]
id = "anna"
consumption = ["AT001-anna"]

[[members]]
id = "bert"
consumption = ["AT001-bert-c"]
generation = ["AT001-bert-g"]

[[members]]
id = "plant"
generation = ["AT001-plant"]
"""


def community_toml(name: str, prices: dict[str, int]) -> str:
    """A pro-rata community's ``[community]``, ``[sharing]`` and ``[prices]`` tables (in
    Europe/Vienna); the members are appended by the caller."""
    return (f'\n[community]\nname = "{name}"\ntime_zone = "Europe/Vienna"\n\n'
            '[sharing]\nmode = "pro_rata"\n\n[prices]\n'
            + "".join(f"{k} = {v}\n" for k, v in prices.items()))


def north_readings() -> list[Any]:
    """anna's grid meter (a gap of one hour), bert's grid and PV meters."""
    rs = register_readings("anna-grid", "1-0:1.8.0", FIRST, n=N, step_ms=STEP,
                           wh_per_step=lambda k: 30 + k % 5, skip=lambda k: 100 <= k < 112)
    rs += register_readings("bert-grid", "1-0:1.8.0", FIRST, n=N, step_ms=STEP,
                            wh_per_step=lambda k: 20 + k % 3)
    rs += register_readings("bert-pv", "1-0:2.8.0", FIRST, n=N, step_ms=STEP,
                            wh_per_step=lambda k: 40 if 90 <= k < 200 else 0)
    return rs


def plant_readings() -> list[Any]:
    """The PV plant's export register."""
    return register_readings("plant-pv", "1-0:2.8.0", FIRST, n=N, step_ms=STEP,
                             wh_per_step=lambda k: 100 if 85 <= k < 205 else 0)
