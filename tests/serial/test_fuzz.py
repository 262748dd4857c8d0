"""Whatever arrives on the line, the pure parsers raise only FrameError and lose no telegram."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.dsmr import TelegramFramer, parse_telegram, telegram_readings, with_crc
from drivers.iec62056 import check_data_message, data_message, parse_data_block, readout_readings
from ledger.errors import FrameError

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
TELEGRAMS = [p.read_bytes() for p in sorted((CAPTURES / "p1").glob("*.dsmr"))]
LINE_CHARS = st.sampled_from(list(b"0123456789-:.*()/!ABCkWhVm3SW \r\n\x00\xff"))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(TELEGRAMS) - 1),
                          st.binary(max_size=40).filter(lambda b: b"/" not in b)),
                max_size=6))
def test_framer_recovers_every_telegram_between_noise_without_slash(
        parts: list[tuple[int, bytes]]) -> None:
    framer = TelegramFramer()
    stream = b"".join(TELEGRAMS[i] + noise for i, noise in parts)
    assert framer.feed(stream) == [TELEGRAMS[i] for i, _ in parts]


@settings(max_examples=300)
@given(st.lists(LINE_CHARS, max_size=200).map(bytes), st.booleans())
def test_random_telegram_bodies_give_frame_error_or_readings(body: bytes, crc: bool) -> None:
    raw = with_crc(b"/ABC5x\r\n" + body + b"!") if crc else b"/ABC5x\r\n" + body + b"!\r\n"
    try:
        t = parse_telegram(raw, crc=None)
    except FrameError:
        return
    for r in telegram_readings(t, "m", 0):
        assert isinstance(r.value, int)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(["1.8.0", "1-0:2.8.0", "32.7.0", "999.1.1", "C.1",
                                           "1.8.0*01", "", "1-0:1.7.0*255"]),
                          st.text(alphabet="0123456789.*kWhAV-", max_size=30)), max_size=8))
def test_random_readouts_give_frame_error_or_readings(sets: list[tuple[str, str]]) -> None:
    block = "".join(f"{a}({v})\r\n" for a, v in sets) + "!\r\n"
    msg = data_message(block)
    text = check_data_message(msg)
    for r in readout_readings(parse_data_block(text), "m", 0):
        assert isinstance(r.value, int)
