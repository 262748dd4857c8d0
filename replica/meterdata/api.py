"""Meter data over HTTP: metering points, interval energy, raw readings, gateway status.

``add_routes(app, service)`` adds the routes to the app (one line in :mod:`replica.app`;
they are added to the app itself, not through an included router, so the access table's
middleware and the unknown-parameter check see plain routes). Every route here serves
personal data and needs the ``read:readings`` scope (:data:`SCOPE`; the rows of
``replica.auth.ROUTES``). Gateways are named by name or key, times by ISO 8601 or
milliseconds; unknown query parameters are refused (400). docs/replica-api.md ("Meter
data") is the contract.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from replica.errors import Refusal
from replica.meterdata import calendar
from replica.meterdata.errors import MeterDataInputError
from replica.meterdata.indexer import catch_up
from replica.meterdata.listing import registry_json
from replica.meterdata.query import (
    CSV_COLUMNS,
    MeterData,
    csv_rows,
    input_error,
    parse_request,
    resolve_gateway,
    series_json,
)
from replica.meterdata.readings import check_readings_query, readings_export
from replica.meterdata.status import parse_duration, status_json
from replica.queryparams import reject_unknown_query
from replica.service import ReplicaService

SCOPE = "read:readings"
"""The scope every meter-data route needs: readings and intervals are personal data."""

PREFIX = "/v1/meterdata"


def meterdata_for(service: ReplicaService) -> MeterData:
    """The service's meter data (index kept by the service, engine, registry)."""
    return MeterData(service.storage, service.utility_sk, service.index.store)


def add_routes(app: FastAPI, service: Callable[[], ReplicaService]) -> None:
    """Add the meter-data routes over the replica's service to ``app``."""
    deps = [Depends(reject_unknown_query)]
    tags: list[str | Enum] = ["meter data"]

    @app.get(f"{PREFIX}/points", dependencies=deps, tags=tags)
    def points() -> dict[str, Any]:
        """Metering points with their meters over time, and meters seen but unassigned."""
        md = meterdata_for(service())
        return registry_json(md)

    @app.get(f"{PREFIX}/intervals", response_model=None, dependencies=deps, tags=tags)
    def intervals(
        gateway: str | None = Query(None, max_length=200),
        meter: str | None = Query(None, max_length=200),
        member: str | None = Query(None, max_length=200),
        point: str | None = Query(None, max_length=200),
        from_: str = Query(..., alias="from", max_length=64),
        to: str = Query(..., max_length=64),
        interval: str = Query("15m", max_length=16),
        tz: str = Query(calendar.DEFAULT_TZ, max_length=64),
        traces: bool = Query(False),
        format: str = Query("json", pattern="^(json|csv)$"),
    ) -> Response:
        """Energy per interval in Wh, per metering point and direction, quality-marked."""
        md = meterdata_for(service())
        req = parse_request(from_, to, interval, tz)
        targets = md.targets(gateway=gateway, meter=meter, member=member, point=point,
                             start_ms=req.start_ms, end_ms=req.end_ms)
        for key in {s.gateway.key for t in targets for s in t.sources}:
            catch_up(md.storage, md.store, key, md.utility_sk)
        series = [s for t in targets for s in md.series(t, req)]
        if format == "csv":
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(CSV_COLUMNS)
            w.writerows(csv_rows(series, req, traces=traces))
            return Response(buf.getvalue(), media_type="text/csv")
        return JSONResponse({
            "from_ms": req.start_ms, "to_ms": req.end_ms, "interval_ms": req.interval_ms,
            "interval": req.aggregate or interval, "tz": req.tz.key, "unit": "Wh",
            "series": [series_json(s, req, traces=traces) for s in series],
        })

    @app.get(f"{PREFIX}/readings.csv", response_class=StreamingResponse, dependencies=deps,
             tags=tags)
    def readings(
        gateway: str = Query(..., max_length=200),
        meter: Annotated[list[str] | None, Query()] = None,
        register: Annotated[list[str] | None, Query()] = None,
        from_: str = Query("0", alias="from", max_length=64),
        to: str = Query(str(2**63 - 1), max_length=64),
        tz: str = Query(calendar.DEFAULT_TZ, max_length=64),
    ) -> Response:
        """Raw readings of one gateway as CSV, filtered by meter and register."""
        svc = service()
        rec = resolve_gateway(svc.storage, gateway)
        try:
            zone = calendar.zone(tz)
            start, end = calendar.parse_range(from_, to, zone)
        except MeterDataInputError as exc:
            raise input_error(exc) from None
        filt = check_readings_query(svc.storage, rec, start, end, svc.utility_sk,
                                    meter or [], register or [])
        export = readings_export(svc.storage, rec, start, end, svc.utility_sk, filt)
        return StreamingResponse(export.chunks(), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{rec.key.hex()}.csv"'})

    @app.get(f"{PREFIX}/gateways", dependencies=deps, tags=tags)
    async def gateways(silent_after: str = Query("1h", max_length=16),
                       behind_after: str = Query("1h", max_length=16)) -> dict[str, Any]:
        """Every gateway's last push and newest reading, and which are silent or behind."""
        svc = service()
        try:
            silent = parse_duration(silent_after, "silent_after")
            behind = parse_duration(behind_after, "behind_after")
        except MeterDataInputError as exc:
            raise input_error(exc) from None
        md = meterdata_for(svc)
        return await run_in_threadpool(status_json, md, svc.clock_ms(), silent, behind)


__all__ = ["PREFIX", "SCOPE", "Refusal", "add_routes"]
