"""DSMR pure functions: CRC16, framing, telegram checks, exact values, meter time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.dsmr import CrcError, TelegramFramer, crc16, parse_telegram, with_crc
from drivers.obisvalue import parse_decimal, parse_meter_time, parse_value
from ledger import format_decimal
from ledger.errors import FrameError

CAPTURES = Path(__file__).resolve().parent.parent / "captures" / "p1"


def crc16_bitwise(data: bytes) -> int:
    """Reference CRC-16/ARC written bit by bit from its definition (independent of the table)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_crc16_catalogue_check_value() -> None:
    # CRC-16/ARC check value from the CRC catalogue (reveng): "123456789" -> 0xBB3D
    assert crc16(b"123456789") == 0xBB3D
    assert crc16(b"") == 0


@given(st.binary(max_size=300))
def test_crc16_matches_bitwise_reference(data: bytes) -> None:
    assert crc16(data) == crc16_bitwise(data)


def _telegrams() -> list[bytes]:
    return [p.read_bytes() for p in sorted(CAPTURES.glob("*.dsmr"))]


def test_framer_cuts_stream_with_garbage_and_counts_it() -> None:
    tels = _telegrams()
    noise = [b"\x00\xff\x13junk", b"", b"\r\n\r\n", b"ABC!!12", b"\x7f" * 10, b"x"]
    stream = b"lead-in before sync"
    garbage = 0
    for i, t in enumerate(tels):
        g = noise[i % len(noise)]
        stream += t + g
        garbage += len(g)
    framer = TelegramFramer()
    assert framer.feed(stream) == tels
    assert framer.stats.sync_bytes == len(b"lead-in before sync")
    assert framer.stats.garbage_bytes == garbage
    assert framer.stats.truncated == 0


def test_framer_byte_by_byte_gives_the_same_telegrams() -> None:
    tels = _telegrams()
    framer = TelegramFramer()
    out: list[bytes] = []
    for b in b"".join(tels):
        out += framer.feed(bytes((b,)))
    assert out == tels


