"""Published settlements over HTTP (``docs/replica-api.md``, section "Settlements").

``add_routes(app, service)`` adds the routes (one line in :mod:`replica.app`). The list
(community, period, revision, root, verifications) holds no member data and needs
``read:chain``; the document (it names every member), members' channels and money,
statements and the community flows need ``read:readings``: in a small community the
per-interval totals are close to one household's curve. Every list is paged and
bounded; documents are answered byte for byte as published.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from replica.errors import Refusal
from replica.service import ReplicaService
from replica.settlements.intake import FLOW_FIELDS
from replica.settlements.store import SettlementStore

PREFIX = "/v1/settlements"
MAX_LIST = 100
"""Most settlements per page of ``GET /v1/settlements``."""
MAX_MEMBERS_PAGE = 1000
"""Most members per page of ``GET /v1/settlements/{doc}/members``."""
_HEX32 = re.compile(r"[0-9a-f]{64}")
_MEMBER = re.compile(r"[A-Za-z0-9._-]{1,128}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _limit(text: str, most: int) -> int:
    if not re.fullmatch(r"[0-9]{1,7}", text) or not 1 <= int(text) <= most:
        raise Refusal(400, "malformed", f"limit must be an integer in 1..{most}")
    return int(text)


def _doc(doc: str) -> str:
    if not _HEX32.fullmatch(doc):
        raise Refusal(400, "malformed", "the document is named by its SHA-256 "
                      "(64 lowercase hex characters, document_sha256 in the list)")
    return doc


def _member(member: str) -> str:
    if not _MEMBER.fullmatch(member):
        raise Refusal(400, "malformed", "a member id is 1-128 of A-Z a-z 0-9 . _ -")
    return member


def _missing(what: str) -> Refusal:
    return Refusal(404, "unknown-settlement", f"no such {what} is published on this replica")


def _day_bounds(day: str, tz: ZoneInfo) -> tuple[int, int]:
    if not _DAY.fullmatch(day):
        raise Refusal(400, "malformed", "day must be YYYY-MM-DD")
    try:
        d = dt.date.fromisoformat(day)
    except ValueError:
        raise Refusal(400, "malformed", f"day {day!r} is not a calendar date") from None
    lo = dt.datetime.combine(d, dt.time(), tz)
    hi = dt.datetime.combine(d + dt.timedelta(days=1), dt.time(), tz)
    return int(lo.timestamp() * 1000), int(hi.timestamp() * 1000)


def flows_json(meta: dict[str, Any], rows: list[tuple[int, ...]], per: str,
               from_ms: int, to_ms: int) -> dict[str, Any]:
    """The flows answer: rows per interval, or summed per local calendar day."""
    tz = ZoneInfo(meta["time_zone"])
    if per == "day":
        days: dict[str, list[int]] = {}
        starts: dict[str, int] = {}
        for r in rows:
            day = dt.datetime.fromtimestamp(r[0] / 1000, tz).date().isoformat()
            if day not in days:
                days[day] = [0] * len(FLOW_FIELDS)
                starts[day] = _day_bounds(day, tz)[0]
            acc = days[day]
            for i, v in enumerate(r[1:]):
                acc[i] += v
        items = [{"day": d, "start_ms": starts[d], **dict(zip(FLOW_FIELDS, v, strict=True))}
                 for d, v in days.items()]
    else:
        items = [{"start_ms": r[0], **dict(zip(FLOW_FIELDS, r[1:], strict=True))}
                 for r in rows]
    return {"document_sha256": meta["document_sha256"], "time_zone": meta["time_zone"],
            "interval_ms": meta["interval_ms"], "per": per, "unit": "Wh",
            "from_ms": from_ms, "to_ms": to_ms, "flows": items}


def add_routes(app: FastAPI, service: Callable[[], ReplicaService]) -> None:
    """Add the settlement routes over the replica's storage to ``app``."""
    tags: list[str | Enum] = ["settlements"]
    cache: dict[int, SettlementStore] = {}

    def store() -> SettlementStore:
        storage = service().storage
        s = cache.get(id(storage))
        if s is None or s.storage is not storage:
            s = cache[id(storage)] = SettlementStore(storage)
        return s

    @app.get(PREFIX, tags=tags)
    async def settlements(community: str = Query("", max_length=128),
                          after: str = Query("", max_length=400),
                          limit: str = Query(str(MAX_LIST), max_length=8)) -> dict[str, Any]:
        """Published settlements (no member data), in (community, period, revision)
        order, with the replicas their root was reproduced against; paged by ``next``."""
        n = _limit(limit, MAX_LIST)
        key = None
        if after:
            parts = after.rsplit("/", 2)
            if len(parts) != 3 or not parts[2].isdigit():
                raise Refusal(400, "malformed", "after must be the 'next' of a previous page")
            key = (parts[0], parts[1], int(parts[2]))
        rows = await run_in_threadpool(lambda: store().listing(community or None, key, n + 1))
        nxt = None
        if len(rows) > n:
            rows = rows[:n]
            last = rows[-1]
            nxt = f"{last['community']}/{last['period']}/{last['revision']}"
        return {"settlements": rows, "next": nxt}

    @app.get(f"{PREFIX}/{{doc}}/document", tags=tags)
    async def document(doc: str) -> Response:
        """The signed settlement document, byte for byte as published."""
        raw = await run_in_threadpool(store().document, _doc(doc))
        if raw is None:
            raise _missing("settlement document")
        return Response(raw, media_type="application/json", headers={
            "Content-Disposition": f'attachment; filename="settlement-{doc[:16]}.json"'})

    @app.get(f"{PREFIX}/{{doc}}/members", tags=tags)
    async def members(doc: str, after: str = Query("", max_length=128),
                      limit: str = Query(str(MAX_MEMBERS_PAGE), max_length=8)
                      ) -> dict[str, Any]:
        """Each member's channels (Wh) and money (minor units), in id order, paged."""
        n = _limit(limit, MAX_MEMBERS_PAGE)
        s = store()
        meta = await run_in_threadpool(s.meta, _doc(doc))
        if meta is None:
            raise _missing("settlement document")
        rows = await run_in_threadpool(s.members, doc, after, n + 1)
        nxt = rows[n - 1]["member"] if len(rows) > n else None
        return {"document_sha256": doc, "currency": meta["currency"], "members": rows[:n],
                "next": nxt}

    for kind, media in (("json", "application/json"), ("csv", "text/csv")):
        def statement(doc: str, member: str, kind: str = kind, media: str = media
                      ) -> Response:
            raw = store().statement(_doc(doc), _member(member), kind)
            if raw is None:
                raise _missing("member statement")
            return Response(raw, media_type=media, headers={
                "Content-Disposition":
                    f'attachment; filename="statement-{member}-{doc[:16]}.{kind}"'})

        statement.__doc__ = f"A member's statement ({kind.upper()}) as published."
        app.add_api_route(f"{PREFIX}/{{doc}}/members/{{member}}/statement.{kind}", statement,
                          methods=["GET"], tags=tags, name=f"statement_{kind}")

    @app.get(f"{PREFIX}/{{doc}}/flows", tags=tags)
    async def flows(doc: str, day: str = Query("", max_length=10),
                    per: str = Query("interval", max_length=8)) -> dict[str, Any]:
        """Community energy per interval (or per local day with ``per=day``) of the
        whole period or of one local ``day``: generation, consumption, covered (shared),
        surplus and residual grid import, in Wh."""
        if per not in ("interval", "day"):
            raise Refusal(400, "malformed", "per must be 'interval' or 'day'")
        s = store()
        meta = await run_in_threadpool(s.meta, _doc(doc))
        if meta is None:
            raise _missing("settlement document")
        lo, hi = meta["start_ms"], meta["end_ms"]
        if day:
            lo, hi = _day_bounds(day, ZoneInfo(meta["time_zone"]))
            if hi <= meta["start_ms"] or lo >= meta["end_ms"]:
                raise Refusal(400, "out-of-period", f"day {day} is outside the settled "
                              f"period {meta['period']}")
        rows = await run_in_threadpool(s.flows, doc, lo, hi)
        return flows_json(meta, rows, per, lo, hi)
