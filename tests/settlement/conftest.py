"""A small synthetic community settled over one day, shared by the settlement tests."""

from __future__ import annotations

from typing import Any

import nacl.signing
import pytest

from settlement.config import Community, parse_community
from settlement.period import Period, parse_period
from settlement.source import IntervalData
from settlement.synthetic import community_toml, intervals

OPERATOR_SEED = bytes(range(32))


def small(mode: str = "pro_rata", *, estimated_every: int = 0, members: int = 6,
          producers: int = 2, **extra: Any) -> tuple[Community, Period, IntervalData]:
    data = community_toml(members, producers, mode=mode, name="small",
                          time_zone="Europe/Vienna")
    data["sharing"].update(extra)
    c = parse_community(data, sha256="ab" * 32)
    period = parse_period("2026-06-21", c.time_zone)
    d = intervals(members, producers, period.start_ms, 96, estimated_every=estimated_every)
    return c, period, d


@pytest.fixture
def operator() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(OPERATOR_SEED)
