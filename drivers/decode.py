"""The small fixed set of register decoders, and the float-to-integer rule.

A profile names one of :data:`TYPES` (``u16``, ``i16``, ``u32``, ``i32``, ``u64``,
``i64``, ``float32``) with a word order (``big``: most significant register first,
the Modbus convention; ``little``: least significant register first, e.g. Carlo
Gavazzi) and a byte order inside each register (``big`` as Modbus sends it, or
``little`` for devices that swap bytes).

Scaling rule (deterministic, documented in the profile format):

    reading value = round_half_even( Decimal(raw) * scale / 10**exponent )

``Decimal(raw)`` is the *exact* value of the register contents: an integer, or for
``float32`` the exact binary value of the IEEE-754 number (``Decimal(float)`` is
exact; no decimal text conversion happens). ``scale`` is a decimal string from the
profile, also exact. Rounding is round-half-to-even on that exact quotient, so the
same registers always give the same integer on every platform. If the quotient is
not already an integer, the reading carries :data:`Quality.ROUNDED`. Integer
registers use scales that are exact by construction (the profile loader refuses an
integer register whose ``scale / 10**exponent`` is not an integer), so they are
never rounded.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Literal

from ledger import Quality

Order = Literal["big", "little"]


@dataclass(frozen=True, slots=True)
class RegType:
    """One decoder: how many registers it spans and its ``struct`` code."""

    name: str
    registers: int
    struct_code: str
    is_float: bool


TYPES: dict[str, RegType] = {
    t.name: t
    for t in (
        RegType("u16", 1, "H", False),
        RegType("i16", 1, "h", False),
        RegType("u32", 2, "I", False),
        RegType("i32", 2, "i", False),
        RegType("u64", 4, "Q", False),
        RegType("i64", 4, "q", False),
        RegType("float32", 2, "f", True),
    )
}
ORDERS: tuple[str, ...] = ("big", "little")

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


def registers_to_bytes(words: list[int], word_order: Order, byte_order: Order) -> bytes:
    """Big-endian bytes of a multi-register value after undoing word and byte order."""
    ordered = words if word_order == "big" else list(reversed(words))
    out = bytearray()
    for w in ordered:
        hi, lo = (w >> 8) & 0xFF, w & 0xFF
        out += bytes((hi, lo)) if byte_order == "big" else bytes((lo, hi))
    return bytes(out)


def bytes_to_registers(data: bytes, word_order: Order, byte_order: Order) -> list[int]:
    """Inverse of :func:`registers_to_bytes` (used by simulators and captures)."""
    words = []
    for i in range(0, len(data), 2):
        hi, lo = data[i], data[i + 1]
        words.append((hi << 8 | lo) if byte_order == "big" else (lo << 8 | hi))
    return words if word_order == "big" else list(reversed(words))


def decode_raw(type_name: str, words: list[int], word_order: Order = "big",
               byte_order: Order = "big") -> int | float:
    """The raw value of ``words`` as ``type_name``.

    Raises:
        KeyError: unknown type name.
        ValueError: wrong number of registers.
    """
    t = TYPES[type_name]
    if len(words) != t.registers:
        raise ValueError(f"{type_name} needs {t.registers} registers, got {len(words)}")
    value: int | float = struct.unpack(">" + t.struct_code,
                                       registers_to_bytes(words, word_order, byte_order))[0]
    return value


def encode_raw(type_name: str, value: int | float, word_order: Order = "big",
               byte_order: Order = "big") -> list[int]:
    """Registers holding ``value`` as ``type_name`` (inverse of :func:`decode_raw`).

    Raises:
        struct.error: the value does not fit the type.
    """
    t = TYPES[type_name]
    data = struct.pack(">" + t.struct_code, float(value) if t.is_float else int(value))
    return bytes_to_registers(data, word_order, byte_order)


def to_integer(raw: int | float, scale: Decimal, exponent: int) -> tuple[int, int]:
    """Apply the documented rule: ``(value, quality)`` for ``raw * scale`` at ``10**exponent``.

    Raises:
        ValueError: ``raw`` is NaN or infinite, or the result leaves the signed 64-bit range.
    """
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ValueError(f"not a finite number: {raw!r}")
    with localcontext() as ctx:
        ctx.prec = 80  # float32 * scale is exact well inside 80 digits
        exact = Decimal(raw) * scale / (Decimal(10) ** exponent)
        value = int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))
        rounded = exact != value
    if not I64_MIN <= value <= I64_MAX:
        raise ValueError(f"{raw!r} * {scale} does not fit a signed 64-bit reading")
    return value, int(Quality.ROUNDED) if rounded else 0


def from_integer(value: int, scale: Decimal, exponent: int, type_name: str) -> int | float:
    """The raw register value that decodes to ``value`` (for simulators): the inverse rule."""
    raw = Decimal(value) * (Decimal(10) ** exponent) / scale
    if TYPES[type_name].is_float:
        return float(raw)
    return int(raw.to_integral_value(rounding=ROUND_HALF_EVEN))
