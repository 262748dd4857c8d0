"""A SunSpec inverter (model 103) or meter (model 203) as a register map with live values.

Serve it with :class:`drivers.sim.meter.MeterServer` via ``sunspec_unit(...)``. The map
is: 'SunS' at ``base``, common model 1 (manufacturer, model, serial), then 103 or 203
with scale factors, then the end marker. Lifetime energy rises with time.
"""

from __future__ import annotations

from decimal import Decimal

from drivers import profile
from drivers.sim.meter import RegisterImage, SimUnit
from drivers.sim.model import MeterModel
from drivers.sunspec import _INVERTER, _METER, MARKER


def _text(s: str, regs: int) -> list[int]:
    data = s.encode("ascii")[: 2 * regs].ljust(2 * regs, b"\0")
    return [data[i] << 8 | data[i + 1] for i in range(0, len(data), 2)]


def _i16(v: int) -> int:
    return v & 0xFFFF


def sunspec_image(model: MeterModel, kind: str = "inverter", base: int = 40000) -> RegisterImage:
    """The whole SunSpec map right now (holding registers, function 3)."""
    common = (_text("meterchain", 16) + _text("sim-" + kind, 16) + _text("", 8)
              + _text("1.0", 8) + _text("SIM0001", 16) + [1, 0x8000])
    imp, exp = model.energy()
    if kind == "inverter":
        layout, model_id, length = _INVERTER, 103, 50
        values = {"A": (int(model.export_w / model.voltages[0] * 100), "A_SF", -2),
                  "PhVphA": (int(model.voltages[0] * 10), "V_SF", -1),
                  "W": (int(model.export_w), "W_SF", 0),
                  "Hz": (int(model.frequency * 100), "Hz_SF", -2),
                  "WH": (int(exp / 10), "WH_SF", 1)}
    else:
        layout, model_id, length = _METER, 203, 105
        net = model.import_w - model.export_w
        values = {"A": (int(abs(net) / model.voltages[0] * 100), "A_SF", -2),
                  "PhVphA": (int(model.voltages[0] * 10), "V_SF", -1),
                  "W": (int(net), "W_SF", 0), "Hz": (int(model.frequency * 100), "Hz_SF", -2),
                  "TotWhImp": (int(imp), "TotWh_SF", 0), "TotWhExp": (int(exp), "TotWh_SF", 0)}
    block = [0x8000] * length  # every int16 point "not implemented" unless set
    for offset, type_name, _sf in layout.values():
        if type_name == "u16":
            block[offset] = 0xFFFF
        elif type_name == "acc32":
            block[offset] = block[offset + 1] = 0
    for name, (raw, sf_name, sf) in values.items():
        offset, type_name, _ = layout[name]
        if type_name == "acc32":
            block[offset], block[offset + 1] = raw >> 16 & 0xFFFF, raw & 0xFFFF
        else:
            block[offset] = _i16(raw)
        block[layout[sf_name][0]] = _i16(sf)
    words = list(MARKER) + [1, len(common)] + common + [model_id, length] + block + [0xFFFF, 0]
    return {(3, base + i): w for i, w in enumerate(words)}


def sunspec_unit(unit: int, model: MeterModel | None = None, kind: str = "inverter",
                 base: int = 40000) -> SimUnit:
    """A simulated SunSpec device for :class:`~drivers.sim.meter.MeterServer`."""
    # A lifetime counter of 0 means "not implemented" for SunSpec acc32 points, and a real
    # inverter has years of production on it: start from 8,765.43 kWh generated.
    m = model or MeterModel(import_w=Decimal(0), export_w=Decimal(3200),
                            start_import_wh=Decimal(0), start_export_wh=Decimal(8_765_430))
    prof = profile.load(f"sunspec-{kind}")
    return SimUnit(unit, prof, image_fn=lambda: sunspec_image(m, kind, base))
