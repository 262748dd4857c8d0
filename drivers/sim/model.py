"""The simulated electrical state of a meter: what a profile's quantities read right now.

Energy counters rise with time (``speed`` accelerates the clock so tests see Wh move
in milliseconds); a prosumer both imports and exports, so both counters rise. Values
are exact decimals in each quantity's unit; :mod:`drivers.sim.meter` encodes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from drivers import quantities


@dataclass
class MeterModel:
    """A household (or prosumer) connection with three phases."""

    import_w: Decimal = Decimal(1800)
    """Average power drawn from the grid."""
    export_w: Decimal = Decimal(0)
    """Average power fed in (set > 0 for a prosumer)."""
    start_import_wh: Decimal = Decimal(1234567)
    start_export_wh: Decimal = Decimal(0)
    speed: float = 1.0
    """Simulated seconds per real second."""
    clock: Callable[[], float] = time.monotonic
    voltages: tuple[Decimal, Decimal, Decimal] = (Decimal("230.1"), Decimal("229.8"),
                                                  Decimal("231.2"))
    frequency: Decimal = Decimal("50.01")
    power_factor: Decimal = Decimal("0.95")
    _t0: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._t0 = self.clock()

    def hours(self) -> Decimal:
        return Decimal(repr((self.clock() - self._t0) * self.speed / 3600.0))

    def energy(self) -> tuple[Decimal, Decimal]:
        """(import Wh, export Wh) now; both only rise."""
        h = self.hours()
        return (self.start_import_wh + self.import_w * h).quantize(Decimal("0.001")), \
            (self.start_export_wh + self.export_w * h).quantize(Decimal("0.001"))

    def value(self, obis: str) -> Decimal:
        """The current value of a quantity in its unit.

        Raises:
            KeyError: the quantity is not simulated.
        """
        q = quantities.lookup(obis)
        imp, exp = self.energy()
        net = self.import_w - self.export_w
        phase = {"l1": 0, "l2": 1, "l3": 2}.get(q.name.rsplit("_", 1)[-1])
        share = Decimal(1) / 3 if phase is not None else Decimal(1)
        v = self.voltages[phase or 0]
        n = q.name
        table: dict[str, Decimal] = {
            "energy_import": imp, "energy_export": exp, "energy_absolute": imp + exp,
            "energy_import_t1": imp * Decimal("0.6"), "energy_import_t2": imp * Decimal("0.4"),
            "energy_export_t1": exp * Decimal("0.6"), "energy_export_t2": exp * Decimal("0.4"),
            "reactive_energy_import": imp / 10, "reactive_energy_export": exp / 20,
            "apparent_energy": (imp + exp) * Decimal("1.05"),
            "power": net, "power_import": max(net, Decimal(0)),
            "power_export": max(-net, Decimal(0)), "reactive_power": net / 10,
            "apparent_power": abs(net) * Decimal("1.05"), "frequency": self.frequency,
            "power_factor": self.power_factor, "voltage": v, "max_demand_import": self.import_w,
            "current": abs(net) / v, "current_neutral": Decimal("0.12"),
        }
        base = n[:-3] if phase is not None else n
        if base.startswith("energy") and phase is not None:
            return (table[base] * share).quantize(Decimal("0.001"))
        if base == "voltage":
            return v
        if base == "current":
            return (abs(net) * share / v).quantize(Decimal("0.001"))
        if base in table:
            return table[base] * share if base.startswith(("power", "reactive", "apparent")) \
                and base != "power_factor" else table[base]
        raise KeyError(f"simulator has no value for {q.obis} ({n})")
