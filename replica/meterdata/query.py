"""Answer meter-data questions from the index: interval energy per metering point.

Shared by the HTTP API (:mod:`replica.meterdata.api`) and the CLI
(:mod:`replica.meterdata.cli`), so both give the same numbers. Gateways are named by
name or key, times by ISO 8601 or milliseconds (:mod:`replica.meterdata.calendar`).

How a metering point's energy is computed for ``[start, end)`` on a UTC grid:

1. Its assignments meeting the range give *sources* (gateway, meter id, span).
2. For each source and direction, the point's register specs select the source's
   indexed channels (``1-0:1.8.x``: the total register, else the tariff registers).
3. Each channel's readings (scaled to integer Wh, floored) within the source's span go
   (``[from, to]``: the old meter's reading at the exchange instant is its last) go
   to the interval engine, with the anchors on either side of the range, and four more
   weeks before it when a gap is too long to bridge linearly (comparable days).
4. The channels' intervals are summed (quality: the worst; traces: all), and the
   sources' intervals are laid side by side in time; an interval two sources share (a
   meter exchanged inside it) is their sum when both have a value, else missing.

Raises :class:`~replica.errors.Refusal` (400 ``malformed``, 404 ``unknown-gateway`` /
``unknown-point``) for what a caller got wrong.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import sub
from typing import Any
from zoneinfo import ZoneInfo

from replica.csvexport import neutralise
from replica.errors import Refusal
from replica.meterdata import calendar
from replica.meterdata.errors import MeterDataInputError
from replica.meterdata.intervals import (
    DEFAULT_MAX_LINEAR_GAP_MS,
    PROFILE_LOOKBACK_MS,
    Interval,
    Quality,
    compute_intervals,
    default_tolerance_ms,
)
from replica.meterdata.registry import (
    DIRECTIONS,
    Assignment,
    MeteringPoint,
    make_point,
    select_registers,
)
from replica.meterdata.store import Channel, MeterDataStore
from replica.meterdata.vee import Finding, Origin, PowerSample, RegisterColumns
from replica.storage.base import GatewayRecord, Storage

QUALITY_ORDER = {Quality.MEASURED: 0, Quality.SUBSTITUTED: 1, Quality.ESTIMATED: 2,
                 Quality.MISSING: 3}
RULE_SOURCES_OVERLAP = "meter-exchange"

ENERGY_UNITS = {"Wh": 0, "kWh": 3, "MWh": 6}
"""Energy units the index converts to Wh (decimal exponent of the unit)."""
POWER_UNITS = {"W": 0, "kW": 3}
POWER_REGISTERS = {"import": "1-0:1.7.0", "export": "1-0:2.7.0"}
"""Active power drawn / fed in (>= 0): the engine's frozen-register check uses them."""

MAX_INTERVALS = 100_000
"""Most intervals one query may ask for per series (a year of 15 minutes is 35,040)."""

AGGREGATES = ("day", "month")


def to_wh(value: int, exponent: int, unit: str) -> int | None:
    """``value * 10**exponent`` ``unit`` as whole Wh, floored (None: not an energy unit).

    Flooring matches what a register display shows: only completed Wh count. The
    intervals of a span still sum to the floored register difference across it.
    """
    e = ENERGY_UNITS.get(unit)
    if e is None:
        return None
    e += exponent
    return value * 10**e if e >= 0 else value // 10**-e


def resolve_gateway(storage: Storage, text: str) -> GatewayRecord:
    """The enrolled gateway named ``text``: its 64-hex key or its name.

    Raises:
        Refusal: 404 ``unknown-gateway``; 400 ``ambiguous-gateway`` when several
            gateways share the name (use the key).
    """
    t = text.strip()
    if len(t) == 64:
        try:
            key = bytes.fromhex(t)
        except ValueError:
            key = b""
        if key:
            rec = storage.gateway(key)
            if rec is not None:
                return rec
    found = [g for g in storage.gateways() if g.name == t]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise Refusal(400, "ambiguous-gateway", f"{len(found)} gateways are named {t!r}: "
                      "name one by its key (" + ", ".join(g.key.hex() for g in found) + ")")
    raise Refusal(404, "unknown-gateway", f"no enrolled gateway has the name or key {t[:80]!r}")


def input_error(exc: MeterDataInputError) -> Refusal:
    """The 400 refusal for a bad date, time, zone or interval."""
    return Refusal(400, "malformed", str(exc), field=exc.field)


@dataclass(frozen=True, slots=True)
class Source:
    """One meter measuring a point over a span."""

    gateway: GatewayRecord
    meter_id: str
    from_ms: int
    to_ms: int | None


