"""Interval energy straight from a replica's storage: ``meterchain settle ... --config``.

A settlement reads a replica through one seam, :data:`settlement.replica_source.Getter`
(``get(path, params)`` -> the API's JSON answer). Over HTTP that is
:func:`~settlement.replica_source.http_getter`; here the same requests are answered
from the replica's database, opened from its ``replica.toml``, by the functions that
serve them over HTTP (``replica.meterdata.api`` and ``replica.app``): the readings
index brought up to date, the interval engine, ``series_json``, the service's block
hash and inclusion proof. So ``--config replica.toml`` and ``--replica URL`` give the
settlement the same input, byte for byte (``tests/settlement/test_live_replica.py``).

It lives in the wiring package because ``settlement/`` may not import ``replica/``
(``tests/test_import_layers.py``). No token is involved: whoever can read the
replica's config and database holds more than any token would grant. Sealed payloads
are read with the config's utility key, as the replica would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from settlement.errors import InputError
from settlement.replica_source import Getter

INTERVALS_PATH = "/v1/meterdata/intervals"
_GATEWAY_PATH = re.compile(r"/v1/gateways/([^/]+)/(?:blocks/([^/]+)/hash|proof)")
INTERVAL_PARAMS = frozenset({"point", "from", "to", "interval", "tz", "traces"})
"""The query parameters of ``GET /v1/meterdata/intervals`` the settlement sends."""


@contextmanager
def replica_storage(config_path: str) -> Iterator[Getter]:
    """Open the storage of the replica configured in ``config_path`` for the duration.

    The getter answers ``GET /v1/meterdata/intervals`` (by ``point``),
    ``GET /v1/gateways/{gw}/blocks/{height}/hash`` and ``GET /v1/gateways/{gw}/proof``.

    Raises:
        ConfigError: ``config_path`` is not a valid replica config.
        FileNotFoundError: it (or its utility key) does not exist.
        ReplicaStoreError: the database cannot be opened.
        ModuleNotFoundError: the ``replica`` extra is not installed (the dispatcher
            names it).
        InputError (from the getter): what the replica would refuse (unknown point or
            gateway, no such block, a malformed parameter), or a request it does not serve.
    """
    import keyfiles
    from replica.config import load_config
    from replica.meterdata.query import MeterData
    from replica.service import ReplicaService
    from replica.storage.base import open_storage

    cfg = load_config(config_path)
    sk = (keyfiles.load_utility_secret(cfg.utility_secret_key)
          if cfg.utility_secret_key is not None else None)
    storage = open_storage(cfg.storage_url, pool_size=1)
    try:
        service = ReplicaService(storage, cfg.limits, utility_sk=sk)
        yield _getter(service, MeterData(storage, sk, service.index.store), config_path)
    finally:
        storage.close()


def _getter(service: Any, md: Any, where: str) -> Getter:
    from replica.errors import Refusal
    from replica.service import parse_key

    def get(path: str, params: Mapping[str, str]) -> Any:
        try:
            if path == INTERVALS_PATH:
                return _intervals(md, params)
            m = _GATEWAY_PATH.fullmatch(path)
            if m is None:
                raise InputError(f"{where}: the replica's storage does not answer {path}")
            gw = m[1]
            parse_key(gw)  # a key, as over HTTP (the settlement names gateways by key)
            if m[2] is not None:
                return service.block_hash(gw, _int(m[2], "height"))
            return service.proof(gw, _int(params.get("height"), "height"),
                                 _int(params.get("index"), "index"))
        except Refusal as exc:
            raise InputError(f"replica storage ({where}) refuses GET {path}: {exc.code}: "
                             f"{exc.detail}") from None

    return get


def _int(text: str | None, field: str) -> int:
    from replica.app import query_int

    if text is None:
        raise InputError(f"missing {field}")
    return query_int(field, text)


def _intervals(md: Any, params: Mapping[str, str]) -> dict[str, Any]:
    """``GET /v1/meterdata/intervals`` for one point, as ``replica.meterdata.api`` answers.

    Raises:
        Refusal: as the route would (malformed parameter, unknown point).
        InputError: a parameter the settlement never sends.
    """
    from replica.meterdata import calendar
    from replica.meterdata.indexer import catch_up
    from replica.meterdata.query import parse_request, series_json

    unknown = set(params) - INTERVAL_PARAMS
    if unknown or "point" not in params:
        raise InputError(f"intervals from storage take one point and {sorted(INTERVAL_PARAMS)}"
                         f", got {sorted(params)}")
    interval = params.get("interval", "15m")
    req = parse_request(params.get("from", ""), params.get("to", ""), interval,
                        params.get("tz", calendar.DEFAULT_TZ))
    traces = params.get("traces", "false").lower() in ("true", "1", "yes", "on")
    targets = md.targets(point=params["point"], start_ms=req.start_ms, end_ms=req.end_ms)
    for key in {s.gateway.key for t in targets for s in t.sources}:
        catch_up(md.storage, md.store, key, md.utility_sk)
    series = [s for t in targets for s in md.series(t, req)]
    return {"from_ms": req.start_ms, "to_ms": req.end_ms, "interval_ms": req.interval_ms,
            "interval": req.aggregate or interval, "tz": req.tz.key, "unit": "Wh",
            "series": [series_json(s, req, traces=traces) for s in series]}
