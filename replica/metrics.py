"""``GET /metrics`` of the replica: Prometheus text exposition for the utility's alerting.

:func:`install` adds the route and a small ASGI middleware to an app (one line in
:func:`replica.app.create_app`). Families:

- ``meterchain_replica_requests_total{route, outcome}``: pushes (``route="push"``) and
  reads answered, by outcome: ``ok`` or the refusal's error code (``unknown-gateway``,
  ``gap``, ``fork``, ``rate-limited``, ``too-large``, ...), the same codes as the JSON
  refusals; ``meterchain_replica_refusals_total{reason}`` counts every refused request
  by that code.
- ``meterchain_replica_blocks_stored_total`` and ``..._readings_stored_total``: what
  this process stored since it started.
- ``meterchain_replica_forks``: fork evidence recorded (per gateway and in total).
- per enrolled gateway (``gateway`` = key hex, ``name``): ``..._gateway_height``,
  ``..._gateway_last_stored_timestamp_seconds`` (when the replica last stored a block
  from it), ``..._gateway_last_stored_age_seconds`` (how long ago: alert on a silent
  gateway) and ``..._gateway_head_time_seconds`` (the end of the head block's interval,
  the meter data's own time).

Counters are per process (each uvicorn worker counts its own requests, as Prometheus
clients do); the gateway and fork figures come from the database and agree across
workers. The route is as public as the config makes it (see docs/replica-api.md).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger import Header
from replica.service import ReplicaService

PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_CAPTURED_BYTES = 4096
"""A refusal's JSON body is read up to this many bytes to find its error code."""
_CODE = re.compile(r"[a-z][a-z0-9-]{0,40}")
_PUSH = re.compile(r"^/v1/gateways/[^/]+/blocks$")


def route_of(method: str, path: str) -> str:
    """A bounded route label: ``push`` for block pushes, ``metrics``, else ``read`` for
    the API's reads and ``other`` for anything else (no path parameter becomes a label)."""
    if method == "POST" and _PUSH.match(path):
        return "push"
    if path == PATH:
        return "metrics"
    return "read" if path.startswith("/v1/") else "other"


class RequestCounts:
    """Requests by (route, outcome) and refusals by reason, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}
        self.refusals: dict[str, int] = {}

    def count(self, route: str, status: int, code: str | None) -> None:
        outcome = "ok" if status < 400 else (code or f"http-{status}")
        with self._lock:
            self.requests[(route, outcome)] = self.requests.get((route, outcome), 0) + 1
            if status >= 400:
                self.refusals[outcome] = self.refusals.get(outcome, 0) + 1


def _error_code(body: bytes) -> str | None:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    code = doc.get("error") if isinstance(doc, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else None


class CountRequests:
    """ASGI middleware: after each HTTP response, count it by route and outcome (the
    error code of a JSON refusal, read from the first bytes of its body)."""

    def __init__(self, app: ASGIApp, counts: RequestCounts) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        body = bytearray()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and status >= 400:
                room = MAX_CAPTURED_BYTES - len(body)
                if room > 0:
                    body.extend(message.get("body", b"")[:room])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if status:
                code = _error_code(bytes(body)) if status >= 400 else None
                self.counts.count(route_of(scope["method"], scope["path"]), status, code)


class ReplicaCollector(Collector):
    """Yields the families of the module docstring from the service and the counts."""

    def __init__(self, service: Callable[[], ReplicaService], counts: RequestCounts,
                 clock_s: Callable[[], float] = time.time) -> None:
        self.service = service
        self.counts = counts
        self.clock_s = clock_s

    def collect(self) -> Iterator[Metric]:
        svc = self.service()
        now = self.clock_s()
        req = CounterMetricFamily("meterchain_replica_requests",
                                  "Requests answered, by route and outcome (ok or the "
                                  "refusal's error code).", labels=["route", "outcome"])
        for (route, outcome), n in sorted(self.counts.requests.items()):
            req.add_metric([route, outcome], n)
        yield req
        ref = CounterMetricFamily("meterchain_replica_refusals",
                                  "Refused requests by reason (the JSON error code).",
                                  labels=["reason"])
        for reason, n in sorted(self.counts.refusals.items()):
            ref.add_metric([reason], n)
        yield ref
        yield CounterMetricFamily("meterchain_replica_blocks_stored",
                                  "Blocks verified and stored by this process.",
                                  value=svc.stored.blocks)
        yield CounterMetricFamily("meterchain_replica_readings_stored",
                                  "Readings in the blocks stored by this process.",
                                  value=svc.stored.readings)
        forks = svc.storage.forks()
        yield GaugeMetricFamily("meterchain_replica_forks",
                                "Fork evidence recorded (two signed blocks at one height).",
                                value=len(forks))
        gateways = svc.storage.gateways()
        per_gw: dict[bytes, int] = {}
        for f in forks:
            per_gw[f.key] = per_gw.get(f.key, 0) + 1
        labels = ["gateway", "name"]
        height = GaugeMetricFamily("meterchain_replica_gateway_height",
                                   "Height of the gateway's stored head (-1: none).",
                                   labels=labels)
        gw_forks = GaugeMetricFamily("meterchain_replica_gateway_forks",
                                     "Fork evidence recorded for the gateway.", labels=labels)
        seen = GaugeMetricFamily("meterchain_replica_gateway_last_stored_timestamp_seconds",
                                 "When the replica last stored a block from the gateway "
                                 "(NaN: never).", labels=labels)
        age = GaugeMetricFamily("meterchain_replica_gateway_last_stored_age_seconds",
                                "Seconds since the replica last stored a block from the "
                                "gateway (NaN: never): alert on a silent gateway.",
                                labels=labels)
        head_time = GaugeMetricFamily("meterchain_replica_gateway_head_time_seconds",
                                      "End of the head block's interval, by the gateway's "
                                      "clock (NaN: no block).", labels=labels)
        revoked = GaugeMetricFamily("meterchain_replica_gateway_revoked",
                                    "1 if the gateway's key is revoked.", labels=labels)
        for g in gateways:
            lab = [g.key.hex(), g.name]
            height.add_metric(lab, g.height)
            gw_forks.add_metric(lab, per_gw.get(g.key, 0))
            last = g.last_seen_ms / 1000.0 if g.last_seen_ms is not None else float("nan")
            seen.add_metric(lab, last)
            age.add_metric(lab, max(0.0, now - last) if g.last_seen_ms is not None
                           else float("nan"))
            end = (Header.decode(g.head_header).time_end_ms / 1000.0
                   if g.head_header is not None else float("nan"))
            head_time.add_metric(lab, end)
            revoked.add_metric(lab, 1 if g.revoked_at_ms is not None else 0)
        yield from (height, gw_forks, seen, age, head_time, revoked)


def install(app: Any, service: Callable[[], ReplicaService]) -> None:
    """Add ``GET /metrics`` and the request-counting middleware to ``app``."""
    counts = RequestCounts()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReplicaCollector(service, counts))
    app.add_middleware(CountRequests, counts=counts)

    @app.get(PATH, include_in_schema=False)
    async def metrics(_request: Request) -> Response:
        """Prometheus text exposition (format 0.0.4)."""
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE)
