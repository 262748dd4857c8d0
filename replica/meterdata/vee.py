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

import operator
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import itemgetter

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


# Built through the slot descriptors, as intervals._new_interval does and for the same
# reason: one Origin per interval boundary is on the engine's hot path.
_O_GATEWAY, _O_HEIGHT, _O_INDEX = (
    Origin.__dict__[n].__set__ for n in ("gateway", "height", "index")
)


def new_origin(gateway: str, height: int, index: int) -> Origin:
    """``Origin(gateway, height, index)``, built about a third faster."""
    o: Origin = object.__new__(Origin)
    _O_GATEWAY(o, gateway)
    _O_HEIGHT(o, height)
    _O_INDEX(o, index)
    return o


def new_origins(
    gateway: Sequence[str], height: Sequence[int], index: Sequence[int], at: Sequence[int]
) -> list[Origin]:
    """``[Origin(gateway[i], height[i], index[i]) for i in at]``, built in bulk.

    Each field is set for all objects in one C-level ``map`` over the slot's
    descriptor, so no Python frame runs per object (about a third faster again than
    :func:`new_origin` in a loop). Equal objects: tests/meterdata/test_fastpath.py.
    """
    objs: list[Origin] = list(map(object.__new__, repeat(Origin, len(at))))
    for put, col in ((_O_GATEWAY, gateway), (_O_HEIGHT, height), (_O_INDEX, index)):
        deque(map(put, objs, map(col.__getitem__, at)), 0)
    return objs


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


#: Ledger reading quality bits the engine reads (docs/ledger-format.md section 3.1).
FLAG_CLOCK_UNSYNCED = 0x0001
FLAG_CLOCK_STEP = 0x0002
FLAG_COUNTER_RESET = 0x0008
_CLOCK_FLAGS = FLAG_CLOCK_UNSYNCED | FLAG_CLOCK_STEP


@dataclass(frozen=True, slots=True)
class RegisterColumns:
    """One register's readings as parallel columns, as a database query returns them.

    The same information as a sequence of :class:`RegisterSample`, without one object
    per reading: ``flags`` holds the ledger's quality bits (``FLAG_*``; None means all
    zero). Origins are built only for the readings that end up in a trace or finding.
    """

    ts_ms: Sequence[int]
    wh: Sequence[int]
    gateway: Sequence[str]
    height: Sequence[int]
    index: Sequence[int]
    flags: Sequence[int] | None = None

    @classmethod
    def from_samples(cls, samples: Sequence[RegisterSample]) -> RegisterColumns:
        """The columns of ``samples`` (their clock and reset fields become flag bits)."""
        return cls(
            [s.ts_ms for s in samples],
            [s.wh for s in samples],
            [s.origin.gateway for s in samples],
            [s.origin.height for s in samples],
            [s.origin.index for s in samples],
            [
                (0 if s.clock_ok else FLAG_CLOCK_UNSYNCED)
                | (FLAG_CLOCK_STEP if s.clock_step else 0)
                | (FLAG_COUNTER_RESET if s.counter_reset else 0)
                for s in samples
            ],
        )

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[int, int, str, int, int, int]]) -> RegisterColumns:
        """Columns from ``(ts_ms, wh, gateway, height, index, flags)`` rows.

        One C-level pass per column (``zip(*rows)`` would make one iterator object per
        row, and so wake the garbage collector a dozen times per month of readings).
        Raises :class:`MeterDataInputError` when a row does not have six fields.
        """
        if not rows:
            return cls([], [], [], [], [], [])
        if set(map(len, rows)) != {6}:
            raise MeterDataInputError(
                "rows", sorted(set(map(len, rows))),
                "each row must be (ts_ms, wh, gateway, height, index, flags)",
            )
        ts, wh, gw, h, ix, fl = (tuple(map(itemgetter(i), rows)) for i in range(6))
        return cls(ts, wh, gw, h, ix, fl)

    def __len__(self) -> int:
        return len(self.ts_ms)

    def origin(self, i: int) -> Origin:
        """The ledger position of reading ``i``."""
        return new_origin(self.gateway[i], self.height[i], self.index[i])


@dataclass(slots=True)
class Screened:
    """The accepted readings of one register, in strictly increasing time order.

    ``wh`` holds unwrapped register values (rollovers undone); ``seg`` numbers the
    series a reading belongs to (a new number after each meter exchange); interval
    energy is only ever the difference of two values of the same series. ``src`` is
    each accepted reading's position in ``cols``.
    """

    cols: RegisterColumns
    ts: list[int] = field(default_factory=list)
    wh: list[int] = field(default_factory=list)
    seg: list[int] = field(default_factory=list)
    src: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def origin(self, j: int) -> Origin:
        """The ledger position of accepted reading ``j``."""
        return self.cols.origin(self.src[j])


def _is_rollover(
    prev_raw: int,
    raw: int,
    dt_ms: int,
    modulus: int | None,
    rated_max_w: int | None,
    counter_reset: bool,
) -> bool:
    """A decrease ``prev_raw -> raw`` is a rollover when docs/intervals.md V4 says so."""
    if modulus is None or counter_reset:
        return False
    step = raw - prev_raw + modulus
    if step < 0:
        return False
    if rated_max_w is not None:
        return step * MS_PER_HOUR <= rated_max_w * dt_ms
    return step <= modulus // 2


