"""Profiles: every built-in one loads, cites a datasheet and has a probe; bad ones are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers import profile, quantities
from ledger.errors import ConfigError

REQUIRED = ["eastron-sdm120", "eastron-sdm230", "eastron-sdm630", "eastron-sdm72d",
            "carlo-gavazzi-em24", "carlo-gavazzi-em340", "abb-b2x", "schneider-iem3155",
            "sunspec-meter", "sunspec-inverter"]


def test_at_least_twelve_builtin_profiles_including_the_required_models() -> None:
    names = {n for n, p in profile.available().items() if p.parent == profile.BUILTIN_DIR}
    assert len(names) >= 12
    assert set(REQUIRED) <= names


@pytest.mark.parametrize("name", sorted(profile.available()))
def test_builtin_profile_is_complete(name: str) -> None:
    p = profile.load(name)
    assert p.name == name and len(p.datasheet) > 20
    if p.protocol == "modbus":
        assert p.probe is not None
        for r in p.registers:
            assert quantities.lookup(r.quantity).unit == r.unit
    else:
        assert p.points


GOOD = """
[profile]
name = "{name}"
manufacturer = "Acme"
model = "X1"
datasheet = "Acme X1 manual rev 3"
[probe]
address = 0
type = "u16"
[[register]]
quantity = "1-0:1.8.0"
address = 0
type = "u32"
scale = "10"
"""


def write(tmp_path: Path, text: str, name: str = "acme-x1") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace("{name}", name))
    return path


def test_user_profile_by_path_and_by_search_path(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, GOOD)
    assert profile.load(str(path)).registers[0].scale == 10
    monkeypatch.setenv("METERCHAIN_PROFILE_PATH", str(tmp_path))
    assert "acme-x1" in profile.available()
    assert profile.load("acme-x1").manufacturer == "Acme"


@pytest.mark.parametrize("old,new,key", [
    ('type = "u32"', 'type = "u33"', "register[0].type"),
    ('quantity = "1-0:1.8.0"', 'quantity = "1-0:99.99.9"', "register[0].quantity"),
    ('quantity = "1-0:1.8.0"', 'quantity = "volts"', "register[0].quantity"),
    ('scale = "10"', 'scale = 0.1', "register[0].scale"),
    ('scale = "10"', 'scale = "ten"', "register[0].scale"),
    ('scale = "10"', 'scale = "0.1"', "register[0].exponent"),
    ('address = 0\ntype = "u32"', 'address = 70000\ntype = "u32"', "register[0].address"),
    ('model = "X1"\n', '', "profile.model"),
    ('[probe]\naddress = 0\ntype = "u16"\n', '', "probe"),
    ('scale = "10"', 'scale = "10"\nunit = "kWh"', "register[0].unit"),
    ('name = "acme-x1"', 'name = "other"', "profile.name"),
])
def test_malformed_profile_names_file_and_key(tmp_path: Path, old: str, new: str,
                                              key: str) -> None:
    text = GOOD.replace("{name}", "acme-x1")
    assert old in text
    path = write(tmp_path, text.replace(old, new))
    with pytest.raises(ConfigError) as err:
        profile.load(str(path))
    assert err.value.path == key
    assert str(path) in str(err.value)


def test_not_toml_and_unknown_name(tmp_path: Path) -> None:
    path = write(tmp_path, "[profile\nname=")
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        profile.load(str(path))
    assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        profile.load("nope")


def test_duplicate_quantity_is_refused(tmp_path: Path) -> None:
    text = GOOD + '[[register]]\nquantity = "1-0:1.8.0"\naddress = 4\ntype = "u16"\n'
    with pytest.raises(ConfigError, match="already read") as err:
        profile.load(str(write(tmp_path, text)))
    assert err.value.path == "register[1].quantity"


@pytest.mark.parametrize("old,new,key,guess", [
    ('scale = "10"', 'scael = "10"', "register[0].scael", "scale"),
    ('address = 0\ntype = "u16"', 'adress = 0\naddress = 0\ntype = "u16"', "probe.adress",
     "address"),
    ('model = "X1"', 'model = "X1"\nmax_gaps = 4', "profile.max_gaps", "max_gap"),
    ('[probe]', '[[registers]]\nquantity = "1-0:1.8.0"\n[probe]', "registers", "register"),
    ('[probe]', '[probe]\nequal = [1]', "probe.equal", "equals"),
])
def test_unknown_key_is_refused_with_the_closest_valid_key(tmp_path: Path, old: str, new: str,
                                                           key: str, guess: str) -> None:
    text = GOOD.replace("{name}", "acme-x1")
    assert old in text
    path = write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        profile.load(str(path))
    assert err.value.path == key
    assert str(path) in str(err.value) and f"did you mean {guess!r}" in str(err.value)


def test_unknown_key_in_a_sunspec_point_is_refused(tmp_path: Path) -> None:
    text = ('[profile]\nname = "acme-pv"\nmanufacturer = "Acme"\nmodel = "PV"\n'
            'datasheet = "SunSpec Information Model"\nprotocol = "sunspec"\n'
            '[[point]]\nmodels = [101]\npoint = "WH"\nquantity = "1-0:2.8.0"\nexponent = 0\n'
            'exponnent = 3\n')
    with pytest.raises(ConfigError, match="did you mean 'exponent'") as err:
        profile.load(str(write(tmp_path, text, "acme-pv")))
    assert err.value.path == "point[0].exponnent"


def test_identify_register_is_parsed_and_must_say_what_it_expects(tmp_path: Path) -> None:
    ident = '[identify]\nfunction = "holding"\naddress = 0xFC02\ntype = "u16"\n'
    text = GOOD.replace("[[register]]", ident + "equals = [112]\n[[register]]", 1)
    p = profile.load(str(write(tmp_path, text)))
    assert p.identify is not None and p.identify.address == 0xFC02 and p.identify.equals == (112,)
    assert p.identify.matches(112) and not p.identify.matches(137)
    with pytest.raises(ConfigError) as err:
        profile.load(str(write(tmp_path, GOOD.replace("[[register]]", ident + "[[register]]", 1))))
    assert err.value.path == "identify"
    with pytest.raises(ConfigError) as err:
        profile.load(str(write(tmp_path, GOOD.replace(
            "[[register]]", ident + "equals = [1]\nequal = [2]\n[[register]]", 1))))
    assert err.value.path == "identify.equal"
