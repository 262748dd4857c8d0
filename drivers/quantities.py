"""The one vocabulary of measurements: OBIS codes with their units.

Every driver maps what a meter reports onto this table, and blocks carry only
these codes. A meter profile names a quantity by its OBIS code; loading the
profile checks the code is here and that the profile's unit is the one listed.

Codes follow IEC 62056-61 (OBIS): ``A-B:C.D.E`` with A=1 electricity, A=7 gas,
C the quantity (1 active import, 2 active export, 3/4 reactive, 9 apparent,
13 power factor, 14 frequency, 16 signed active power, 31/32 current/voltage
L1, 51/52 L2, 71/72 L3), D the processing (7 instantaneous, 8 time integral,
i.e. a counter) and E the tariff (0 total).

Units are the ledger's unit strings (``[A-Za-z0-9%/]``); a dimensionless
quantity (power factor) has the empty unit.

Sign conventions: ``1-0:16.7.0`` and the per-phase ``36/56/76.7.0`` are signed
net active power (positive = drawn from the grid, negative = fed in).
``1-0:3.7.0`` and ``23/43/63.7.0`` are signed net reactive power (positive =
inductive/Q+, negative = capacitive/Q-), as most meters report it in one register.
Counters (``kind == "counter"``) only rise, except when a meter is reset or swapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ledger import format_obis, parse_obis

Kind = Literal["counter", "instant"]


@dataclass(frozen=True, slots=True)
class Quantity:
    """One measurement: canonical OBIS code, short name, unit and meaning."""

    obis: str
    name: str
    """Short snake_case key (``energy_import``), unique across the table."""
    unit: str
    kind: Kind
    description: str


def _q(obis: str, name: str, unit: str, kind: Kind, description: str) -> Quantity:
    return Quantity(format_obis(parse_obis(obis)), name, unit, kind, description)


_BASE: tuple[Quantity, ...] = (
    # --- active energy (counters) ----------------------------------------------------
    _q("1-0:1.8.0", "energy_import", "Wh", "counter", "active energy imported, total"),
    _q("1-0:1.8.1", "energy_import_t1", "Wh", "counter", "active energy imported, tariff 1"),
    _q("1-0:1.8.2", "energy_import_t2", "Wh", "counter", "active energy imported, tariff 2"),
    _q("1-0:2.8.0", "energy_export", "Wh", "counter", "active energy exported, total"),
    _q("1-0:2.8.1", "energy_export_t1", "Wh", "counter", "active energy exported, tariff 1"),
    _q("1-0:2.8.2", "energy_export_t2", "Wh", "counter", "active energy exported, tariff 2"),
    _q("1-0:15.8.0", "energy_absolute", "Wh", "counter",
       "active energy, absolute sum of import and export"),
    _q("1-0:21.8.0", "energy_import_l1", "Wh", "counter", "active energy imported, L1"),
    _q("1-0:41.8.0", "energy_import_l2", "Wh", "counter", "active energy imported, L2"),
    _q("1-0:61.8.0", "energy_import_l3", "Wh", "counter", "active energy imported, L3"),
    _q("1-0:22.8.0", "energy_export_l1", "Wh", "counter", "active energy exported, L1"),
    _q("1-0:42.8.0", "energy_export_l2", "Wh", "counter", "active energy exported, L2"),
    _q("1-0:62.8.0", "energy_export_l3", "Wh", "counter", "active energy exported, L3"),
    # --- reactive / apparent energy ---------------------------------------------------
    _q("1-0:3.8.0", "reactive_energy_import", "varh", "counter",
       "reactive energy imported (Q+), total"),
    _q("1-0:4.8.0", "reactive_energy_export", "varh", "counter",
       "reactive energy exported (Q-), total"),
    _q("1-0:9.8.0", "apparent_energy", "VAh", "counter", "apparent energy, total"),
    # --- active power -------------------------------------------------------------------
    _q("1-0:1.7.0", "power_import", "W", "instant", "active power drawn from the grid (>= 0)"),
    _q("1-0:2.7.0", "power_export", "W", "instant", "active power fed into the grid (>= 0)"),
    _q("1-0:21.7.0", "power_import_l1", "W", "instant", "active power drawn, L1 (>= 0)"),
    _q("1-0:41.7.0", "power_import_l2", "W", "instant", "active power drawn, L2 (>= 0)"),
    _q("1-0:61.7.0", "power_import_l3", "W", "instant", "active power drawn, L3 (>= 0)"),
    _q("1-0:22.7.0", "power_export_l1", "W", "instant", "active power fed in, L1 (>= 0)"),
    _q("1-0:42.7.0", "power_export_l2", "W", "instant", "active power fed in, L2 (>= 0)"),
    _q("1-0:62.7.0", "power_export_l3", "W", "instant", "active power fed in, L3 (>= 0)"),
    _q("1-0:16.7.0", "power", "W", "instant", "active power, signed net (+ import, - export)"),
    _q("1-0:36.7.0", "power_l1", "W", "instant", "active power L1, signed net"),
    _q("1-0:56.7.0", "power_l2", "W", "instant", "active power L2, signed net"),
    _q("1-0:76.7.0", "power_l3", "W", "instant", "active power L3, signed net"),
    # --- reactive / apparent power ----------------------------------------------------
    _q("1-0:3.7.0", "reactive_power", "var", "instant",
       "reactive power, signed net (+ inductive, - capacitive)"),
    _q("1-0:23.7.0", "reactive_power_l1", "var", "instant", "reactive power L1, signed net"),
    _q("1-0:43.7.0", "reactive_power_l2", "var", "instant", "reactive power L2, signed net"),
    _q("1-0:63.7.0", "reactive_power_l3", "var", "instant", "reactive power L3, signed net"),
    _q("1-0:9.7.0", "apparent_power", "VA", "instant", "apparent power, total"),
    _q("1-0:29.7.0", "apparent_power_l1", "VA", "instant", "apparent power L1"),
    _q("1-0:49.7.0", "apparent_power_l2", "VA", "instant", "apparent power L2"),
    _q("1-0:69.7.0", "apparent_power_l3", "VA", "instant", "apparent power L3"),
    # --- voltage, current, frequency, power factor -------------------------------------
    _q("1-0:32.7.0", "voltage_l1", "V", "instant", "voltage L1-N"),
    _q("1-0:52.7.0", "voltage_l2", "V", "instant", "voltage L2-N"),
    _q("1-0:72.7.0", "voltage_l3", "V", "instant", "voltage L3-N"),
    _q("1-0:12.7.0", "voltage", "V", "instant", "voltage, any phase / average"),
    _q("1-0:31.7.0", "current_l1", "A", "instant", "current L1"),
    _q("1-0:51.7.0", "current_l2", "A", "instant", "current L2"),
    _q("1-0:71.7.0", "current_l3", "A", "instant", "current L3"),
    _q("1-0:91.7.0", "current_neutral", "A", "instant", "current in the neutral conductor"),
    _q("1-0:11.7.0", "current", "A", "instant", "current, any phase / sum"),
    _q("1-0:14.7.0", "frequency", "Hz", "instant", "supply frequency"),
    _q("1-0:13.7.0", "power_factor", "", "instant", "power factor, total (signed)"),
    _q("1-0:33.7.0", "power_factor_l1", "", "instant", "power factor L1"),
    _q("1-0:53.7.0", "power_factor_l2", "", "instant", "power factor L2"),
    _q("1-0:73.7.0", "power_factor_l3", "", "instant", "power factor L3"),
    # --- demand ---------------------------------------------------------------------------
    _q("1-0:1.6.0", "max_demand_import", "W", "instant", "maximum active power demand, import"),
    _q("1-0:1.4.0", "avg_demand_import", "W", "instant",
       "average active power import in the current demand period (BE e-MUCS)"),
)

_GAS: tuple[Quantity, ...] = tuple(
    _q(f"0-{ch}:24.2.1", f"gas_volume_ch{ch}", "m3", "counter",
       f"gas volume delivered, M-Bus channel {ch} (meter timestamp)")
    for ch in range(1, 5)
) + tuple(
    _q(f"0-{ch}:24.2.3", f"gas_volume_corrected_ch{ch}", "m3", "counter",
       f"gas volume, temperature-corrected, M-Bus channel {ch} (BE e-MUCS, meter timestamp)")
    for ch in range(1, 5)
)

QUANTITIES: dict[str, Quantity] = {q.obis: q for q in (*_BASE, *_GAS)}
"""Every known quantity by canonical OBIS code."""

_BY_NAME: dict[str, Quantity] = {q.name: q for q in QUANTITIES.values()}
if len(_BY_NAME) != len(QUANTITIES):  # a table edit gave two quantities one name
    raise RuntimeError("drivers.quantities: quantity names must be unique")


def lookup(obis: str) -> Quantity:
    """The quantity for an OBIS code (any accepted spelling, ``*255`` optional).

    Raises:
        KeyError: the code is valid OBIS but not in the vocabulary.
        ValueError: the text is not an OBIS code.
    """
    canonical = format_obis(parse_obis(obis))
    try:
        return QUANTITIES[canonical]
    except KeyError:
        raise KeyError(f"OBIS code {canonical} is not in drivers.quantities") from None


def by_name(name: str) -> Quantity:
    """The quantity with the short name ``name``.

    Raises:
        KeyError: no quantity has that name.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no quantity named {name!r} in drivers.quantities") from None