def _shortcut(
    cols: RegisterColumns, flags: Sequence[int], rated_max_w: int | None
) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """The accepted readings, when the order given shows V1, V3, V4 and V5 find nothing.

    That is: one gateway, origins and timestamps strictly increasing in the order given,
    and, leaving out the readings with a clock flag (V2), the register never decreasing
    and no step above the rating. Returns the kept readings' positions, timestamps and
    values and the positions of the flagged ones, or None when any of that does not
    hold: the general path then decides. Only a shortcut: both give the same result.
    """
    ts, wh = cols.ts_ms, cols.wh
    n = len(ts)
    if n and len(set(cols.gateway)) != 1:
        return None
    if not all(map(operator.lt, ts, ts[1:])):
        return None
    h, ix = cols.height, cols.index
    if not all(map(operator.le, h, h[1:])):
        return None
    # (height, index) strictly increasing: with heights non-decreasing, each step goes
    # up in height or, at equal height, in index (booleans only: no tuple or int is
    # allocated, which keeps the garbage collector out of this pass)
    if not all(map(operator.or_, map(operator.lt, h, h[1:]), map(operator.lt, ix, ix[1:]))):
        return None
    if flags.count(0) == n:
        flagged: list[int] = []
        keep, kts, kwh = list(range(n)), list(ts), list(wh)
    else:
        doubt = list(map(operator.and_, flags, repeat(_CLOCK_FLAGS)))
        flagged = list(compress(range(n), doubt))
        trust = list(map(operator.not_, doubt))
        keep, kts, kwh = (list(compress(c, trust)) for c in (range(n), ts, wh))
    # a subsequence of a non-decreasing sequence is non-decreasing, and a step over
    # a left-out reading is no steeper than the steeper of its two parts: check all
    # readings first, the kept ones only when that fails
    for w, t in ((wh, ts), (kwh, kts)) if flagged else ((kwh, kts),):
        if _steps_ok(w, t, rated_max_w):
            return keep, kts, kwh, flagged
    return None


def _steps_ok(wh: Sequence[int], ts: Sequence[int], rated_max_w: int | None) -> bool:
    """No decrease, and (with a rating) no step above it, between consecutive readings."""
    if not all(map(operator.le, wh, wh[1:])):
        return False
    if rated_max_w is None:
        return True
    limit = rated_max_w
    return all(
        (b - a) * MS_PER_HOUR <= limit * (tb - ta)
        for a, b, ta, tb in zip(wh, wh[1:], ts, ts[1:], strict=False)
    )


def _clock_findings(cols: RegisterColumns, i: int, f: int, findings: list[Finding]) -> bool:
    """V2 for reading ``i`` with flags ``f``: record its findings; True when it may be used."""
    ok = True
    if f & FLAG_CLOCK_UNSYNCED:
        findings.append(
            Finding(
                CLOCK_UNSYNCHRONISED,
                cols.ts_ms[i],
                "the gateway's clock was not known to be synchronised",
                (cols.origin(i),),
                None,
                EFFECT_EXCLUDED,
            )
        )
        ok = False
    if f & FLAG_CLOCK_STEP:
        findings.append(
            Finding(
                CLOCK_STEP,
                cols.ts_ms[i],
                "the gateway's clock stepped since this meter's previous reading",
                (cols.origin(i),),
                None,
                EFFECT_EXCLUDED,
            )
        )
        ok = False
    return ok


