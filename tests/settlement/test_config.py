"""community.toml: a good file loads; a bad one lists every problem with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.errors import ConfigError, ConfigErrors
from settlement.config import load_community, parse_community
from settlement.synthetic import community_toml

GOOD = """
[community]
name = "sonnenhof"
time_zone = "Europe/Vienna"
interval_minutes = 15
currency = "EUR"

[sharing]
mode = "static_keys"
unused = "community"

[prices]
community = 12000
grid_supply = 30000
feed_in = 7000
grid_fee_kind = "percent_bp"
grid_fee = 500

[[members]]
id = "anna"
consumption = ["AT0010000000000000001000000000001"]
key = 25

[[members]]
id = "bert"
consumption = ["AT0010000000000000001000000000002"]
generation = ["AT0010000000000000001000000000003"]
key = 75
"""


def test_good_file_loads_with_its_hash(tmp_path: Path) -> None:
    p = tmp_path / "community.toml"
    p.write_text(GOOD)
    c = load_community(str(p))
    assert c.name == "sonnenhof" and c.interval_ms == 900_000
    assert c.consumers == ("anna", "bert") and c.producers == ("bert",)
    assert c.prices.grid_fee.kind == "percent_bp" and c.prices.grid_fee.value == 500
    assert len(c.sha256) == 64
    p.write_text(GOOD + "\n")
    assert load_community(str(p)).sha256 != c.sha256


def test_every_problem_at_once_with_its_key_path() -> None:
    data = {
        "community": {"name": "x y", "time_zone": "Mars/Olympus", "interval_minutes": 7,
                      "currency": "euro"},
        "sharing": {"mode": "promata", "coefficients": [{"first": 5, "end": 2,
                                                          "member": "zed", "weight": 1}]},
        "prices": {"community": 12.5, "grid_fee_kind": "percent_bp", "grid_fee": 20_000},
        "members": [{"id": "a", "consumption": ["p1"], "kee": 1},
                    {"id": "a", "consumption": ["p1"]}, {}],
        "extra": 1,
    }
    with pytest.raises(ConfigErrors) as info:
        parse_community(data)
    paths = {e.path for e in info.value.errors}
    assert {"community.name", "community.time_zone", "community.interval_minutes",
            "community.currency", "sharing.mode", "sharing.coefficients[0].end",
            "prices.community", "prices.grid_fee", "members[0].kee", "members[1].id",
            "members[1].consumption[0]", "members[2].id", "members[2]", "extra",
            "members"} <= paths
    text = str(info.value)
    assert "did you mean 'key'" in text and "no fractions" in text


def test_mode_specific_requirements() -> None:
    base = community_toml(3, 1)
    for m in base["members"]:
        m.pop("key"), m.pop("bid_limit", None), m.pop("offer_limit", None)
    for mode, path in (("static_keys", "members"), ("market", "members"),
                       ("coefficient_schedule", "sharing.coefficients")):
        data = dict(base, sharing={"mode": mode})
        with pytest.raises(ConfigErrors) as info:
            parse_community(data)
        assert path in {e.path for e in info.value.errors}, mode
    data = dict(base, sharing={"mode": "coefficient_schedule", "coefficients": [
        {"first": 0, "end": 24, "producer": "m0001", "member": "m0000", "weight": 1}]})
    with pytest.raises(ConfigErrors) as info:
        parse_community(data)
    assert "sharing.coefficients[0].producer" in {e.path for e in info.value.errors}


def test_unreadable_and_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_community(str(tmp_path / "missing.toml"))
    p = tmp_path / "bad.toml"
    p.write_text("[community\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_community(str(p))


def test_hourly_coefficients_from_a_file(tmp_path: Path) -> None:
    toml = GOOD.replace('mode = "static_keys"\nunused = "community"',
                        'mode = "coefficient_schedule"\ncoefficients_file = "betas.csv"')
    (tmp_path / "community.toml").write_text(toml)
    rows = ["first,end,producer,member,weight"]
    for h in range(8760):  # Spain-style: a coefficient per member and hour of the year
        rows += [f"{h},{h + 1},*,anna,{30 if h % 24 < 12 else 70}",
                 f"{h},{h + 1},bert,bert,{70 if h % 24 < 12 else 30}"]
    (tmp_path / "betas.csv").write_text("\n".join(rows) + "\n")
    c = load_community(str(tmp_path / "community.toml"))
    assert len(c.sharing.coefficients) == 2 * 8760
    assert len(c.coefficients_sha256) == 64
    from settlement.rules.schedule import CoefficientSchedule
    rule = CoefficientSchedule(c.sharing.coefficients)
    assert rule.weights(13, "bert", ("anna", "bert")) == [70, 30]
    assert rule.weights(2, "bert", ("anna", "bert")) == [30, 70]
    (tmp_path / "betas.csv").write_text(
        "first,end,producer,member,weight\n0,1,*,anna\n0,1,*,zed,1\n2,1,nobody,anna,x\n")
    with pytest.raises(ConfigErrors) as info:
        load_community(str(tmp_path / "community.toml"))
    assert [e.path for e in info.value.errors] == ["sharing.coefficients_file:2"]
    (tmp_path / "betas.csv").write_text(
        "first,end,producer,member,weight\n0,1,*,zed,1\n2,1,nobody,anna,x\n")
    with pytest.raises(ConfigErrors) as info:
        load_community(str(tmp_path / "community.toml"))
    paths = {e.path for e in info.value.errors}
    assert {"sharing.coefficients_file:2.member", "sharing.coefficients_file:3.end",
            "sharing.coefficients_file:3.weight",
            "sharing.coefficients_file:3.producer"} <= paths
    (tmp_path / "betas.csv").write_text("hour,beta\n")
    with pytest.raises(ConfigError, match="first line must be"):
        load_community(str(tmp_path / "community.toml"))
