"""Every meter profile against its register capture, read over real Modbus TCP.

A capture (``tests/captures/modbus/<profile>.json``) is one poll of a real meter
model written from its published register map: the registers it holds and the
readings they must give (computed by ``generate.py`` without the driver's decode
code). Each test serves the capture on a real pymodbus server and reads it with the
real driver, so a wrong address, type, word order, scale, sign or rounding in a
profile or in the driver shows up as a mismatch.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from drivers import profile
from drivers.base import MeterSpec, open_meter
from drivers.sim.meter import MeterServer, RegisterImage, SimUnit
from ledger import Quality, Reading

CAPTURES = Path(__file__).resolve().parents[1] / "captures" / "modbus"
FUNCTIONS = {"holding": 3, "input": 4}
NOW_MS = 1_764_000_000_000


def load_capture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CAPTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def image_of(capture: dict[str, Any]) -> RegisterImage:
    """The capture's register dump as ``{(function, address): word}``."""
    image: RegisterImage = {}
    for fname, regs in capture["registers"].items():
        for address, word in regs.items():
            assert 0 <= word <= 0xFFFF, f"{fname} {address}: {word} is not a 16-bit word"
            image[(FUNCTIONS[fname], int(address))] = word
    return image


def expected_readings(capture: dict[str, Any]) -> list[tuple[str, int, int, str, int]]:
    out = []
    for r in capture["readings"]:
        quality = 0
        for flag in r["quality"]:
            quality |= int(Quality[flag])
        out.append((r["obis"], r["value"], r["exponent"], r["unit"], quality))
    return sorted(out)


def as_tuples(readings: list[Reading]) -> list[tuple[str, int, int, str, int]]:
    return sorted((r.obis, r.value, r.exponent, r.unit, r.quality) for r in readings)


def capture_names() -> list[str]:
    return sorted(p.stem for p in CAPTURES.glob("*.json"))


def test_every_builtin_profile_has_a_capture() -> None:
    builtin = sorted(p.stem for p in profile.BUILTIN_DIR.glob("*.toml"))
    assert len(builtin) >= 12
    missing = sorted(set(builtin) - set(capture_names()))
    assert not missing, f"profiles without a capture in {CAPTURES}: {missing}"
    stale = sorted(set(capture_names()) - set(builtin))
    assert not stale, f"captures for profiles that no longer exist: {stale}"


@pytest.mark.parametrize("name", capture_names())
def test_capture_read_over_tcp_gives_the_published_readings(name: str) -> None:
    capture = load_capture(name)
    assert capture["profile"] == name
    prof = profile.load(name)
    image = image_of(capture)
    want = expected_readings(capture)

    async def go() -> tuple[list[Reading], bool]:
        unit = SimUnit(capture["unit"], prof, image=image)
        async with MeterServer([unit]) as srv:
            transport = "sunspec-tcp" if prof.protocol == "sunspec" else "modbus-tcp"
            meter = open_meter(MeterSpec(f"cap-{name}", transport, host="127.0.0.1",
                                         tcp_port=srv.tcp_port, unit=capture["unit"],
                                         profile=name, timeout_s=2.0))
            try:
                found = await meter.probe()
                got = await meter.read(NOW_MS)
            finally:
                await meter.close()
        return got, found

    got, found = asyncio.run(go())
    assert found, f"{name}: probe does not recognise its own capture"
    assert as_tuples(got) == want
    assert all(r.meter_id == f"cap-{name}" and r.timestamp_ms == NOW_MS for r in got)


@pytest.mark.parametrize("name", capture_names())
def test_capture_is_what_the_generator_writes(name: str) -> None:
    """The committed files are exactly the generator's output (no hand edits drift)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("capture_gen", CAPTURES / "generate.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    caps = gen.all_captures()
    assert (CAPTURES / f"{name}.json").read_text(encoding="utf-8") == gen.render(caps[name])


@pytest.mark.parametrize(("old", "new"), [
    ('word_order = "little"', 'word_order = "big"'),           # word order
    ("address = 52  # 0x0034", "address = 54  # 0x0036"),      # import read from kvarh
    ('scale = "100"', 'scale = "10"'),                         # kWh*10 taken as kWh*100
])
def test_a_profile_mistake_is_caught(tmp_path: Path, old: str, new: str) -> None:
    """The method works: a copy of a profile with one mistake no longer matches its capture."""
    name = "carlo-gavazzi-em340"
    text = (profile.BUILTIN_DIR / f"{name}.toml").read_text(encoding="utf-8")
    assert old in text
    bad = tmp_path / f"{name}.toml"
    bad.write_text(text.replace(old, new, 1), encoding="utf-8")
    capture = load_capture(name)

    async def go() -> list[Reading]:
        unit = SimUnit(1, profile.load(str(bad)), image=image_of(capture))
        async with MeterServer([unit]) as srv:
            meter = open_meter(MeterSpec("bad", "modbus-tcp", host="127.0.0.1",
                                         tcp_port=srv.tcp_port, unit=1, profile=str(bad)))
            try:
                return await meter.read(NOW_MS)
            finally:
                await meter.close()

    assert as_tuples(asyncio.run(go())) != expected_readings(capture)
