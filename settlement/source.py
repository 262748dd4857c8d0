"""The input protocol of a settlement run: interval energy per metering point.

A settlement never reads meters or blocks itself; it takes interval energy, as the
replica derives it from signed readings, in one JSON document (the replica adapter
produces it, tests and benchmarks write it)::

    {"type": "meterchain-intervals", "version": 1, "interval_ms": 900000,
     "sources": [{"gateway": HEX64, "first_height": 0, "last_height": 95,
                  "head_hash": HEX64}],
     "points": {"AT001": [[start_ms, wh, "M"], ...], ...},
     "orders": [{"start_ms": T, "member": "anna", "side": "bid", "wh": 500,
                 "price": 15000}, ...],
     "traces": {"AT001": [[start_ms, [[HEX64, height, index], ...]], ...]}}

Quality letters: ``M`` measured, ``S`` substituted, ``E`` estimated, ``X`` missing.
An interval absent from a point's list counts as missing (0 Wh, ``X``). ``orders``
(optional) are a market's bids and offers; without them orders follow measurement.
``traces`` (optional) name, per point and interval, the signed readings (gateway,
block height, reading index) behind the interval's boundaries; member proofs prove
them. Traces are not part of what a settlement commits to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from settlement.errors import InputError

TYPE = "meterchain-intervals"
VERSION = 1
QUALITY_LETTERS = "MSEX"
"""Quality codes by rank: a line carries the worst (highest) of its inputs."""
MEASURED, MISSING = 0, 3
MAX_WH = 10**12


@dataclass(frozen=True)
class Source:
    """The blocks of one gateway that the interval energy was derived from."""

    gateway: str
    first_height: int
    last_height: int
    head_hash: str

    def as_json(self) -> dict[str, Any]:
        return {"gateway": self.gateway, "first_height": self.first_height,
                "last_height": self.last_height, "head_hash": self.head_hash}


@dataclass(frozen=True)
class MarketOrder:
    """One bid or offer of ``member`` for the interval starting at ``start_ms``."""

    start_ms: int
    member: str
    side: str
    wh: int
    price: int


Origin = tuple[str, int, int]
"""A signed reading: (gateway key hex, block height, reading index)."""


@dataclass(frozen=True)
class IntervalData:
    """Interval energy: point -> start_ms -> (Wh, quality rank); optional traces."""

    interval_ms: int
    points: Mapping[str, Mapping[int, tuple[int, int]]]
    sources: tuple[Source, ...] = ()
    orders: tuple[MarketOrder, ...] = field(default=())
    traces: Mapping[str, Mapping[int, tuple[Origin, ...]]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The input document (canonical order: points and intervals sorted)."""
        doc: dict[str, Any] = {
            "type": TYPE, "version": VERSION, "interval_ms": self.interval_ms,
            "sources": [s.as_json() for s in self.sources],
            "points": {p: [[t, wh, QUALITY_LETTERS[q]] for t, (wh, q) in sorted(v.items())]
                       for p, v in sorted(self.points.items())},
        }
        if self.orders:
            doc["orders"] = [{"start_ms": o.start_ms, "member": o.member, "side": o.side,
                              "wh": o.wh, "price": o.price} for o in self.orders]
        if self.traces:
            doc["traces"] = {p: [[t, [list(o) for o in origins]]
                                 for t, origins in sorted(v.items())]
                             for p, v in sorted(self.traces.items())}
        return doc