@dataclass(slots=True)
class Target:
    """What to compute: a metering point (or an unassigned meter) and its sources."""

    label: str
    point: MeteringPoint
    assigned: bool
    sources: list[Source] = field(default_factory=list)


@dataclass(slots=True)
class Series:
    """One target's energy in one direction."""

    target: Target
    direction: str
    registers: list[str]
    intervals: list[Interval]
    findings: list[Finding]


@dataclass(slots=True)
class Request:
    """A parsed intervals request."""

    start_ms: int
    end_ms: int
    interval_ms: int
    tz: ZoneInfo
    aggregate: str | None = None


def parse_request(frm: str, to: str, interval: str, tz: str) -> Request:
    """Parse ``from``/``to`` (ISO 8601 or ms; a bare ``to`` date includes that day),
    the interval (15m, 30m, 1h, or ``day``/``month`` for local calendar totals) and tz.

    Raises:
        Refusal: 400 ``malformed`` naming the field.
    """
    try:
        zone = calendar.zone(tz)
        aggregate = interval.strip().lower() if interval.strip().lower() in AGGREGATES else None
        step = 15 * calendar.MS_PER_MINUTE if aggregate else calendar.parse_interval(interval)
        start, end = calendar.parse_range(frm, to, zone)
    except MeterDataInputError as exc:
        raise input_error(exc) from None
    start = calendar.align_down(start, step)
    end = calendar.align_up(end, step)
    if (end - start) // step > MAX_INTERVALS:
        raise Refusal(400, "malformed", f"the range holds {(end - start) // step} intervals, "
                      f"at most {MAX_INTERVALS} are computed at once: ask for a shorter range "
                      "or a longer interval", field="to")
    return Request(start, end, step, zone, aggregate)