def test_framer_drops_truncated_telegram_and_keeps_next() -> None:
    a, b = _telegrams()[:2]
    framer = TelegramFramer()
    got = framer.feed(a[: len(a) // 2] + b)
    assert got == [b]
    assert framer.stats.truncated == 1
    assert framer.stats.sync_bytes == 0  # the cut telegram is counted as garbage
    assert framer.stats.garbage_bytes == len(a) // 2


def test_framer_limits_telegram_size() -> None:
    framer = TelegramFramer(max_telegram_bytes=100)
    assert framer.feed(b"/" + b"A" * 200) == []
    assert framer.stats.truncated == 1
    good = _telegrams()[0]
    framer.max_telegram_bytes = 16384
    assert framer.feed(good) == [good]


def test_bad_crc_names_both_values() -> None:
    body = b"/ABC5test\r\n\r\n1-0:1.8.1(000001.000*kWh)\r\n!"
    good = with_crc(body)
    assert parse_telegram(good, crc=True).crc == crc16(body)
    bad = body + b"%04X\r\n" % (crc16(body) ^ 0x00FF)
    with pytest.raises(CrcError) as err:
        parse_telegram(bad, crc=True)
    assert err.value.expected == crc16(body) ^ 0x00FF
    assert err.value.actual == crc16(body)
    assert f"{crc16(body):04X}" in str(err.value)


def test_crc_required_and_line_checks() -> None:
    body = b"/ABC5test\r\n\r\n1-0:1.8.1(000001.000*kWh)\r\n!\r\n"
    with pytest.raises(FrameError, match="requires one"):
        parse_telegram(body, crc=True)
    assert parse_telegram(body, crc=False).crc is None
    garbled = b"/ABC5test\r\n\r\n1-0:1.8.1(000001.0\x00kWh)\r\n!\r\n"
    with pytest.raises(FrameError, match="malformed line"):
        parse_telegram(garbled, crc=False)
    with pytest.raises(FrameError, match="non-ASCII"):
        parse_telegram(b"/ABC5test\r\n\xff\r\n!\r\n", crc=None)
    with pytest.raises(FrameError, match="identification"):
        parse_telegram(b"/12\r\n!\r\n", crc=None)
    with pytest.raises(FrameError, match="neither"):
        parse_telegram(b"/ABC5test\r\n!12\r\n", crc=None)


def test_unknown_lines_kept_only_when_crc_vouches() -> None:
    body = b"/ABC5test\r\n\r\nsomething odd\r\n1-0:1.8.1(000001.000*kWh)\r\n!"
    t = parse_telegram(with_crc(body), crc=True)
    assert t.unparsed == ("something odd",)
    assert [o.obis for o in t.objects] == ["1-0:1.8.1"]


@pytest.mark.parametrize(
    ("text", "value", "exponent"),
    [("001234.567", 1234567, -3), ("0", 0, 0), ("12.", 12, 0), (".5", 5, -1),
     ("-00.010", -10, -3), ("999999999.999", 999999999999, -3)],
)
def test_parse_decimal_exact(text: str, value: int, exponent: int) -> None:
    assert parse_decimal(text) == (value, exponent)


@pytest.mark.parametrize("text", ["", ".", "1.2.3", "1e5", "12a", "--1", "nan"])
def test_parse_decimal_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_decimal(text)


@given(st.integers(min_value=0, max_value=10**15), st.integers(min_value=0, max_value=8))
def test_parse_decimal_round_trips_format_decimal(value: int, places: int) -> None:
    text = format_decimal(value, -places)
    v, e = parse_decimal(text)
    assert format_decimal(v, e) == text


def test_units_are_normalised_without_floats() -> None:
    assert parse_value("001234.567*kWh") == parse_value("1234567*Wh")
    v = parse_value("01.193*kW")
    assert (v.value, v.exponent, v.unit) == (1193, 0, "W")
    v = parse_value("000.60*A")
    assert (v.value, v.exponent, v.unit) == (60, -2, "A")
    v = parse_value("00012.345*m3")
    assert (v.value, v.exponent, v.unit) == (12345, -3, "m3")


def _utc(text: str) -> int:
    t = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 1000


@pytest.mark.parametrize(
    ("stamp", "utc", "dst", "flagged"),
    [
        ("240115093000W", "2024-01-15 08:30:00", False, True),
        ("240701121530S", "2024-07-01 10:15:30", True, True),
        # the repeated hour of 2023-10-29 told apart by the flag
        ("231029023000S", "2023-10-29 00:30:00", True, True),
        ("231029023000W", "2023-10-29 01:30:00", False, True),
        # no flag (DSMR 2.2/3 gas): EU rule; repeated hour -> first (summer) occurrence
        ("231029023000", "2023-10-29 00:30:00", True, False),
        ("231029033000", "2023-10-29 02:30:00", False, False),
        ("230326013000", "2023-03-26 00:30:00", False, False),
        ("230326033000", "2023-03-26 01:30:00", True, False),
        # inside the skipped spring hour: read as winter time
        ("230326023000", "2023-03-26 01:30:00", False, False),
    ],
)
def test_meter_time_to_utc(stamp: str, utc: str, dst: bool, flagged: bool) -> None:
    mt = parse_meter_time(stamp)
    assert mt.utc_ms == _utc(utc)
    assert (mt.dst, mt.flagged, mt.meter_dst) == (dst, flagged, dst and flagged)


@pytest.mark.parametrize("stamp", ["2401150930", "240230093000W", "240115253000S", "240115093000X"])
def test_meter_time_rejects(stamp: str) -> None:
    with pytest.raises(ValueError):
        parse_meter_time(stamp)


def test_out_of_range_codes_and_values_are_left_out_not_raised() -> None:
    from drivers.dsmr import telegram_readings

    body = (b"/ABC5x\r\n\r\n1-0:999.8.1(000001.000*kWh)\r\n"
            b"1-0:1.8.1(99999999999999999999999.999*kWh)\r\n1-0:1.8.2(000002.000*kWh)\r\n!")
    t = parse_telegram(with_crc(body), crc=True)
    assert t.unparsed == ("1-0:999.8.1(000001.000*kWh)",)
    readings = telegram_readings(t, "m", 5)
    assert [(r.obis, r.value) for r in readings] == [("1-0:1.8.2", 2000)]
    with pytest.raises(FrameError, match="malformed line"):  # no CRC: nothing vouches for it
        parse_telegram(body + b"\r\n", crc=False)