def _int(v: Any, lo: int, hi: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InputError(f"{what}: must be an integer {lo}..{hi}, got {v!r}")
    return v


def _hex64(v: Any, what: str) -> str:
    if not isinstance(v, str) or len(v) != 64 or v.strip("0123456789abcdef"):
        raise InputError(f"{what}: must be 64 lowercase hex characters, got {v!r}")
    return v


def parse_intervals(doc: Any) -> IntervalData:
    """Validate an input document.

    Raises:
        InputError: naming the first bad field (point, interval, order).
    """
    if not isinstance(doc, dict) or doc.get("type") != TYPE:
        raise InputError(f"not an interval energy document (type must be {TYPE!r})")
    if doc.get("version") != VERSION:
        raise InputError(f"unsupported interval document version {doc.get('version')!r}")
    interval_ms = _int(doc.get("interval_ms"), 60_000, 86_400_000, "interval_ms")
    sources = []
    for i, s in enumerate(doc.get("sources", [])):
        if not isinstance(s, dict):
            raise InputError(f"sources[{i}]: must be an object")
        first = _int(s.get("first_height"), 0, 2**63 - 1, f"sources[{i}].first_height")
        last = _int(s.get("last_height"), first, 2**63 - 1, f"sources[{i}].last_height")
        sources.append(Source(_hex64(s.get("gateway"), f"sources[{i}].gateway"), first, last,
                              _hex64(s.get("head_hash"), f"sources[{i}].head_hash")))
    raw_points = doc.get("points")
    if not isinstance(raw_points, dict):
        raise InputError("points: must be an object of metering point -> intervals")
    points: dict[str, dict[int, tuple[int, int]]] = {}
    shared: dict[tuple[int, int], tuple[int, int]] = {}  # one tuple per distinct value
    for point, rows in raw_points.items():
        if not isinstance(rows, list):
            raise InputError(f"points.{point}: must be an array of [start_ms, wh, quality]")
        got: dict[int, tuple[int, int]] = {}
        for k, row in enumerate(rows):
            where = f"points.{point}[{k}]"
            if not isinstance(row, list) or len(row) != 3:
                raise InputError(f"{where}: must be [start_ms, wh, quality]")
            t = _int(row[0], 0, 2**63 - 1, f"{where} start_ms")
            wh = _int(row[1], 0, MAX_WH, f"{where} wh")
            if not isinstance(row[2], str) or row[2] not in QUALITY_LETTERS or len(row[2]) != 1:
                raise InputError(f"{where}: quality must be one of M, S, E, X, got {row[2]!r}")
            if t % interval_ms:
                raise InputError(f"{where}: start {t} is not on the {interval_ms} ms grid")
            if t in got:
                raise InputError(f"{where}: interval {t} given twice")
            value = (wh, QUALITY_LETTERS.index(row[2]))
            got[t] = shared.setdefault(value, value)
        points[point] = got
    orders = []
    for i, o in enumerate(doc.get("orders", [])):
        if not isinstance(o, dict) or o.get("side") not in ("bid", "offer") or not isinstance(
                o.get("member"), str):
            raise InputError(f"orders[{i}]: needs start_ms, member, side (bid or offer), "
                             "wh, price")
        orders.append(MarketOrder(_int(o.get("start_ms"), 0, 2**63 - 1, f"orders[{i}].start_ms"),
                                  o["member"], o["side"],
                                  _int(o.get("wh"), 0, MAX_WH, f"orders[{i}].wh"),
                                  _int(o.get("price"), 0, 10**9, f"orders[{i}].price")))
    traces: dict[str, dict[int, tuple[Origin, ...]]] = {}
    raw_traces = doc.get("traces", {})
    if not isinstance(raw_traces, dict):
        raise InputError("traces: must be an object of metering point -> intervals")
    for point, rows in raw_traces.items():
        got_t: dict[int, tuple[Origin, ...]] = {}
        for k, row in enumerate(rows if isinstance(rows, list) else [None]):
            where = f"traces.{point}[{k}]"
            if not isinstance(row, list) or len(row) != 2 or not isinstance(row[1], list):
                raise InputError(f"{where}: must be [start_ms, [[gateway, height, index], ...]]")
            origins = []
            for o in row[1]:
                if not isinstance(o, list) or len(o) != 3:
                    raise InputError(f"{where}: an origin must be [gateway, height, index]")
                origins.append((_hex64(o[0], f"{where} gateway"),
                                _int(o[1], 0, 2**63 - 1, f"{where} height"),
                                _int(o[2], 0, 65_535, f"{where} index")))
            got_t[_int(row[0], 0, 2**63 - 1, f"{where} start_ms")] = tuple(origins)
        traces[point] = got_t
    return IntervalData(interval_ms, points, tuple(sources), tuple(orders), traces)


def load_intervals(path: str) -> IntervalData:
    """Read an input document from a file.

    Raises:
        InputError: not JSON, or not a valid document.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not JSON: {exc}") from None
    return parse_intervals(doc)
