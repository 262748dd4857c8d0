"""Record a real replica's meter-data answers for the settlement adapter's tests.

    python tests/settlement/captures/capture_meterdata.py [--out FILE]

Run from a checkout that has the replica's meter data (``replica.meterdata``). It
starts the replica under uvicorn on 127.0.0.1 with a throw-away SQLite database,
pushes one day of signed 5-minute register readings of a small community (a
household with a one-hour gap, a prosumer, a PV plant), registers its metering
points, and records every answer the settlement adapter asks for
(``settlement.replica_source``): intervals per point with traces, the hash of the
newest block the traces name, and the inclusion proof of every reading behind the
household's (anna's) intervals. The recording (``meterdata-day.json``) is what
``tests/settlement/test_replica_source.py`` serves back over a real socket.
"""

# ruff: noqa: I001  (import order depends on whether replica.meterdata is installed)
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from replica.config import Limits  # noqa: E402
from replica.meterdata.cli import assign  # noqa: E402
from replica.meterdata.query import MeterData  # noqa: E402
from replica.meterdata.registry import make_point  # noqa: E402
from replica.storage import open_storage  # noqa: E402
from tests.replica.conftest import RunningReplica  # noqa: E402
from tests.support.chains import gateway_key  # noqa: E402
from tests.support.meterdata import seal_readings  # noqa: E402
from tests.support.vectorhof import DAY0, north_readings, plant_readings  # noqa: E402

POINTS = {  # point -> (role, member, meter)
    "AT001-anna": ("grid", "anna", "anna-grid"),
    "AT001-bert-c": ("grid", "bert", "bert-grid"),
    "AT001-bert-g": ("pv", "bert", "bert-pv"),
    "AT001-plant": ("pv", "plant", "plant-pv"),
}
DIRECTION = {"AT001-anna": "import", "AT001-bert-c": "import", "AT001-bert-g": "export",
             "AT001-plant": "export"}


def readings() -> list:
    return north_readings() + plant_readings()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("meterdata-day.json")))
    ap.add_argument("--recorded-from", default="", help="what was recorded (branch, commit)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        storage = open_storage(f"sqlite:///{tmp}/replica.db", pool_size=4)
        rep = RunningReplica(storage, Limits(rate_per_gateway=0.0))
        try:
            key = gateway_key(b"settle-gw")
            storage.enroll(key, "north", "vectorhof", 1)
            blocks = seal_readings(b"settle-gw", readings(), per_block=100)
            r = rep.push(key, blocks)
            assert r.status_code == 200, r.text
            md = MeterData(storage)
            for point, (role, member, meter) in POINTS.items():
                md.store.put_point(make_point(point, role, member=member))
                assign(md, point, "north", meter, 0, None)
            answers = []
            heights: dict[str, int] = {}
            for point in POINTS:
                params = {"point": point, "from": str(DAY0), "to": str(DAY0 + 86_400_000),
                          "interval": "15m", "tz": "UTC", "traces": "true"}
                resp = rep.http.get("/v1/meterdata/intervals", params=params)
                assert resp.status_code == 200, resp.text
                doc = resp.json()
                answers.append({"path": "/v1/meterdata/intervals", "params": params,
                                "status": 200, "json": doc})
                for s in doc["series"]:
                    for iv in s["intervals"]:
                        for o in iv.get("start_trace", []) + iv.get("end_trace", []):
                            heights[o["gateway"]] = max(heights.get(o["gateway"], 0),
                                                        o["height"])
            anna = {(o["gateway"], o["height"], o["index"])
                    for a in answers if a["params"]["point"] == "AT001-anna"
                    for s in a["json"]["series"] for iv in s["intervals"]
                    for o in iv["start_trace"] + iv["end_trace"]}
            for gw, h, i in sorted(anna):
                path = f"/v1/gateways/{gw}/proof"
                params = {"height": str(h), "index": str(i)}
                resp = rep.http.get(path, params=params)
                assert resp.status_code == 200, resp.text
                answers.append({"path": path, "params": params, "status": 200,
                                "json": resp.json()})
            for gw, h in sorted(heights.items()):  # the newest block each gateway's traces name
                path = f"/v1/gateways/{gw}/blocks/{h}/hash"
                resp = rep.http.get(path)
                assert resp.status_code == 200, resp.text
                answers.append({"path": path, "params": {}, "status": 200,
                                "json": resp.json()})
        finally:
            rep.stop()
            storage.close()
    text = json.dumps({"about": __doc__.splitlines()[0], "gateway": key.hex(),
                       "day0_ms": DAY0, "points": DIRECTION, "answers": answers,
                       "recorded_from": args.recorded_from},
                      indent=1, sort_keys=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
