"""Every rule agrees with published worked examples (fixtures cite their source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from settlement.allocation import check

from .rules_util import make_interval, make_rule

EXAMPLES = json.loads((Path(__file__).parent / "published_examples.json").read_text())["examples"]


@pytest.mark.parametrize("ex", EXAMPLES, ids=lambda e: e["name"])
def test_published_example(ex: dict[str, Any]) -> None:
    assert ex["source"]
    iv = make_interval(ex["consumers"], ex["producers"], hour_of_year=ex.get("hour_of_year", 0))
    a = make_rule(ex["rule"], ex["params"]).allocate(iv)
    check(iv, a)
    want = ex["expect"]
    assert dict(zip(iv.consumers, a.covered, strict=True)) == want["covered"]
    surplus = {p: g - u for p, g, u in zip(iv.producers, iv.generation, a.used, strict=True)}
    assert surplus == want["surplus"]
    if "allocated" in want:
        assert dict(zip(iv.consumers, a.allocated, strict=True)) == want["allocated"]
    if "to_community" in want:
        assert dict(zip(iv.producers, a.to_community, strict=True)) == want["to_community"]
    if "grid_import" in want:
        got = {c: iv.consumption[j] - a.covered[j] for j, c in enumerate(iv.consumers)}
        assert got == want["grid_import"]
