"""Fixtures of the serial meter tests: captures on disk and simulators on pseudo-terminals."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.sim.d0 import D0SimConfig, D0Simulator
from drivers.sim.p1 import P1SimConfig, P1Simulator
from ledger import ClockSource, Reading

CAPTURES = Path(__file__).resolve().parent.parent / "captures"


def iso_ms(text: str) -> int:
    """``2024-01-15T08:30:00Z`` -> epoch milliseconds."""
    t = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 1000


def load_expected(path: Path) -> dict:
    return json.loads(path.read_text())


def expected_readings(spec: dict, now_ms: int) -> list[Reading]:
    """Readings a capture's JSON says it must give."""
    out = []
    cols = spec["columns"]
    for row in spec["readings"]:
        r = dict(zip(cols, row, strict=True))
        ts = now_ms if r.get("time", "now") == "now" else iso_ms(r["time"])
        clock = ClockSource[r.get("clock", "GATEWAY")]
        out.append(Reading.make(spec["meter_id"], r["obis"], r["value"], r["exponent"],
                                r["unit"], ts, clock, r.get("quality", 0)))
    return out


@pytest.fixture
def p1_sim(request: pytest.FixtureRequest) -> Iterator[P1Simulator]:
    """A P1 simulator; parametrize indirectly with a P1SimConfig (default: v5, no faults)."""
    config = getattr(request, "param", None) or P1SimConfig()
    with P1Simulator(config) as sim:
        yield sim


@pytest.fixture
def d0_sim(request: pytest.FixtureRequest) -> Iterator[D0Simulator]:
    """A D0 simulator; parametrize indirectly with a D0SimConfig."""
    config = getattr(request, "param", None) or D0SimConfig()
    with D0Simulator(config) as sim:
        yield sim