class MeterData:
    """The registry, index and engine together, over one storage."""

    def __init__(self, storage: Storage, utility_sk: bytes | None = None,
                 store: MeterDataStore | None = None) -> None:
        self.storage = storage
        self.utility_sk = utility_sk
        self.store = store or MeterDataStore(storage)

    # --- selecting targets ---------------------------------------------------------------

    def targets(self, *, gateway: str | None = None, meter: str | None = None,
                member: str | None = None, point: str | None = None,
                start_ms: int = 0, end_ms: int | None = None) -> list[Target]:
        """The metering points (and unassigned meters) a request names.

        ``point``: that point. ``member``: every point of the member (on ``gateway``, if
        given). ``gateway`` and ``meter``: that meter (the point it is assigned to in
        the range lends its registers). ``gateway`` alone: every point with a meter on
        it and every unassigned meter on it.

        Raises:
            Refusal: 400 when nothing is named or ``meter`` comes without ``gateway``;
                404 for an unknown gateway, point or member, or a meter never seen.
        """
        if meter is not None and gateway is None:
            raise Refusal(400, "malformed", "meter needs gateway: a meter id is unique only "
                          "on its gateway", field="meter")
        if sum(x is not None for x in (meter, member, point)) > 1:
            raise Refusal(400, "malformed", "name at most one of meter, member and point")
        gw = resolve_gateway(self.storage, gateway) if gateway is not None else None
        if gw is None and member is None and point is None:
            raise Refusal(400, "malformed", "name a gateway, a member or a metering point",
                          field="gateway")
        points = {p.point_id: p for p in self.store.points()}
        assigns = self.store.assignments()
        gateways = {g.key: g for g in self.storage.gateways()}
        in_range = [a for a in assigns if a.overlaps(start_ms, end_ms)]

        def target_of(p: MeteringPoint) -> Target:
            t = Target(p.point_id, p, True)
            for a in in_range:
                if a.point_id == p.point_id and a.gateway_key in gateways:
                    t.sources.append(Source(gateways[a.gateway_key], a.meter_id, a.from_ms,
                                            a.to_ms))
            return t

        if point is not None:
            p = points.get(point)
            if p is None:
                raise Refusal(404, "unknown-point", f"no metering point {point!r}")
            return [target_of(p)]
        if member is not None:
            chosen = [p for p in points.values() if p.member == member]
            if gw is not None:
                on_gw = {a.point_id for a in in_range if a.gateway_key == gw.key}
                chosen = [p for p in chosen if p.point_id in on_gw]
            if not chosen:
                where = f" with a meter on gateway {gw.name!r}" if gw is not None else ""
                raise Refusal(404, "unknown-member", f"no metering point of member "
                              f"{member!r}{where} in this range")
            return [target_of(p) for p in sorted(chosen, key=lambda p: p.point_id)]
        assert gw is not None
        if meter is not None:
            mine = [a for a in in_range if a.gateway_key == gw.key and a.meter_id == meter]
            if not mine and not self.store.channels(gw.key, meter):
                raise Refusal(404, "unknown-meter", f"gateway {gw.name!r} has no readings of "
                              f"meter {meter!r} indexed")
            return [self._meter_target(gw, meter, mine, points)]
        out = [target_of(points[pid]) for pid in
               sorted({a.point_id for a in in_range if a.gateway_key == gw.key})]
        assigned = {a.meter_id for a in assigns if a.gateway_key == gw.key}
        for m in sorted({c.meter_id for c in self.store.channels(gw.key)} - assigned):
            out.append(self._meter_target(gw, m, [], points))
        return out

    def _meter_target(self, gw: GatewayRecord, meter: str, mine: Sequence[Assignment],
                      points: dict[str, MeteringPoint]) -> Target:
        if mine:
            p = points[mine[0].point_id]
            t = Target(f"{gw.name}/{meter}", p, True)
            for a in mine:
                t.sources.append(Source(gw, meter, a.from_ms, a.to_ms))
            return t
        t = Target(f"{gw.name}/{meter}", make_point("unassigned", "sub-meter"), False)
        t.sources.append(Source(gw, meter, 0, None))
        return t

    # --- computing ----------------------------------------------------------------------

    def series(self, target: Target, req: Request, *, directions: Sequence[str] = DIRECTIONS
               ) -> list[Series]:
        """The target's intervals in each direction that has a register on one of its
        meters (aggregated when asked)."""
        out = []
        for d in directions:
            registers: set[str] = set()
            per_source: list[tuple[Source, list[Interval], list[Finding]]] = []
            for src in target.sources:
                chans = self.store.channels(src.gateway.key, src.meter_id)
                by_obis: dict[str, list[Channel]] = {}
                for c in chans:
                    if c.unit in ENERGY_UNITS:
                        by_obis.setdefault(c.obis, []).append(c)
                chosen = select_registers(target.point.registers(d), by_obis)
                registers.update(chosen)
                parts = []
                findings: list[Finding] = []
                power = [c for c in chans if c.obis == POWER_REGISTERS[d] and c.unit in
                         POWER_UNITS]
                for obis in chosen:
                    got = self._channel_intervals(by_obis[obis], src, target.point, req,
                                                  power)
                    parts.append(got[0])
                    findings.extend(got[1])
                if parts:
                    per_source.append((src, sum_parts(parts), findings))
            if not registers:
                continue  # no register of this direction on any meter (a PV point's import)
            intervals = _lay_sources(per_source, req)
            findings = sorted((f for _, _, fs in per_source for f in fs),
                              key=lambda f: f.sort_key())
            s = Series(target, d, sorted(registers), intervals, findings)
            if req.aggregate:
                s.intervals = aggregate(s.intervals, req)
            out.append(s)
        return out

    def _channel_intervals(self, chans: Sequence[Channel], src: Source, point: MeteringPoint,
                           req: Request, power: Sequence[Channel] = ()
                           ) -> tuple[list[Interval], list[Finding]]:
        """One register's intervals from one source (its channels' readings merged);
        the meter's power readings of that direction let the engine find a frozen
        register."""
        tol = default_tolerance_ms(req.interval_ms)
        span_lo = src.from_ms
        # a meter's reading at the instant it was replaced is its last: [from, to]
        span_hi = src.to_ms + 1 if src.to_ms is not None else 2**63 - 1
        lo = max(span_lo, req.start_ms - tol)
        hi = min(span_hi, req.end_ms + tol + 1)
        for c in chans:
            before = self.store.last_before(c.channel, lo)
            if before is not None and before >= span_lo:
                lo = min(lo, before)
            after = self.store.first_from(c.channel, hi)
            if after is not None and after < span_hi:
                hi = max(hi, after + 1)
        cols = self._columns(chans, lo, hi)
        if _longest_gap(cols.ts_ms, req.start_ms, req.end_ms) > DEFAULT_MAX_LINEAR_GAP_MS:
            cols = self._columns(chans, max(span_lo, lo - PROFILE_LOOKBACK_MS), hi)
        samples = self._power(power, max(span_lo, req.start_ms - tol),
                              min(span_hi, req.end_ms + tol + 1))
        try:
            res = compute_intervals(cols, start_ms=req.start_ms, end_ms=req.end_ms,
                                    interval_ms=req.interval_ms, tolerance_ms=tol,
                                    rated_max_w=point.rated_max_w,
                                    register_modulus=point.register_modulus,
                                    power_samples=samples, tz=req.tz)
        except MeterDataInputError as exc:
            raise input_error(exc) from None
        return list(res.intervals), list(res.findings)

    def _power(self, chans: Sequence[Channel], lo: int, hi: int) -> list[PowerSample]:
        """Power readings in whole W (floored) of ``[lo, hi)``."""
        out = []
        for c in chans:
            gw = c.gateway_key.hex()
            scale = POWER_UNITS[c.unit] + c.exponent
            for ts, v, h, i, _f in self.store.readings(c.channel, lo, hi):
                w = v * 10**scale if scale >= 0 else v // 10**-scale
                out.append(PowerSample(ts, w, Origin(gw, h, i)))
        return out

    def _columns(self, chans: Sequence[Channel], lo: int, hi: int) -> RegisterColumns:
        rows: list[tuple[int, int, str, int, int, int]] = []
        for c in chans:
            gw = c.gateway_key.hex()
            scale = ENERGY_UNITS[c.unit] + c.exponent
            if scale == 0:  # already Wh: the database makes the rows
                rows.extend(self.store.engine_rows(c.channel, gw, lo, hi))
                continue
            mul = 10**scale if scale >= 0 else 0
            div = 10**-scale if scale < 0 else 1
            for ts, v, h, i, f in self.store.readings(c.channel, lo, hi):
                rows.append((ts, v * mul if mul else v // div, gw, h, i, f))
        if len(chans) > 1:
            rows.sort()
        return RegisterColumns.from_rows(rows)


def _longest_gap(ts: Sequence[int], start: int, end: int) -> int:
    """The longest time between consecutive readings (sorted ``ts``) that bracket any
    part of ``[start, end]``: beyond the linear limit the engine needs comparable days."""
    if len(ts) < 2:
        return 0
    lo = max(bisect_right(ts, start) - 1, 0)
    hi = min(bisect_left(ts, end), len(ts) - 1)
    return max(map(sub, ts[lo + 1:hi + 1], ts[lo:hi]), default=0)


def worse(a: Quality, b: Quality) -> Quality:
    return a if QUALITY_ORDER[a] >= QUALITY_ORDER[b] else b


def sum_parts(parts: Sequence[Sequence[Interval]]) -> list[Interval]:
    """Registers summed interval by interval (tariff registers of one direction).

    A value exists only where every part has one; the quality is the worst part's, the
    rule that part's, the traces all parts' together.
    """
    if len(parts) == 1:
        return list(parts[0])
    out = []
    for group in zip(*parts, strict=True):
        q = Quality.MEASURED
        rule = None
        for iv in group:
            if QUALITY_ORDER[iv.quality] > QUALITY_ORDER[q]:
                q, rule = iv.quality, iv.rule
        wh = None if q == Quality.MISSING else sum(iv.wh or 0 for iv in group)
        out.append(Interval(group[0].start_ms, group[0].end_ms, wh, q, rule,
                            tuple(o for iv in group for o in iv.start_trace),
                            tuple(o for iv in group for o in iv.end_trace)))
    return out


def _lay_sources(per_source: Sequence[tuple[Source, list[Interval], list[Finding]]],
                 req: Request) -> list[Interval]:
    """Each interval from the source(s) whose span meets it (see the module docstring)."""
    n = (req.end_ms - req.start_ms) // req.interval_ms
    if len(per_source) == 1:
        src, ivs, _ = per_source[0]
        if src.from_ms <= req.start_ms and (src.to_ms is None or src.to_ms >= req.end_ms):
            return list(ivs)  # one meter all along
    out: list[Interval] = []
    for k in range(n):
        s = req.start_ms + k * req.interval_ms
        e = s + req.interval_ms
        covering = [ivs[k] for src, ivs, _ in per_source
                    if src.from_ms < e and (src.to_ms is None or s < src.to_ms)]
        if not covering:
            out.append(Interval(s, e, None, Quality.MISSING, "no-meter", (), ()))
        elif len(covering) == 1:
            out.append(covering[0])
        else:
            both = sum_parts([[iv] for iv in covering])[0]
            if both.quality == Quality.MISSING:
                both = Interval(s, e, None, Quality.MISSING, RULE_SOURCES_OVERLAP,
                                both.start_trace, both.end_trace)
            out.append(both)
    return out


def aggregate(intervals: Sequence[Interval], req: Request) -> list[Interval]:
    """Intervals summed per local calendar day or month of ``req.tz`` (23, 24 or 25 hours
    a day across DST). A period's quality is its worst interval's; its traces are the
    first interval's start and the last one's end."""
    periods = (calendar.days if req.aggregate == "day" else calendar.months)(
        req.start_ms, req.end_ms, req.tz)
    out = []
    i = 0
    for p in periods:
        group = []
        while i < len(intervals) and intervals[i].start_ms < p.end_ms:
            group.append(intervals[i])
            i += 1
        if not group:
            continue
        merged = sum_parts([[iv] for iv in group])[0]
        out.append(Interval(p.start_ms, p.end_ms, merged.wh, merged.quality, merged.rule,
                            group[0].start_trace, group[-1].end_trace))
    return out


# --- rendering (shared by CLI and API) ------------------------------------------------------


def origin_json(o: Origin) -> dict[str, Any]:
    return {"gateway": o.gateway, "height": o.height, "index": o.index}


def iso_local(ms: int, tz: ZoneInfo) -> str:
    """``ms`` as local ISO 8601 with its offset (``2026-11-30T06:00:00+01:00``)."""
    from datetime import UTC, datetime, timedelta

    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return dt.astimezone(tz).isoformat(timespec="seconds")


def series_json(s: Series, req: Request, *, traces: bool) -> dict[str, Any]:
    """One series as the API's JSON object (docs/replica-api.md, "Intervals")."""
    counts = {q.value: 0 for q in Quality}
    total = 0
    for iv in s.intervals:
        counts[iv.quality.value] += 1
        total += iv.wh or 0
    src = s.target.sources
    doc: dict[str, Any] = {
        "point": s.target.point.point_id if s.target.assigned else None,
        "label": s.target.label,
        "role": s.target.point.role if s.target.assigned else None,
        "member": s.target.point.member if s.target.assigned else None,
        "direction": s.direction,
        "registers": s.registers,
        "meters": [{"gateway": x.gateway.key.hex(), "gateway_name": x.gateway.name,
                    "meter": x.meter_id, "from_ms": x.from_ms, "to_ms": x.to_ms} for x in src],
        "unit": "Wh",
        "total_wh": total,
        "quality_counts": counts,
        "intervals": [],
        "findings": [finding_json(f, req.tz) for f in s.findings],
    }
    for iv in s.intervals:
        item: dict[str, Any] = {"start": iso_local(iv.start_ms, req.tz),
                                "start_ms": iv.start_ms, "end_ms": iv.end_ms, "wh": iv.wh,
                                "quality": iv.quality.value, "rule": iv.rule}
        if traces:
            item["start_trace"] = [origin_json(o) for o in iv.start_trace]
            item["end_trace"] = [origin_json(o) for o in iv.end_trace]
        doc["intervals"].append(item)
    return doc


def finding_json(f: Finding, tz: ZoneInfo) -> dict[str, Any]:
    return {"kind": f.kind, "ts_ms": f.ts_ms, "time": iso_local(f.ts_ms, tz),
            "since_ms": f.since_ms, "effect": f.effect, "detail": f.detail,
            "origins": [origin_json(o) for o in f.origins]}


CSV_COLUMNS = ("point", "member", "role", "direction", "start", "end", "start_ms", "end_ms",
               "wh", "quality", "rule", "start_trace", "end_trace")
"""Columns of the intervals CSV (docs/replica-api.md); a member name a spreadsheet would
run as a formula gets a leading ``'`` (:func:`replica.csvexport.neutralise`)."""


def trace_text(origins: Sequence[Origin]) -> str:
    """Origins as ``gateway:height:index`` joined by spaces."""
    return " ".join(f"{o.gateway}:{o.height}:{o.index}" for o in origins)


def csv_rows(series: Sequence[Series], req: Request, *, traces: bool) -> list[list[Any]]:
    rows = []
    for s in series:
        pid = s.target.point.point_id if s.target.assigned else s.target.label
        member = neutralise(s.target.point.member or "") if s.target.assigned else ""
        role = s.target.point.role if s.target.assigned else ""
        for iv in s.intervals:
            rows.append([pid, member, role, s.direction, iso_local(iv.start_ms, req.tz),
                         iso_local(iv.end_ms, req.tz), iv.start_ms, iv.end_ms,
                         "" if iv.wh is None else iv.wh, iv.quality.value, iv.rule or "",
                         trace_text(iv.start_trace) if traces else "",
                         trace_text(iv.end_trace) if traces else ""])
    return rows
