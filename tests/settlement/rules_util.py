"""Build rules and interval inputs from plain data (fixtures, property tests)."""

from __future__ import annotations

from typing import Any

from settlement.allocation import IntervalInput
from settlement.clearing.orders import Fee
from settlement.rules import load_all
from settlement.rules.schedule import Coefficient


def make_rule(name: str, params: dict[str, Any]) -> Any:
    cls = load_all()[name]
    kw = dict(params)
    if "coefficients" in kw:
        kw["coefficients"] = tuple(Coefficient(**c) for c in kw["coefficients"])
    if "fee" in kw:
        kw["fee"] = Fee(**kw["fee"])
    return cls(**kw)


def make_interval(consumers: dict[str, int], producers: dict[str, int], *, index: int = 0,
                  hour_of_year: int = 0) -> IntervalInput:
    cs = tuple(sorted(consumers))
    ps = tuple(sorted(producers))
    return IntervalInput(index, hour_of_year, cs, tuple(consumers[c] for c in cs), ps,
                         tuple(producers[p] for p in ps))
