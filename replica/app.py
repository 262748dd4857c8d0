"""The replica's HTTP API (protocol v1, ``docs/replica-api.md``) as a FastAPI app.

:func:`create_app` builds the app over a config (and optionally an open storage);
:func:`app_from_env` is the factory uvicorn workers call (the config path is in
``MC_REPLICA_CONFIG``). The handlers only move bytes: :mod:`replica.service` decides.
Every refusal is JSON ``{"error": code, "detail": sentence, ...}`` with a 4xx status.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

import keyfiles as keys
from replica.config import ReplicaConfig, load_config
from replica.csvexport import check_exportable, export_csv
from replica.disconnects import DisconnectLog, client_gone
from replica.errors import Refusal, ReplicaStoreError
from replica.service import ReplicaService
from replica.storage.base import Storage, open_storage

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


_REFUSALS: dict[int | str, dict[str, Any]] = {
    s: {"model": RefusalModel} for s in (400, 403, 404, 409, 413, 422, 429)
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
        else:
            body[k] = v
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def _read_body(request: Request, limit: int, service: ReplicaService,
                     key_hex: str) -> bytes:
    """The request body, refused (413, with the gateway's head) once over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    over = declared is not None and declared.isdigit() and int(declared) > limit
    chunks = []
    if not over:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                over = True
                break
            chunks.append(chunk)
    if over:
        head = await run_in_threadpool(service.current_head, key_hex)
        raise Refusal(413, "too-large", f"request body is over {limit} bytes", head=head)
    return b"".join(chunks)


def create_app(config: ReplicaConfig, storage: Storage | None = None) -> FastAPI:
    """Build the replica app. Storage is opened at startup unless given (and then not closed).

    Raises:
        KeyFileError: the configured utility secret key cannot be read.
    """
    utility_sk = (keys.load_utility_secret(config.utility_secret_key)
                  if config.utility_secret_key is not None else None)
    state: dict[str, ReplicaService] = {}
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
                  description="Receives, verifies, stores and compares gateway ledgers "
                  "(protocol v1, docs/replica-api.md).")

    def svc() -> ReplicaService:
        return state["service"]

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
        return JSONResponse({"error": "storage-unavailable", "detail": str(exc)},
                            status_code=503)

    @app.post(f"{API_PREFIX}/gateways/{{gw}}/blocks", responses={200: {"model": PushOk},
              **_REFUSALS}, openapi_extra=_PUSH_BODY_SCHEMA)
    async def push(gw: str, request: Request) -> JSONResponse:
        """Push an ordered, consecutive batch of blocks (atomic: all stored or none)."""
        service = svc()
        body = await _read_body(request, config.limits.max_body_bytes, service, gw)
        result = await run_in_threadpool(service.push, gw, body)
        return JSONResponse(result.json())

    @app.get(f"{API_PREFIX}/gateways/{{gw}}/head", response_model=HeadModel,
             responses=_REFUSALS)
    def head(gw: str) -> dict[str, Any]:
        """The stored head; ``{"height": -1, "hash": null}`` when enrolled but empty."""
        return svc().head(gw)

    @app.get(f"{API_PREFIX}/gateways/{{gw}}/blocks", response_model=BlocksModel,
             responses=_REFUSALS)
    def blocks(gw: str, from_: int = Query(0, alias="from"),
               limit: int = Query(100)) -> dict[str, Any]:
        """Consecutive block records from ``from``, at most ``limit`` (capped by config)."""
        return svc().blocks(gw, from_, limit)

    @app.get(f"{API_PREFIX}/gateways/{{gw}}/blocks/{{height}}/hash", responses=_REFUSALS)
    def block_hash(gw: str, height: int) -> dict[str, Any]:
        """The hash of the block at ``height`` (cheap comparison across replicas)."""
        return svc().block_hash(gw, height)

    @app.get(f"{API_PREFIX}/gateways/{{gw}}/proof", responses=_REFUSALS)
    def proof(gw: str, height: int = Query(...), index: int = Query(...)) -> dict[str, Any]:
        """Inclusion proof of reading ``index`` of block ``height``."""
        return svc().proof(gw, height, index)

    @app.get(f"{API_PREFIX}/gateways/{{gw}}/readings.csv", responses=_REFUSALS,
             response_class=StreamingResponse)
    def readings_csv(gw: str, from_ms: int = Query(0),
                     to_ms: int = Query(2**63 - 1)) -> Response:
        """Readings with timestamps in ``[from_ms, to_ms)`` as CSV (decrypted with the key)."""
        service = svc()
        rec = service.enrolled(gw)
        check_exportable(service.storage, rec, from_ms, to_ms, service.utility_sk)
        return StreamingResponse(
            export_csv(service.storage, rec, from_ms, to_ms, service.utility_sk),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{gw}.csv"'},
        )

    @app.get(f"{API_PREFIX}/gateways", response_model=GatewaysModel)
    def gateways() -> dict[str, Any]:
        """Every enrolled gateway with its height, head hash and last-seen time."""
        return svc().gateways()

    @app.get(f"{API_PREFIX}/forks", response_model=ForksModel)
    def forks() -> dict[str, Any]:
        """Fork evidence: pairs of signed headers, checkable with ``verify_fork``."""
        return svc().forks()

    @app.get(f"{API_PREFIX}/health")
    def health() -> dict[str, str]:
        """Liveness and version."""
        return {"status": "ok", "version": _version()}

    from replica.metrics import install as install_metrics  # GET /metrics, its own module

    install_metrics(app, svc)
    return app


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
