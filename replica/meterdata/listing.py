"""The registry as data: metering points with their meters over time, unassigned meters.

What ``GET /v1/meterdata/points``, ``replica meter list`` and ``replica list`` show; no
HTTP stack needed (``replica list`` runs without the ``replica`` extra).
"""

from __future__ import annotations

from typing import Any

from replica.meterdata.query import MeterData


def registry_json(md: MeterData) -> dict[str, Any]:
    """The registry and the unassigned meters, as ``GET /v1/meterdata/points`` answers."""
    gws = {g.key: g for g in md.storage.gateways()}
    assigns = md.store.assignments()
    points = []
    for p in md.store.points():
        points.append({
            "point": p.point_id, "role": p.role, "member": p.member,
            "import": list(p.import_registers), "export": list(p.export_registers),
            "rated_max_w": p.rated_max_w, "register_modulus": p.register_modulus,
            "meters": [{"gateway": a.gateway_key.hex(),
                        "gateway_name": gws[a.gateway_key].name if a.gateway_key in gws
                        else None, "meter": a.meter_id, "from_ms": a.from_ms, "to_ms": a.to_ms}
                       for a in assigns if a.point_id == p.point_id],
        })
    return {"points": points, "unassigned": unassigned_json(md)}


def unassigned_json(md: MeterData) -> list[dict[str, Any]]:
    """Meters with indexed readings that no metering point has ever been assigned."""
    gws = {g.key: g for g in md.storage.gateways()}
    assigned = {(a.gateway_key, a.meter_id) for a in md.store.assignments()}
    out: dict[tuple[bytes, str], list[str]] = {}
    for c in md.store.channels():
        if (c.gateway_key, c.meter_id) not in assigned:
            out.setdefault((c.gateway_key, c.meter_id), []).append(c.obis)
    return [{"gateway": k.hex(), "gateway_name": gws[k].name if k in gws else None,
             "meter": m, "registers": sorted(set(obis))} for (k, m), obis in sorted(out.items())]
