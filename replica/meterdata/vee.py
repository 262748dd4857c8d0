"""Validation of one cumulative energy register's readings (the V of VEE).

Pure: readings in, accepted readings and findings out. No file, database, socket or
clock. docs/intervals.md (section "Validation") is the normative description; the
constants below are the stable finding kinds and effects it lists.

:func:`screen` looks at every reading once and records each problem as a
:class:`Finding`. Nothing is silently "fixed": a reading that cannot be trusted is
excluded *and* named in a finding; a rollover is unwrapped *and* named; a meter
exchange splits the series *and* is named. What remains (the accepted readings, in
time order, with unwrapped register values and a segment number) is what the
interval engine (:mod:`replica.meterdata.intervals`) works from.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from replica.meterdata.errors import MeterDataInputError

MS_PER_HOUR = 3_600_000

# --- finding kinds (stable codes, docs/intervals.md "Validation") ----------------------
REGISTER_DECREASE = "register-decrease"
POWER_ABOVE_RATED = "power-above-rated"
FROZEN_REGISTER = "frozen-register"
CLOCK_UNSYNCHRONISED = "clock-unsynchronised"
CLOCK_STEP = "clock-step"
TIME_BACKWARDS = "time-backwards"
CONFLICTING_READINGS = "conflicting-readings"

FINDING_KINDS = (
    REGISTER_DECREASE,
    POWER_ABOVE_RATED,
    FROZEN_REGISTER,
    CLOCK_UNSYNCHRONISED,
    CLOCK_STEP,
    TIME_BACKWARDS,
    CONFLICTING_READINGS,
)

# --- what a finding did to the intervals (stable codes) --------------------------------
EFFECT_EXCLUDED = "excluded"  # the reading(s) named are not used for any boundary
EFFECT_UNWRAPPED = "unwrapped"  # the modulus is added to this and every later reading
EFFECT_SPLIT = "split"  # a new series starts; no interval spans the two series
EFFECT_NONE = "none"  # shown only; the intervals are computed as if it were not there


@dataclass(frozen=True, slots=True, order=True)
class Origin:
    """Where a reading is in the ledger: gateway public key (hex), block height, index."""

    gateway: str
    height: int
    index: int


@dataclass(frozen=True, slots=True)
class RegisterSample:
    """One reading of a cumulative energy register, already scaled to integer Wh.

    ``clock_ok`` is False when the gateway flagged its clock as not known to be
    synchronised (ledger quality bit ``GATEWAY_CLOCK_UNSYNCED``); ``clock_step`` is True
    when it saw a clock step since this meter's previous reading (``CLOCK_STEP``);
    ``counter_reset`` is True when the meter itself reported that its counter went
    backwards (``COUNTER_RESET``), which rules out reading a decrease as a rollover.
    """

    ts_ms: int
    wh: int
    origin: Origin
    clock_ok: bool = True
    clock_step: bool = False
    counter_reset: bool = False


@dataclass(frozen=True, slots=True)
class PowerSample:
    """One reading of the meter's active power in W, positive in the register's direction."""

    ts_ms: int
    w: int
    origin: Origin


@dataclass(frozen=True, slots=True)
class Finding:
    """One validation finding.

    ``kind`` is one of :data:`FINDING_KINDS`; ``ts_ms`` is the time of the reading that
    raised it and ``since_ms`` the time of the earlier reading it was compared with
    (``None`` for findings about one reading alone); ``origins`` are the readings
    concerned, so each can be proved; ``effect`` says what it did to the intervals
    (``excluded``, ``unwrapped``, ``split`` or ``none``).
    """

    kind: str
    ts_ms: int
    detail: str
    origins: tuple[Origin, ...]
    since_ms: int | None = None
    effect: str = EFFECT_NONE

    def sort_key(self) -> tuple[int, str, tuple[Origin, ...]]:
        return (self.ts_ms, self.kind, self.origins)


@dataclass(slots=True)
class Screened:
    """The accepted readings of one register, in strictly increasing time order.

    ``wh`` holds unwrapped register values (rollovers undone); ``seg`` numbers the
    series a reading belongs to (a new number after each meter exchange); interval
    energy is only ever the difference of two values of the same series.
    """

    ts: list[int] = field(default_factory=list)
    wh: list[int] = field(default_factory=list)
    seg: list[int] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def _origin_key(s: RegisterSample) -> tuple[str, int, int]:
    o = s.origin
    return (o.gateway, o.height, o.index)


def _is_rollover(
    prev_raw: int,
    raw: int,
    dt_ms: int,
    modulus: int | None,
    rated_max_w: int | None,
    counter_reset: bool,
) -> bool:
    """A decrease ``prev_raw -> raw`` is a rollover when docs/intervals.md V3 says so."""
    if modulus is None or counter_reset:
        return False
    step = raw - prev_raw + modulus
    if step < 0:
        return False
    if rated_max_w is not None:
        return step * MS_PER_HOUR <= rated_max_w * dt_ms
    return step <= modulus // 2


def screen(
    samples: Sequence[RegisterSample],
    *,
    rated_max_w: int | None = None,
    register_modulus: int | None = None,
    power_samples: Sequence[PowerSample] = (),
    register_resolution_wh: int = 1,
) -> Screened:
    """Validate ``samples`` (any order) and return the accepted readings and findings.

    Raises :class:`MeterDataInputError` when two samples carry the same origin but
    differ (the caller passed two different readings under one ledger position), or a
    parameter is out of range.
    """
    if register_modulus is not None and register_modulus <= 0:
        raise MeterDataInputError("register_modulus", register_modulus, "must be positive")
    if rated_max_w is not None and rated_max_w <= 0:
        raise MeterDataInputError("rated_max_w", rated_max_w, "must be positive")
    if register_resolution_wh <= 0:
        raise MeterDataInputError(
            "register_resolution_wh", register_resolution_wh, "must be positive"
        )
    out = Screened()
    findings = out.findings

    # V1/V2: ledger order per gateway; flagged clocks. Input order does not matter.
    by_origin = sorted(samples, key=_origin_key)
    kept: list[RegisterSample] = []
    prev: RegisterSample | None = None
    for s in by_origin:
        o = s.origin
        ok = True
        if prev is not None and prev.origin.gateway == o.gateway:
            if prev.origin == o:
                if prev != s:
                    raise MeterDataInputError(
                        "samples", o, "two different samples carry the same origin"
                    )
                continue  # the same reading passed twice
            if s.ts_ms <= prev.ts_ms:
                findings.append(
                    Finding(
                        TIME_BACKWARDS,
                        s.ts_ms,
                        f"timestamp {s.ts_ms} is not after {prev.ts_ms}, the timestamp of "
                        "the gateway's previous reading of this register",
                        (o, prev.origin),
                        prev.ts_ms,
                        EFFECT_EXCLUDED,
                    )
                )
                ok = False
        prev = s
        if not s.clock_ok:
            findings.append(
                Finding(
                    CLOCK_UNSYNCHRONISED,
                    s.ts_ms,
                    "the gateway's clock was not known to be synchronised",
                    (o,),
                    None,
                    EFFECT_EXCLUDED,
                )
            )
            ok = False
        if s.clock_step:
            findings.append(
                Finding(
                    CLOCK_STEP,
                    s.ts_ms,
                    "the gateway's clock stepped since this meter's previous reading",
                    (o,),
                    None,
                    EFFECT_EXCLUDED,
                )
            )
            ok = False
        if ok:
            kept.append(s)

    # V3: one reading per instant. Stable sort keeps origin order among equal times.
    kept.sort(key=lambda s: s.ts_ms)
    accepted: list[RegisterSample] = []
    i, n = 0, len(kept)
    while i < n:
        j = i + 1
        ts = kept[i].ts_ms
        while j < n and kept[j].ts_ms == ts:
            j += 1
        if j - i == 1:
            accepted.append(kept[i])
        else:
            group = kept[i:j]
            if all(g.wh == group[0].wh for g in group):
                accepted.append(group[0])
            else:
                findings.append(
                    Finding(
                        CONFLICTING_READINGS,
                        ts,
                        "readings at the same instant disagree: "
                        + ", ".join(str(g.wh) for g in group)
                        + " Wh",
                        tuple(g.origin for g in group),
                        None,
                        EFFECT_EXCLUDED,
                    )
                )
        i = j

    # V4/V5: decreases (rollover or exchange), power above rated.
    ts_out, wh_out, seg_out, org_out = out.ts, out.wh, out.seg, out.origins
    offset = 0
    seg = 0
    prev_raw = 0
    prev_ts = 0
    prev_o: Origin | None = None
    for s in accepted:
        raw = s.wh
        t = s.ts_ms
        if prev_o is not None:
            dt = t - prev_ts
            if raw < prev_raw:
                if _is_rollover(prev_raw, raw, dt, register_modulus, rated_max_w, s.counter_reset):
                    assert register_modulus is not None
                    offset += register_modulus
                    findings.append(
                        Finding(
                            REGISTER_DECREASE,
                            t,
                            f"register fell from {prev_raw} to {raw} Wh: rollover at modulus "
                            f"{register_modulus}, step {raw - prev_raw + register_modulus} Wh",
                            (prev_o, s.origin),
                            prev_ts,
                            EFFECT_UNWRAPPED,
                        )
                    )
                else:
                    seg += 1
                    offset = 0
                    why = (
                        "the meter reported a counter reset"
                        if s.counter_reset
                        else "not a rollover"
                        if register_modulus is None
                        else f"not a plausible rollover at modulus {register_modulus}"
                    )
                    findings.append(
                        Finding(
                            REGISTER_DECREASE,
                            t,
                            f"register fell from {prev_raw} to {raw} Wh ({why}): meter "
                            "exchange or reset, the series is split",
                            (prev_o, s.origin),
                            prev_ts,
                            EFFECT_SPLIT,
                        )
                    )
            elif rated_max_w is not None and (raw - prev_raw) * MS_PER_HOUR > rated_max_w * dt:
                findings.append(
                    Finding(
                        POWER_ABOVE_RATED,
                        t,
                        f"{raw - prev_raw} Wh in {dt} ms is "
                        f"{(raw - prev_raw) * MS_PER_HOUR // dt} W, above the rated "
                        f"{rated_max_w} W",
                        (prev_o, s.origin),
                        prev_ts,
                        EFFECT_NONE,
                    )
                )
        ts_out.append(t)
        wh_out.append(raw + offset)
        seg_out.append(seg)
        org_out.append(s.origin)
        prev_raw, prev_ts, prev_o = raw, t, s.origin

    if power_samples:
        _frozen(out, power_samples, register_resolution_wh)
    findings.sort(key=Finding.sort_key)
    return out


def _frozen(out: Screened, power_samples: Sequence[PowerSample], resolution_wh: int) -> None:
    """V6: runs of unchanged register while every power reading in the run is positive."""
    power = sorted(power_samples, key=lambda p: (p.ts_ms, p.origin))
    pts = [p.ts_ms for p in power]
    ts, wh, seg, org = out.ts, out.wh, out.seg, out.origins
    run_start: int | None = None
    run_min: PowerSample | None = None

    def close(end: int) -> None:
        assert run_start is not None and run_min is not None
        out.findings.append(
            Finding(
                FROZEN_REGISTER,
                ts[end],
                f"register stayed at {wh[end]} Wh for {ts[end] - ts[run_start]} ms while "
                f"the meter's power was at least {run_min.w} W",
                (org[run_start], org[end], run_min.origin),
                ts[run_start],
                EFFECT_NONE,
            )
        )

    for i in range(1, len(ts)):
        frozen = False
        if wh[i] == wh[i - 1] and seg[i] == seg[i - 1]:
            lo = bisect_left(pts, ts[i - 1])
            hi = bisect_right(pts, ts[i])
            if hi > lo:
                low = min(power[lo:hi], key=lambda p: p.w)
                if low.w > 0 and low.w * (ts[i] - ts[i - 1]) > resolution_wh * MS_PER_HOUR:
                    frozen = True
                    if run_start is None:
                        run_start, run_min = i - 1, low
                    elif run_min is not None and low.w < run_min.w:
                        run_min = low
        if not frozen and run_start is not None:
            close(i - 1)
            run_start = run_min = None
    if run_start is not None:
        close(len(ts) - 1)
