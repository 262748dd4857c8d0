"""Decoders and the float-to-integer rule."""

from __future__ import annotations

import math
import struct
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.decode import TYPES, decode_raw, encode_raw, to_integer
from ledger import Quality

RANGES = {"u16": (0, 2**16 - 1), "i16": (-(2**15), 2**15 - 1), "u32": (0, 2**32 - 1),
          "i32": (-(2**31), 2**31 - 1), "u64": (0, 2**64 - 1), "i64": (-(2**63), 2**63 - 1)}
orders = st.sampled_from(["big", "little"])


@given(st.sampled_from(sorted(RANGES)), st.data(), orders, orders)
def test_integer_types_round_trip(type_name: str, data: st.DataObject, wo: str, bo: str) -> None:
    lo, hi = RANGES[type_name]
    value = data.draw(st.integers(lo, hi))
    words = encode_raw(type_name, value, wo, bo)  # type: ignore[arg-type]
    assert len(words) == TYPES[type_name].registers
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode_raw(type_name, words, wo, bo) == value  # type: ignore[arg-type]


def test_word_and_byte_order_are_what_devices_send() -> None:
    # 0x12345678 as i32: Modbus big-endian sends 0x1234 then 0x5678.
    assert encode_raw("u32", 0x12345678) == [0x1234, 0x5678]
    assert encode_raw("u32", 0x12345678, "little") == [0x5678, 0x1234]
    assert encode_raw("u32", 0x12345678, "big", "little") == [0x3412, 0x7856]
    assert decode_raw("i16", [0xFFFE]) == -2
    # 230.0 as IEEE-754 float32 is 0x43660000.
    assert decode_raw("float32", [0x4366, 0x0000]) == 230.0


def test_float_rounding_is_half_even_on_the_exact_binary_value() -> None:
    f = struct.unpack(">f", struct.pack(">f", 230.1))[0]  # 230.100006103515625
    assert to_integer(f, Decimal(1), -1) == (2301, int(Quality.ROUNDED))
    # exactly representable halves round to even
    assert to_integer(0.5, Decimal(1), 0) == (0, int(Quality.ROUNDED))
    assert to_integer(1.5, Decimal(1), 0) == (2, int(Quality.ROUNDED))
    assert to_integer(2.5, Decimal(1), 0) == (2, int(Quality.ROUNDED))
    assert to_integer(-2.5, Decimal(1), 0) == (-2, int(Quality.ROUNDED))
    # kWh float to Wh: exact when the float is exact
    assert to_integer(1234.5, Decimal(1000), 0) == (1234500, 0)
    # integers are never rounded
    assert to_integer(12345, Decimal("0.1"), -1) == (12345, 0)


@given(st.floats(width=32, allow_nan=False, allow_infinity=False, min_value=-1048576.0,
                 max_value=1048576.0))
def test_float_rule_is_within_half_a_step_and_flags_inexact(x: float) -> None:
    value, quality = to_integer(x, Decimal(1), -2)
    exact = Decimal(x) * 100
    assert abs(exact - value) <= Decimal("0.5")
    assert bool(quality & Quality.ROUNDED) == (exact != value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        to_integer(bad, Decimal(1), 0)


def test_out_of_signed_64_bit_range_is_refused() -> None:
    with pytest.raises(ValueError, match="64-bit"):
        to_integer(2**64 - 1, Decimal(1), 0)
