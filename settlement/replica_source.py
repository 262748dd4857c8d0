"""Interval energy from a replica's meter-data HTTP API: the settlement's data source.

The only module of the settlement that reaches the replica, and only over its public
HTTP API (``docs/replica-api.md``, "Meter data"): per metering point of the
community, ``GET /v1/meterdata/intervals?point=P&from=&to=&interval=&tz=UTC&traces=true``
(consumption points read the ``import`` series, generation points ``export``), and
per gateway that the traces name, ``GET /v1/gateways/{gw}/blocks/{h}/hash`` of the
newest block used. The answers become the settlement's input document
(:class:`~settlement.source.IntervalData`): Wh and quality per interval, and per
gateway the height range and head hash of the blocks the intervals came from.

The API token (scope ``read:readings``) is sent as a bearer token and never appears
in an error message.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from settlement.config import Community
from settlement.errors import InputError
from settlement.period import Period
from settlement.source import IntervalData, Origin, Source

QUALITIES = {"measured": 0, "substituted": 1, "estimated": 2, "missing": 3}
"""The replica's quality names -> the input's quality ranks (``M S E X``)."""
INTERVALS = {15: "15m", 30: "30m", 60: "1h"}
"""Interval lengths the replica serves (minutes -> its ``interval`` parameter)."""
TIMEOUT_S = 60.0

Getter = Callable[[str, Mapping[str, str]], Any]
"""``get(path, params)`` -> the decoded JSON answer, or raises :class:`InputError`."""


def _series(doc: Any, point: str, direction: str) -> list[Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("series"), list):
        raise InputError(f"replica answer for metering point {point} has no series")
    found = [s for s in doc["series"] if isinstance(s, dict) and s.get("point") == point
             and s.get("direction") == direction]
    if not found:
        raise InputError(f"the replica has no {direction} series for metering point {point}"
                         " (is a meter with that register assigned to it?)")
    intervals = found[0].get("intervals")
    if not isinstance(intervals, list):
        raise InputError(f"replica series of {point} has no intervals")
    return intervals


def collect(c: Community, period: Period, get: Getter) -> IntervalData:
    """Ask the replica (through ``get``) for every point of ``c`` over ``period``.

    Raises:
        InputError: an interval length the replica does not serve, a point or series
            the replica does not know, or a malformed answer.
    """
    if c.interval_minutes not in INTERVALS:
        raise InputError(f"the replica serves intervals of {sorted(INTERVALS)} minutes, "
                         f"the community settles {c.interval_minutes}")
    points: dict[str, dict[int, tuple[int, int]]] = {}
    shared: dict[tuple[int, int], tuple[int, int]] = {}  # one tuple per distinct value
    traces: dict[str, dict[int, tuple[Origin, ...]]] = {}
    heights: dict[str, tuple[int, int]] = {}
    for m in sorted(c.members, key=lambda m: m.id):
        for kind, direction in (("consumption", "import"), ("generation", "export")):
            for point in getattr(m, kind):
                params = {"point": point, "from": str(period.start_ms),
                          "to": str(period.end_ms), "interval": INTERVALS[c.interval_minutes],
                          "tz": "UTC", "traces": "true"}
                got: dict[int, tuple[int, int]] = {}
                origins: dict[int, tuple[Origin, ...]] = {}
                for iv in _series(get("/v1/meterdata/intervals", params), point, direction):
                    try:
                        start, wh, quality = iv["start_ms"], iv["wh"], QUALITIES[iv["quality"]]
                        trace = list(iv.get("start_trace", [])) + list(iv.get("end_trace", []))
                    except (KeyError, TypeError):
                        raise InputError(f"malformed interval in the replica's answer for "
                                         f"{point}: {str(iv)[:200]}") from None
                    if not isinstance(start, int) or not (wh is None or isinstance(wh, int)):
                        raise InputError(f"malformed interval for {point}: {str(iv)[:200]}")
                    value = (0, 3) if wh is None else (wh, quality)
                    got[start] = shared.setdefault(value, value)
                    named = []
                    for o in trace:
                        gw, h, i = o.get("gateway"), o.get("height"), o.get("index")
                        if isinstance(gw, str) and isinstance(h, int) and isinstance(i, int):
                            lo, hi = heights.get(gw, (h, h))
                            heights[gw] = (min(lo, h), max(hi, h))
                            named.append((gw, h, i))
                    if named:
                        origins[start] = tuple(named)
                points[point] = got
                if origins:
                    traces[point] = origins
    sources = []
    for gw, (lo, hi) in sorted(heights.items()):
        answer = get(f"/v1/gateways/{gw}/blocks/{hi}/hash", {})
        head = answer.get("hash") if isinstance(answer, dict) else None
        if not isinstance(head, str):
            raise InputError(f"replica gave no hash for block {hi} of gateway {gw}")
        sources.append(Source(gw, lo, hi, head))
    return IntervalData(c.interval_ms, points, tuple(sources), (), traces)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def http_getter(base_url: str, token: str | None, *, timeout_s: float = TIMEOUT_S) -> Getter:
    """A getter over HTTP(S) with httpx (the ``replica`` extra).

    Raises (when called):
        InputError: the replica cannot be reached or refuses (status and its error
            code, never the token).
    """
    import httpx

    parts = urlsplit(base_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InputError(f"--replica must be an https:// URL, got {base_url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise InputError("plain http:// is allowed only to a loopback address (the token and "
                         f"the readings would travel in clear); use https://, got {base_url!r}")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def get(path: str, params: Mapping[str, str]) -> Any:
        try:
            r = client.get(path, params=dict(params))
        except httpx.HTTPError as exc:
            raise InputError(f"cannot reach the replica at {base_url}: "
                             f"{type(exc).__name__}: {exc}") from None
        if r.status_code != 200:
            try:
                body = r.json()
                why = f"{body.get('error')}: {body.get('detail')}"
            except (ValueError, AttributeError):
                why = r.text[:200]
            raise InputError(f"replica {base_url} answered {r.status_code} to GET {path}: "
                             f"{why}")
        try:
            return r.json()
        except ValueError:
            raise InputError(f"replica {base_url} answered GET {path} with no JSON") from None

    return get


def member_readings(points: tuple[str, ...], data: IntervalData, get: Getter,
                    starts: set[int] | None = None) -> dict[str, Any]:
    """The traces of ``points`` in ``data`` and the replica's inclusion proof of every
    reading they name (``GET /v1/gateways/{gw}/proof?height=&index=``), as a member
    proof's ``readings`` (:mod:`settlement.proof`); with ``starts``, only for the
    intervals starting then.

    Raises:
        InputError: ``data`` has no traces for a point, or the replica refuses.
    """
    traces: dict[str, list[Any]] = {}
    origins: set[Origin] = set()
    for point in points:
        rows = data.traces.get(point)
        if not rows:
            raise InputError(f"the input has no traces for metering point {point} (settle "
                             "from a replica to record them)")
        chosen = {t: o for t, o in rows.items() if starts is None or t in starts}
        traces[point] = [[t, [f"{g}:{h}:{i}" for g, h, i in o]]
                         for t, o in sorted(chosen.items())]
        for o in chosen.values():
            origins.update(o)
    proofs = {f"{g}:{h}:{i}": get(f"/v1/gateways/{g}/proof",
                                  {"height": str(h), "index": str(i)})
              for g, h, i in sorted(origins)}
    return {"traces": traces, "proofs": proofs}
