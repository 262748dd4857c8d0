"""The replica's HTTP API (protocol v1, ``docs/replica-api.md``) as a FastAPI app.

:func:`create_app` builds the app over a config (and optionally an open storage);
:func:`app_from_env` is the factory uvicorn workers call (the config path is in
``MC_REPLICA_CONFIG``). The handlers only move bytes: :mod:`replica.service` decides.
Every refusal is JSON ``{"error": code, "detail": sentence, ...}`` with a 4xx status.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

import keyfiles as keys
from replica.access import AccessControl
from replica.config import ReplicaConfig, load_config
from replica.csvexport import MAX_LISTED, build_export, check_exportable
from replica.disconnects import DisconnectLog, client_gone
from replica.errors import Refusal, ReplicaStoreError
from replica.facts import install_facts
from replica.intake import BodyBudget, client_address, received_body
from replica.meterdata.api import add_routes as add_meterdata_routes
from replica.queryparams import parse_time_param, reject_unknown_query
from replica.service import ReplicaService, head_json
from replica.settlements.api import add_routes as add_settlement_routes
from replica.storage.base import Storage, open_storage

log = logging.getLogger("replica")

CONFIG_ENV = "MC_REPLICA_CONFIG"
API_PREFIX = "/v1"


def _version() -> str:
    try:
        return version("meterchain")
    except PackageNotFoundError:
        return "0+unknown"


# --- documented shapes (OpenAPI only; handlers return plain JSON) ---------------------


class HeadModel(BaseModel):
    height: int
    hash: str | None


class PushBody(BaseModel):
    blocks: list[str]


class PushOk(BaseModel):
    head: HeadModel | None
    stored: int
    duplicates: int


class RefusalModel(BaseModel):
    error: str
    detail: str
    head: HeadModel | None = None
    height: int | None = None
    expected_height: int | None = None
    index: int | None = None


class BlocksModel(BaseModel):
    blocks: list[str]


class GatewayModel(BaseModel):
    key: str
    name: str
    site: str | None
    height: int
    head_hash: str | None
    last_seen_ms: int | None
    revoked_at_ms: int | None
    enrolled_ms: int
    last_reading_ms: int | None


class GatewaysModel(BaseModel):
    gateways: list[GatewayModel]


class SignedHeaderModel(BaseModel):
    header: str
    signature: str


class ForkModel(BaseModel):
    key: str
    height: int
    a: SignedHeaderModel
    b: SignedHeaderModel
    seen_ms: int


class ForksModel(BaseModel):
    forks: list[ForkModel]
    next: str | None
    total: int
    dropped: int


_REFUSALS: dict[int | str, dict[str, Any]] = {
    s: {"model": RefusalModel} for s in (400, 401, 403, 404, 408, 409, 413, 422, 429, 503, 507)
}

_PUSH_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PushBody.model_json_schema()}},
    }
}


def refusal_response(exc: Refusal) -> JSONResponse:
    """The JSON response for a refusal (with ``Retry-After`` when rate limited)."""
    body: dict[str, Any] = {"error": exc.code, "detail": exc.detail}
    headers = {}
    for k, v in exc.extra.items():
        if k == "retry_after":
            headers["Retry-After"] = str(max(1, int(float(str(v)) + 0.999)))
        elif k == "close":  # refused before the body was read: do not wait for it
            headers["Connection"] = "close"
        else:
            body[k] = v
    return JSONResponse(body, status_code=exc.status, headers=headers)


_DIGITS = re.compile(r"[0-9]{1,19}")


def query_int(name: str, text: str) -> int:
    """A query or path integer: decimal digits only, 0..2**63-1 (no sign, dot, ``_``).

    Raises:
        Refusal: 400 ``malformed`` otherwise.
    """
    if not _DIGITS.fullmatch(text) or int(text) > 2**63 - 1:
        raise Refusal(400, "malformed", f"{name} must be an integer in 0..2**63-1 written "
                      f"in decimal digits, got {text[:40]!r}")
    return int(text)


def create_app(config: ReplicaConfig, storage: Storage | None = None) -> FastAPI:
    """Build the replica app. Storage is opened at startup unless given (and then not closed).

    Raises:
        KeyFileError: the configured utility secret key cannot be read.
    """
    utility_sk = (keys.load_utility_secret(config.utility_secret_key)
                  if config.utility_secret_key is not None else None)
    state: dict[str, ReplicaService] = {}
    budget = BodyBudget(config.limits.max_inflight_body_bytes,
                        config.limits.max_inflight_body_bytes_per_client)
    if storage is not None:
        state["service"] = ReplicaService(storage, config.limits, utility_sk=utility_sk)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        opened = None
        if "service" not in state:
            opened = await run_in_threadpool(open_storage, config.storage_url)
            state["service"] = ReplicaService(opened, config.limits, utility_sk=utility_sk)
        try:
            yield
        finally:
            if opened is not None:
                await run_in_threadpool(opened.close)
                state.pop("service", None)

    app = FastAPI(title="meterchain replica", version=_version(), lifespan=lifespan,
                  dependencies=[Depends(reject_unknown_query)],
                  docs_url=None, redoc_url=None,
                  description="Receives, verifies, stores and compares gateway ledgers "
                  "(protocol v1, docs/replica-api.md).")

    def svc() -> ReplicaService:
        return state["service"]

    app.router.redirect_slashes = False  # one spelling per path: ".../blocks/" is a 404
    app.add_middleware(AccessControl, routes=lambda: app.router.routes, public=config.public,
                       lookup=lambda: svc().storage.token)

    @app.exception_handler(Refusal)
    async def _refused(_request: Request, exc: Refusal) -> JSONResponse:
        return refusal_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return JSONResponse({"error": "malformed", "detail": problems or "invalid request"},
                            status_code=400)

    app.add_middleware(DisconnectLog)
    app.add_exception_handler(ClientDisconnect, client_gone)

    @app.exception_handler(ReplicaStoreError)
    async def _store_down(_request: Request, exc: ReplicaStoreError) -> JSONResponse:
        log.error("storage unavailable: %s", exc)  # the detail (paths, hosts) stays in the log
        return JSONResponse({"error": "storage-unavailable", "detail": "the replica's database "
                             "cannot be reached; retry later"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.post(f"{API_PREFIX}/gateways/{{gw}}/blocks", responses={200: {"model": PushOk},
              **_REFUSALS}, openapi_extra=_PUSH_BODY_SCHEMA)
    async def push(gw: str, request: Request) -> JSONResponse:
        """Push an ordered, consecutive batch of blocks (atomic: all stored or none)."""
        service = svc()
        rec = await run_in_threadpool(service.gateway_for_push, gw)  # before any body byte
        async with received_body(request, config.limits, budget, head_json(rec)) as body:
            result = await run_in_threadpool(service.push, rec, body, client_address(request))
        return JSONResponse(result.json())

    @app.get(f"{API_PREFIX}/gateways/{{gw}}/head", response_model=HeadModel,
             responses=_REFUSALS)
    def head(gw: str) -> dict[str, Any]:
        """The stored head; ``{"height": -1, "hash": null}`` when enrolled but empty."""
        return svc().head(gw)

    @app.get(f"{API_PREFIX}/gateways/{{gw}}/blocks", response_model=BlocksModel,
             responses=_REFUSALS, response_class=StreamingResponse)
    def blocks(gw: str, from_: str = Query("0", alias="from"),
               limit: str = Query("100")) -> Response:
        """Consecutive block records from ``from``, at most ``limit`` and
        ``max_read_bytes`` (capped by config), streamed."""
        pieces = svc().blocks_json(gw, query_int("from", from_), query_int("limit", limit))
        return StreamingResponse(pieces, media_type="application/json")

    @app.get(f"{API_PREFIX}/gateways/{{gw}}/blocks/{{height}}/hash", responses=_REFUSALS)
    def block_hash(gw: str, height: str) -> dict[str, Any]:
        """The hash of the block at ``height`` (cheap comparison across replicas)."""
        return svc().block_hash(gw, query_int("height", height))

    @app.get(f"{API_PREFIX}/gateways/{{gw}}/proof", responses=_REFUSALS)
    def proof(gw: str, height: str = Query(...), index: str = Query(...)) -> dict[str, Any]:
        """Inclusion proof of reading ``index`` of block ``height``."""
        return svc().proof(gw, query_int("height", height), query_int("index", index))

    @app.get(f"{API_PREFIX}/gateways/{{gw}}/readings.csv", responses=_REFUSALS,
             response_class=StreamingResponse)
    def readings_csv(gw: str, from_ms_text: str = Query("0", alias="from_ms", max_length=64),
                     to_ms_text: str = Query(str(2**63 - 1), alias="to_ms", max_length=64),
                     skip_unreadable: str = Query("")) -> Response:
        """Readings with timestamps in ``[from_ms, to_ms)`` as CSV (decrypted with the key);
        times in ms or ISO 8601 (a date is its UTC midnight)."""
        service = svc()
        rec = service.enrolled(gw)
        from_ms = parse_time_param("from_ms", from_ms_text)
        to_ms = parse_time_param("to_ms", to_ms_text)
        check_exportable(service.storage, rec, from_ms, to_ms, service.utility_sk)
        skip = skip_unreadable not in ("", "0", "false")
        export = build_export(service.storage, rec, from_ms, to_ms, service.utility_sk,
                              skip_unreadable=skip)
        headers = {"Content-Disposition": f'attachment; filename="{rec.key.hex()}.csv"',
                   "X-Meterchain-Omitted-Count": str(len(export.omitted))}
        if export.omitted:
            headers["X-Meterchain-Omitted-Heights"] = ",".join(
                str(h) for h in export.omitted[:MAX_LISTED])
        return StreamingResponse(export.chunks(), media_type="text/csv", headers=headers)

    @app.get(f"{API_PREFIX}/gateways", response_model=GatewaysModel)
    def gateways() -> dict[str, Any]:
        """Every enrolled gateway with its height, head hash and last-seen time."""
        return svc().gateways()

    @app.get(f"{API_PREFIX}/forks", response_model=ForksModel)
    def forks(after: str = Query(""), limit: str = Query("100")) -> dict[str, Any]:
        """Fork evidence: pairs of signed headers, checkable with ``verify_fork``, paged."""
        return svc().forks(after[:2000], query_int("limit", limit))

    @app.get(f"{API_PREFIX}/health")
    def health() -> dict[str, str]:
        """Liveness and version."""
        return {"status": "ok", "version": _version()}

    add_meterdata_routes(app, svc)
    add_settlement_routes(app, svc)
    from replica.metrics import install as install_metrics  # GET /metrics, its own module

    install_metrics(app, svc)
    install_facts(app, svc, config.audit)
    _install_ui(app, config, svc)
    return app


def _install_ui(app: FastAPI, config: ReplicaConfig, svc: Any) -> None:
    """The web view at /ui (its own package; jinja2 is imported only here)."""
    from replica.ui.login import replica_token_check
    from replica.ui.router import install_ui

    install_ui(app, config, replica_token_check(svc))


def app_from_env() -> FastAPI:
    """The app for uvicorn workers: config path from ``MC_REPLICA_CONFIG``.

    Raises:
        ConfigError: the variable is unset or the config is wrong.
    """
    from ledger.errors import ConfigError

    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(CONFIG_ENV, "environment variable not set (path to replica.toml)")
    return create_app(load_config(path))
