"""Luxembourg Smarty: encrypted P1 frames, pure and over a pty."""

from __future__ import annotations

import asyncio

import pytest

from drivers.base import MeterSpec, open_meter
from drivers.dsmr import parse_telegram, telegram_readings
from drivers.p1 import P1Meter
from drivers.sim.p1 import P1SimConfig, P1Simulator
from drivers.smarty import DecryptError, SmartyFramer, decrypt, encrypt, parse_key
from ledger.errors import ConfigError, FrameError
from tests.serial.conftest import CAPTURES, expected_readings, iso_ms, load_expected

KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
TITLE = b"SAGY\x00\x01\x02\x03"
CAPTURE = CAPTURES / "p1" / "lu-smarty-t210d.dsmr"


def test_frame_layout_and_round_trip() -> None:
    telegram = CAPTURE.read_bytes()
    frame = encrypt(telegram, KEY, TITLE, 0x01020304)
    assert frame[:2] == b"\xdb\x08" and frame[2:10] == TITLE and frame[10] == 0x82
    assert int.from_bytes(frame[11:13], "big") == 1 + 4 + len(telegram) + 12
    assert frame[13] == 0x30 and frame[14:18] == b"\x01\x02\x03\x04"
    assert len(frame) == 18 + len(telegram) + 12
    assert telegram not in frame  # really encrypted
    assert decrypt(frame, KEY) == telegram
    spec = load_expected(CAPTURE.with_suffix(".json"))
    now = iso_ms(spec["now"])
    got = telegram_readings(parse_telegram(decrypt(frame, KEY), crc=True), spec["meter_id"], now)
    assert got == expected_readings(spec, now)


def test_wrong_key_or_flipped_bit_fails_authentication() -> None:
    frame = encrypt(CAPTURE.read_bytes(), KEY, TITLE, 7)
    with pytest.raises(DecryptError) as err:
        decrypt(frame, bytes(16))
    assert err.value.hint and "key" in err.value.hint
    for i in (2, 15, 18, 100, len(frame) - 1):  # title, counter, ciphertext, tag
        bad = frame[:i] + bytes((frame[i] ^ 0x01,)) + frame[i + 1:]
        with pytest.raises(DecryptError):
            decrypt(bad, KEY)
    with pytest.raises(FrameError, match="length"):
        decrypt(frame[:-1], KEY)


def test_framer_finds_frames_between_noise() -> None:
    frames = [encrypt(CAPTURE.read_bytes(), KEY, TITLE, n) for n in range(3)]
    framer = SmartyFramer()
    stream = b"\x00\xdb" + frames[0] + b"noise\xdb\x08" + frames[1] + frames[2]
    out = []
    for i in range(0, len(stream), 7):
        out += framer.feed(stream[i:i + 7])
    assert out == frames
    assert framer.sync_bytes == 2 and framer.garbage_bytes == 7


def test_key_option_is_checked() -> None:
    assert parse_key("000102030405060708090a0b0c0d0e0f") == KEY
    for options, key in [({"variant": "lu", "key": "abc"}, "options.key"),
                         ({"variant": "v5", "key": KEY.hex()}, "options.key")]:
        with pytest.raises(ConfigError) as err:
            open_meter(MeterSpec("m", "dsmr-p1", port="/dev/null", options=options))
        assert err.value.path == key


@pytest.mark.parametrize(
    "p1_sim", [P1SimConfig(variant="lu", key=KEY, faults=frozenset({"bad-crc"}))],
    indirect=True)
def test_encrypted_smarty_port_is_read_and_bad_frames_counted(p1_sim: P1Simulator) -> None:
    async def go() -> None:
        meter = open_meter(MeterSpec("lu", "dsmr-p1", port=p1_sim.port, options={
            "variant": "lu", "key": KEY.hex(), "telegram_timeout_s": 2.0}))
        assert isinstance(meter, P1Meter)
        try:
            for _ in range(3):
                readings = {r.obis: r for r in await meter.read(0)}
                assert readings["1-0:1.8.0"].unit == "Wh"
        finally:
            await meter.close()
        assert meter.stats["telegrams"] == 3
        assert meter.stats["decrypt_errors"] >= 1
    asyncio.run(go())
