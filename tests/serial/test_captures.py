"""Every capture under tests/captures/p1 and tests/captures/d0 gives exactly its readings."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.dsmr import VARIANTS, crc16, parse_telegram, telegram_readings
from drivers.iec62056 import (
    BccError,
    check_data_message,
    find_data_message,
    parse_data_block,
    parse_identification,
    readout_readings,
)
from drivers.quantities import QUANTITIES
from ledger.errors import FrameError
from tests.serial.conftest import CAPTURES, expected_readings, iso_ms, load_expected

P1 = sorted((CAPTURES / "p1").glob("*.dsmr"))
D0 = sorted((CAPTURES / "d0").glob("*.d0"))


def test_every_version_and_variant_has_a_capture() -> None:
    variants = {load_expected(p.with_suffix(".json"))["variant"] for p in P1}
    assert variants == set(VARIANTS) - {"auto"}
    assert len(D0) >= 3


@pytest.mark.parametrize("path", P1, ids=lambda p: p.stem)
def test_p1_capture_crc_is_the_crc_of_its_bytes(path: Path) -> None:
    raw = path.read_bytes()
    spec = load_expected(path.with_suffix(".json"))
    assert raw.startswith(b"/") and raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only
    bang = raw.rindex(b"!")
    tail = raw[bang + 1: -2]
    if VARIANTS[spec["variant"]].crc:
        assert int(tail, 16) == crc16(raw[: bang + 1])
    else:
        assert tail == b""


@pytest.mark.parametrize("path", P1, ids=lambda p: p.stem)
@pytest.mark.parametrize("mode", ["variant", "auto"])
def test_p1_capture_gives_its_readings(path: Path, mode: str) -> None:
    spec = load_expected(path.with_suffix(".json"))
    variant = VARIANTS[spec["variant"] if mode == "variant" else "auto"]
    now_ms = iso_ms(spec["now"])
    telegram = parse_telegram(path.read_bytes(), crc=variant.crc)
    got = telegram_readings(telegram, spec["meter_id"], now_ms)
    assert got == expected_readings(spec, now_ms)
    for r in got:  # blocks carry only vocabulary codes in the vocabulary's units
        assert QUANTITIES[r.obis].unit == r.unit


@pytest.mark.parametrize("path", [p for p in P1 if "v2" not in p.stem and "v3" not in p.stem],
                         ids=lambda p: p.stem)
def test_p1_every_single_bit_error_is_rejected(path: Path) -> None:
    raw = path.read_bytes()
    for i in range(len(raw) - 2):  # all but the final CRLF
        bad = raw[:i] + bytes((raw[i] ^ 0x01,)) + raw[i + 1:]
        with pytest.raises(FrameError):
            parse_telegram(bad, crc=True)


def _split_d0(path: Path) -> tuple[bytes, bytes]:
    raw = path.read_bytes()
    ident, _, rest = raw.partition(b"\r\n")
    return ident + b"\r\n", rest


@pytest.mark.parametrize("path", D0, ids=lambda p: p.stem)
def test_d0_capture_gives_its_identification_and_readings(path: Path) -> None:
    spec = load_expected(path.with_suffix(".json"))
    ident_line, msg = _split_d0(path)
    ident = parse_identification(ident_line)
    want = spec["identification"]
    assert (ident.manufacturer, ident.baud_char, ident.baudrate, ident.ident) == (
        want["manufacturer"], want["baud_char"], want["baudrate"], want["ident"])
    assert ident.mode_c
    assert find_data_message(msg) == (0, len(msg))
    now_ms = iso_ms(spec["now"])
    got = readout_readings(parse_data_block(check_data_message(msg)), spec["meter_id"], now_ms)
    assert got == expected_readings(spec, now_ms)


@pytest.mark.parametrize("path", D0, ids=lambda p: p.stem)
def test_d0_every_single_byte_change_is_rejected(path: Path) -> None:
    _, msg = _split_d0(path)
    for i in range(len(msg)):
        bad = msg[:i] + bytes((msg[i] ^ 0x01,)) + msg[i + 1:]
        with pytest.raises(FrameError):
            check_data_message(bad)
    with pytest.raises(BccError) as err:
        check_data_message(msg[:-1] + bytes((msg[-1] ^ 0x40,)))
    assert err.value.expected == msg[-1] ^ 0x40
    assert err.value.actual == msg[-1]
