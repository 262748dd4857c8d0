"""Meter profiles: one TOML data file per meter model, loaded and validated here.

A profile says, for one model, which registers to read and how to turn them into
readings. The engine never looks at a model name; everything device-specific is in
the file. Format (see ``drivers/profiles/eastron-sdm630.toml`` for a full example)::

    [profile]
    name = "eastron-sdm630"          # must equal the file name without .toml
    manufacturer = "Eastron"
    model = "SDM630-Modbus V2"
    datasheet = "Eastron SDM630 Modbus Protocol, V1.8 (2018), input registers"
    protocol = "modbus"              # "modbus" (register map) or "sunspec" (model points)
    function = "input"               # default for registers: "input" (4) or "holding" (3)
    word_order = "big"               # default word order: "big" or "little"
    byte_order = "big"
    max_gap = 20                     # undefined registers one read may span (0 = none)
    max_registers = 125              # registers per request (1..125)

    [probe]                          # one register that identifies the device in a scan
    address = 0
    type = "float32"
    min = "50"                       # optional plausible range of raw * scale
    max = "500"
    equals = [1648, 1649]            # optional: raw value must be one of these

    [identify]                       # optional: a model-code register that tells models
    function = "holding"             # sharing a probe apart (same keys as [probe]; needs
    address = 0xFC02                 # equals or min/max). A scan suggests only the models
    type = "u16"                     # whose code matches; a model whose code register
    equals = [112, 121]              # holds another value or does not exist is dropped.

    [[register]]
    quantity = "1-0:32.7.0"          # OBIS code from drivers.quantities
    address = 0
    type = "float32"                 # u16 i16 u32 i32 u64 i64 float32
    scale = "1"                      # decimal text: raw * scale is in the quantity's unit
    exponent = -1                    # reading resolution: value * 10**exponent
    unit = "V"                       # optional, must equal the quantity's unit

SunSpec profiles have ``protocol = "sunspec"`` and ``[[point]]`` tables instead of
``[[register]]``: ``models = [101, 102, 103]``, ``point = "WH"``, ``quantity``,
``exponent`` (scale factors come from the device).

Profiles are looked up by name in :func:`search_path` (built-in directory first,
then ``$METERCHAIN_PROFILE_PATH`` entries, ``~/.config/meterchain/profiles`` and
``/etc/meterchain/profiles``), or loaded from a path. A user directory may add
models; a name that exists twice is taken from the first directory that has it.

Every key is checked: an unknown key (a typo such as ``scael``) is refused with the
file, the key path and the closest valid key, never silently replaced by a default.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from drivers import quantities
from drivers.decode import ORDERS, TYPES, Order
from ledger.errors import ConfigError

BUILTIN_DIR = Path(__file__).parent / "profiles"
FUNCTIONS: dict[str, int] = {"holding": 3, "input": 4}
MAX_REQUEST_REGISTERS = 125
"""Modbus limit for one read-registers request (function 3 or 4)."""

# Every key a profile may hold, per table. A key not listed is refused: a typo such as
# `scael` must not silently fall back to a default and put wrong values into the ledger.
TOP_KEYS = ("profile", "probe", "identify", "register", "point")
PROFILE_KEYS = ("name", "manufacturer", "model", "datasheet", "description", "protocol",
                "function", "word_order", "byte_order", "max_gap", "max_registers")
PROBE_KEYS = ("function", "address", "type", "word_order", "byte_order", "scale", "min",
              "max", "equals")
REGISTER_KEYS = ("quantity", "function", "address", "type", "word_order", "byte_order",
                 "scale", "exponent", "unit")
POINT_KEYS = ("models", "point", "quantity", "exponent", "unit")


@dataclass(frozen=True, slots=True)
class RegisterDef:
    """One quantity read from one register (or run of registers)."""

    quantity: str
    function: int
    address: int
    type: str
    word_order: Order
    byte_order: Order
    scale: Decimal
    exponent: int
    unit: str

    @property
    def count(self) -> int:
        return TYPES[self.type].registers


@dataclass(frozen=True, slots=True)
class ProbeDef:
    """The register a scan reads to recognise a device, and what it must hold."""

    function: int
    address: int
    type: str
    word_order: Order
    byte_order: Order
    scale: Decimal
    minimum: Decimal | None
    maximum: Decimal | None
    equals: tuple[int, ...]

    def matches(self, raw: int | float) -> bool:
        """True if a raw probe value is plausible for this model."""
        if self.equals and raw not in self.equals:
            return False
        if isinstance(raw, float) and raw != raw:  # NaN
            return False
        value = Decimal(raw) * self.scale
        if self.minimum is not None and value < self.minimum:
            return False
        return not (self.maximum is not None and value > self.maximum)


@dataclass(frozen=True, slots=True)
class PointDef:
    """A SunSpec point mapped to a quantity (scale factor read from the device)."""

    models: tuple[int, ...]
    point: str
    quantity: str
    exponent: int
    unit: str


@dataclass(frozen=True, slots=True)
class Profile:
    """A validated meter profile."""

    name: str
    manufacturer: str
    model: str
    datasheet: str
    description: str
    protocol: str
    max_gap: int
    max_registers: int
    probe: ProbeDef | None
    identify: ProbeDef | None
    """Model-code register that separates models sharing a probe (scan only)."""
    registers: tuple[RegisterDef, ...]
    points: tuple[PointDef, ...]
    source: str


def search_path() -> list[Path]:
    """Directories searched for ``NAME.toml``, first match wins."""
    dirs = [BUILTIN_DIR]
    extra = os.environ.get("METERCHAIN_PROFILE_PATH", "")
    dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    dirs += [Path.home() / ".config" / "meterchain" / "profiles",
             Path("/etc/meterchain/profiles")]
    return dirs


def available() -> dict[str, Path]:
    """Every profile name on the search path with the file it comes from."""
    found: dict[str, Path] = {}
    for d in search_path():
        if d.is_dir():
            for f in sorted(d.glob("*.toml")):
                found.setdefault(f.stem, f)
    return found


def load(name_or_path: str) -> Profile:
    """Load a profile by name (search path) or by file path.

    Raises:
        ConfigError: no such profile, unreadable TOML, or a key is missing or wrong
            (the message names the file and the key).
    """
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError("profile", f"no profile file {path}")
    else:
        known = available()
        if name_or_path not in known:
            raise ConfigError("profile", f"unknown profile {name_or_path!r} (known: "
                              f"{', '.join(sorted(known))}; or give a .toml path)")
        path = known[name_or_path]
    return load_file(path)


def load_file(path: Path) -> Profile:
    """Load and validate one profile file.

    Raises:
        ConfigError: unreadable file, bad TOML, or a missing/wrong key (named).
    """
    src = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("", f"cannot read profile: {exc.strerror}", source=src) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"not valid TOML: {exc}", source=src) from None
    return parse(data, src, expect_name=path.stem)


def parse(data: dict[str, Any], source: str, expect_name: str | None = None) -> Profile:
    """Validate a decoded profile document.

    Raises:
        ConfigError: a key is missing or wrong (``source`` and the key path are named).
    """
    r = _Reader(source)
    r.known(data, "", TOP_KEYS)
    head = r.table(data, "profile")
    r.known(head, "profile", PROFILE_KEYS)
    name = r.string(head, "profile.name")
    if expect_name is not None and name != expect_name:
        raise ConfigError("profile.name", f"{name!r} must equal the file name {expect_name!r}",
                          source=source)
    protocol = r.choice(head, "profile.protocol", ("modbus", "sunspec"), "modbus")
    func_default = r.choice(head, "profile.function", tuple(FUNCTIONS), "holding")
    word_default = r.choice(head, "profile.word_order", ORDERS, "big")
    byte_default = r.choice(head, "profile.byte_order", ORDERS, "big")
    max_gap = r.integer(head, "profile.max_gap", 0, 124, default=0)
    max_regs = r.integer(head, "profile.max_registers", 1, MAX_REQUEST_REGISTERS,
                         default=MAX_REQUEST_REGISTERS)
    defaults = (func_default, word_default, byte_default)
    registers: list[RegisterDef] = []
    points: list[PointDef] = []
    probe: ProbeDef | None = None
    identify: ProbeDef | None = None
    if protocol == "modbus":
        if "point" in data:
            raise ConfigError("point", "[[point]] is for sunspec profiles; a modbus profile "
                              "uses [[register]]", source=source)
        probe = _probe(r, r.table(data, "probe"), defaults)
        if "identify" in data:
            identify = _probe(r, r.table(data, "identify"), defaults, "identify")
            if not identify.equals and identify.minimum is None and identify.maximum is None:
                raise ConfigError("identify", "needs equals or min/max: the values this "
                                  "model's code register holds", source=source)
        items = r.array(data, "register")
        if not items:
            raise ConfigError("register", "a modbus profile needs at least one [[register]]",
                              source=source)
        for i, item in enumerate(items):
            registers.append(_register(r, item, f"register[{i}]", defaults))
        seen: dict[str, int] = {}
        for i, reg in enumerate(registers):
            if reg.quantity in seen:
                raise ConfigError(f"register[{i}].quantity", f"{reg.quantity} is already read "
                                  f"by register[{seen[reg.quantity]}]", source=source)
            seen[reg.quantity] = i
    else:
        for other in ("register", "probe", "identify"):
            if other in data:
                raise ConfigError(other, f"a sunspec profile has no [{other}] (the device's "
                                  "model chain is read instead); use [[point]]", source=source)
        for i, item in enumerate(r.array(data, "point")):
            points.append(_point(r, item, f"point[{i}]"))
        if not points:
            raise ConfigError("point", "a sunspec profile needs at least one [[point]]",
                              source=source)
    return Profile(
        name=name,
        manufacturer=r.string(head, "profile.manufacturer"),
        model=r.string(head, "profile.model"),
        datasheet=r.string(head, "profile.datasheet"),
        description=str(head.get("description", "")),
        protocol=protocol, max_gap=max_gap, max_registers=max_regs, probe=probe,
        identify=identify, registers=tuple(registers), points=tuple(points), source=source,
    )


def _probe(r: _Reader, t: dict[str, Any], defaults: tuple[str, str, str],
           where: str = "probe") -> ProbeDef:
    func, word, byte = defaults
    r.known(t, where, PROBE_KEYS)
    type_name = r.choice(t, f"{where}.type", tuple(TYPES), None)
    equals = t.get("equals", [])
    if not isinstance(equals, list) or not all(type(v) is int for v in equals):
        raise ConfigError(f"{where}.equals", "must be a list of integers", source=r.source)
    return ProbeDef(
        function=FUNCTIONS[r.choice(t, f"{where}.function", tuple(FUNCTIONS), func)],
        address=r.integer(t, f"{where}.address", 0, 65535),
        type=type_name,
        word_order=r.choice(t, f"{where}.word_order", ORDERS, word),  # type: ignore[arg-type]
        byte_order=r.choice(t, f"{where}.byte_order", ORDERS, byte),  # type: ignore[arg-type]
        scale=r.decimal(t, f"{where}.scale", "1"),
        minimum=r.decimal(t, f"{where}.min", None) if "min" in t else None,
        maximum=r.decimal(t, f"{where}.max", None) if "max" in t else None,
        equals=tuple(equals),
    )


def _register(r: _Reader, t: dict[str, Any], key: str,
              defaults: tuple[str, str, str]) -> RegisterDef:
    func, word, byte = defaults
    r.known(t, key, REGISTER_KEYS)
    q = _quantity(r, t, key)
    type_name = r.choice(t, f"{key}.type", tuple(TYPES), None)
    address = r.integer(t, f"{key}.address", 0, 65535)
    if address + TYPES[type_name].registers > 65536:
        raise ConfigError(f"{key}.address", "value runs past register 65535", source=r.source)
    scale = r.decimal(t, f"{key}.scale", "1")
    exponent = r.integer(t, f"{key}.exponent", -18, 18, default=0)
    if not TYPES[type_name].is_float:
        step = scale / (Decimal(10) ** exponent)
        if step != step.to_integral_value():
            raise ConfigError(f"{key}.exponent", f"integer register with scale {scale} needs "
                              f"exponent <= the scale's exponent so no rounding happens",
                              source=r.source)
    _unit(r, t, key, q)
    return RegisterDef(
        quantity=q.obis,
        function=FUNCTIONS[r.choice(t, f"{key}.function", tuple(FUNCTIONS), func)],
        address=address, type=type_name,
        word_order=r.choice(t, f"{key}.word_order", ORDERS, word),  # type: ignore[arg-type]
        byte_order=r.choice(t, f"{key}.byte_order", ORDERS, byte),  # type: ignore[arg-type]
        scale=scale, exponent=exponent, unit=q.unit,
    )


def _point(r: _Reader, t: dict[str, Any], key: str) -> PointDef:
    r.known(t, key, POINT_KEYS)
    q = _quantity(r, t, key)
    models = t.get("models")
    if (not isinstance(models, list) or not models
            or not all(type(m) is int and 1 <= m < 65535 for m in models)):
        raise ConfigError(f"{key}.models", "must be a non-empty list of SunSpec model ids",
                          source=r.source)
    _unit(r, t, key, q)
    return PointDef(models=tuple(models), point=r.string(t, f"{key}.point"), quantity=q.obis,
                    exponent=r.integer(t, f"{key}.exponent", -18, 18, default=0), unit=q.unit)


def _quantity(r: _Reader, t: dict[str, Any], key: str) -> quantities.Quantity:
    code = r.string(t, f"{key}.quantity")
    try:
        return quantities.lookup(code)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{key}.quantity", str(exc).strip('"'), source=r.source) from None


def _unit(r: _Reader, t: dict[str, Any], key: str, q: quantities.Quantity) -> None:
    if "unit" in t and t["unit"] != q.unit:
        raise ConfigError(f"{key}.unit", f"{q.obis} is measured in {q.unit!r}, not "
                          f"{t['unit']!r}", source=r.source)


class _Reader:
    """Typed access to TOML values that names the file and key on any mistake."""

    def __init__(self, source: str) -> None:
        self.source = source

    def _fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(key, msg, source=self.source)

    def known(self, t: dict[str, Any], where: str, allowed: tuple[str, ...]) -> None:
        """Refuse any key of table ``t`` (at path ``where``) that is not in ``allowed``.

        Raises:
            ConfigError: naming the key path and the closest valid key.
        """
        for k in t:
            if k not in allowed:
                path = f"{where}.{k}" if where else k
                close = difflib.get_close_matches(k, allowed, n=1, cutoff=0.6)
                guess = f"did you mean {close[0]!r}? " if close else ""
                raise self._fail(path, f"unknown key; {guess}valid keys here: "
                                 f"{', '.join(allowed)}")

    def table(self, t: dict[str, Any], key: str) -> dict[str, Any]:
        v = t.get(key)
        if not isinstance(v, dict):
            raise self._fail(key, "missing table" if v is None else "must be a table")
        return v

    def array(self, t: dict[str, Any], key: str) -> list[dict[str, Any]]:
        v = t.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise self._fail(key, f"must be an array of tables ([[{key}]])")
        return v

    def _leaf(self, t: dict[str, Any], key: str) -> Any:
        return t.get(key.rsplit(".", 1)[-1])

    def string(self, t: dict[str, Any], key: str) -> str:
        v = self._leaf(t, key)
        if not isinstance(v, str) or not v.strip():
            raise self._fail(key, "missing" if v is None else "must be a non-empty string")
        return v

    def choice(self, t: dict[str, Any], key: str, options: tuple[str, ...],
               default: str | None) -> str:
        v = self._leaf(t, key)
        if v is None:
            if default is None:
                raise self._fail(key, f"missing (one of {', '.join(options)})")
            return default
        if v not in options:
            raise self._fail(key, f"{v!r} is not one of {', '.join(options)}")
        return str(v)

    def integer(self, t: dict[str, Any], key: str, lo: int, hi: int,
                default: int | None = None) -> int:
        v = self._leaf(t, key)
        if v is None and default is not None:
            return default
        if type(v) is not int:
            raise self._fail(key, "missing" if v is None else f"must be an integer, got {v!r}")
        if not lo <= v <= hi:
            raise self._fail(key, f"{v} is outside {lo}..{hi}")
        return v

    def decimal(self, t: dict[str, Any], key: str, default: str | None) -> Decimal:
        v = self._leaf(t, key)
        if v is None:
            if default is None:
                raise self._fail(key, "missing")
            v = default
        if not isinstance(v, str | int):
            raise self._fail(key, f"must be a decimal string like \"0.1\" (floats are "
                             f"inexact), got {v!r}")
        try:
            d = Decimal(str(v))
        except InvalidOperation:
            raise self._fail(key, f"{v!r} is not a decimal number") from None
        if not d.is_finite() or (key.endswith("scale") and d == 0):
            raise self._fail(key, f"{v!r} must be a finite non-zero number")
        return d