def screen(
    samples: Sequence[RegisterSample] | RegisterColumns,
    *,
    rated_max_w: int | None = None,
    register_modulus: int | None = None,
    power_samples: Sequence[PowerSample] = (),
    register_resolution_wh: int = 1,
) -> Screened:
    """Validate one register's readings (any order); return the accepted ones and findings.

    Raises :class:`MeterDataInputError` when two readings carry the same origin but
    differ (two different readings under one ledger position), the columns differ in
    length, or a parameter is out of range.
    """
    if register_modulus is not None and register_modulus <= 0:
        raise MeterDataInputError("register_modulus", register_modulus, "must be positive")
    if rated_max_w is not None and rated_max_w <= 0:
        raise MeterDataInputError("rated_max_w", rated_max_w, "must be positive")
    if register_resolution_wh <= 0:
        raise MeterDataInputError(
            "register_resolution_wh", register_resolution_wh, "must be positive"
        )
    cols = (
        samples if isinstance(samples, RegisterColumns) else RegisterColumns.from_samples(samples)
    )
    n = len(cols.ts_ms)
    lengths = {len(cols.wh), len(cols.gateway), len(cols.height), len(cols.index)}
    if cols.flags is not None:
        lengths.add(len(cols.flags))
    if lengths != {n}:
        raise MeterDataInputError("columns", sorted(lengths), "must all have the same length")
    out = Screened(cols)
    findings = out.findings
    ts, wh = cols.ts_ms, cols.wh
    flags = cols.flags if cols.flags is not None else [0] * n
    short = _shortcut(cols, flags, rated_max_w)
    if short is not None:
        # the common case, decided in C-speed passes: nothing but clock flags to find
        out.src, out.ts, out.wh, flagged = short
        out.seg = [0] * len(out.ts)
        for i in flagged:
            _clock_findings(cols, i, flags[i], findings)
        if power_samples:
            _frozen(out, power_samples, register_resolution_wh)
        findings.sort(key=Finding.sort_key)
        return out

    # V1/V2: ledger order per gateway; flagged clocks. Input order does not matter.
    keys = list(zip(cols.gateway, cols.height, cols.index, strict=True))
    order = sorted(range(n), key=keys.__getitem__)
    kept: list[int] = []
    prev = -1
    for i in order:
        k = keys[i]
        f = flags[i]
        ok = True
        if prev >= 0 and keys[prev][0] == k[0]:
            if keys[prev] == k:
                if (ts[prev], wh[prev], flags[prev]) != (ts[i], wh[i], f):
                    raise MeterDataInputError(
                        "samples", cols.origin(i), "two different readings carry the same origin"
                    )
                continue  # the same reading passed twice
            if ts[i] <= ts[prev]:
                findings.append(
                    Finding(
                        TIME_BACKWARDS,
                        ts[i],
                        f"timestamp {ts[i]} is not after {ts[prev]}, the timestamp of "
                        "the gateway's previous reading of this register",
                        (cols.origin(i), cols.origin(prev)),
                        ts[prev],
                        EFFECT_EXCLUDED,
                    )
                )
                ok = False
        prev = i
        if f & _CLOCK_FLAGS and not _clock_findings(cols, i, f, findings):
            ok = False
        if ok:
            kept.append(i)

    # V3: one reading per instant. Stable sort keeps origin order among equal times.
    kept.sort(key=ts.__getitem__)
    accepted: list[int] = []
    j, m = 0, len(kept)
    while j < m:
        i = kept[j]
        t = ts[i]
        e = j + 1
        while e < m and ts[kept[e]] == t:
            e += 1
        if e - j == 1:
            accepted.append(i)
        else:
            group = kept[j:e]
            if all(wh[g] == wh[i] for g in group):
                accepted.append(i)
            else:
                findings.append(
                    Finding(
                        CONFLICTING_READINGS,
                        t,
                        "readings at the same instant disagree: "
                        + ", ".join(str(wh[g]) for g in group)
                        + " Wh",
                        tuple(cols.origin(g) for g in group),
                        None,
                        EFFECT_EXCLUDED,
                    )
                )
        j = e

    # V4/V5: decreases (rollover or exchange), power above rated.
    ts_out, wh_out, seg_out, src_out = out.ts, out.wh, out.seg, out.src
    offset = 0
    seg = 0
    prev = -1
    for i in accepted:
        raw = wh[i]
        t = ts[i]
        if prev >= 0:
            prev_raw = wh[prev]
            prev_ts = ts[prev]
            dt = t - prev_ts
            if raw < prev_raw:
                if _is_rollover(
                    prev_raw,
                    raw,
                    dt,
                    register_modulus,
                    rated_max_w,
                    bool(flags[i] & FLAG_COUNTER_RESET),
                ):
                    assert register_modulus is not None
                    offset += register_modulus
                    findings.append(
                        Finding(
                            REGISTER_DECREASE,
                            t,
                            f"register fell from {prev_raw} to {raw} Wh: rollover at modulus "
                            f"{register_modulus}, step {raw - prev_raw + register_modulus} Wh",
                            (cols.origin(prev), cols.origin(i)),
                            prev_ts,
                            EFFECT_UNWRAPPED,
                        )
                    )
                else:
                    seg += 1
                    offset = 0
                    why = (
                        "the meter reported a counter reset"
                        if flags[i] & FLAG_COUNTER_RESET
                        else "no register modulus is configured"
                        if register_modulus is None
                        else f"not a plausible rollover at modulus {register_modulus}"
                    )
                    findings.append(
                        Finding(
                            REGISTER_DECREASE,
                            t,
                            f"register fell from {prev_raw} to {raw} Wh ({why}): meter "
                            "exchange or reset, the series is split",
                            (cols.origin(prev), cols.origin(i)),
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
                        (cols.origin(prev), cols.origin(i)),
                        prev_ts,
                        EFFECT_NONE,
                    )
                )
        ts_out.append(t)
        wh_out.append(raw + offset)
        seg_out.append(seg)
        src_out.append(i)
        prev = i

    if power_samples:
        _frozen(out, power_samples, register_resolution_wh)
    findings.sort(key=Finding.sort_key)
    return out


def _frozen(out: Screened, power_samples: Sequence[PowerSample], resolution_wh: int) -> None:
    """V6: runs of unchanged register while every power reading in the run is positive."""
    power = sorted(power_samples, key=lambda p: (p.ts_ms, p.origin))
    pts = [p.ts_ms for p in power]
    ts, wh, seg = out.ts, out.wh, out.seg
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
                (out.origin(run_start), out.origin(end), run_min.origin),
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
