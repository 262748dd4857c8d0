"""Fixtures for the replica tests: both storage backends, real servers on loopback.

PostgreSQL is a real throw-away server (``tests/support/pgserver.py``) started once per
session; if it cannot start, every PostgreSQL test errors -- nothing is skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from ledger import Block
from replica.app import create_app
from replica.config import Limits, ReplicaConfig
from replica.storage.base import Storage, open_storage
from tests.support.chains import encode_b64, gateway_key
from tests.support.pgserver import PgServer, free_port
from tests.support.tokens import auth_header, install_test_token

BACKENDS = ("sqlite", pytest.param("postgres", marks=pytest.mark.postgres))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with PgServer() as pg:
        yield pg


@dataclass
class StorageFactory:
    """Opens storage of one backend; ``url`` names the same database for reopening."""

    backend: str
    url: str
    opened: list[Storage] = field(default_factory=list)

    def open(self) -> Storage:
        s = open_storage(self.url, pool_size=4)
        self.opened.append(s)
        return s


@pytest.fixture(params=BACKENDS)
def storage_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageFactory]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'replica.db'}"
    else:
        pg: PgServer = request.getfixturevalue("pg_server")
        url = pg.fresh_schema_dsn()
    f = StorageFactory(request.param, url)
    yield f
    for s in f.opened:
        s.close()


@pytest.fixture
def storage(storage_factory: StorageFactory) -> Storage:
    return storage_factory.open()


@pytest.fixture
def other_storage(storage_factory: StorageFactory, request: pytest.FixtureRequest,
                  tmp_path: Path) -> Iterator[Storage]:
    """A second, separate database of the same backend (for a second replica)."""
    if storage_factory.backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'other.db'}"
    else:
        url = request.getfixturevalue("pg_server").fresh_schema_dsn()
    s = open_storage(url, pool_size=4)
    yield s
    s.close()


class RunningReplica:
    """A replica app served by uvicorn on 127.0.0.1 in a thread, with an httpx client."""

    def __init__(self, storage: Storage, limits: Limits, utility_key: Path | None = None,
                 port: int | None = None, public: frozenset[str] | None = None) -> None:
        self.storage = storage
        self.port = port or free_port()
        cfg = ReplicaConfig(limits=limits, utility_secret_key=utility_key)
        if public is not None:
            cfg = replace(cfg, public=public)
        self.config = cfg
        app = create_app(cfg, storage)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"replica did not start on port {self.port}")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = install_test_token(storage)
        self.http = httpx.Client(base_url=self.url, timeout=30, headers=auth_header(self.token))
        """A client holding a token with every scope."""
        self.anon = httpx.Client(base_url=self.url, timeout=30)
        """A client without a token."""

    def stop(self) -> None:
        self.http.close()
        self.anon.close()
        self.server.should_exit = True
        self.thread.join(15)

    # --- protocol helpers ------------------------------------------------------------

    def push(self, key: bytes | str, blocks: list[Block]) -> httpx.Response:
        k = key if isinstance(key, str) else key.hex()
        return self.http.post(f"/v1/gateways/{k}/blocks", json={"blocks": encode_b64(blocks)})

    def push_raw(self, key: bytes | str, content: bytes | str) -> httpx.Response:
        k = key if isinstance(key, str) else key.hex()
        return self.http.post(f"/v1/gateways/{k}/blocks", content=content,
                              headers={"content-type": "application/json"})

    def head(self, key: bytes) -> dict[str, Any]:
        r = self.http.get(f"/v1/gateways/{key.hex()}/head")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def snapshot(self) -> dict[str, Any]:
        """Everything the replica holds, to compare before and after a refused push."""
        gws = self.http.get("/v1/gateways").json()["gateways"]
        chains = {}
        for g in gws:
            got = self.http.get(f"/v1/gateways/{g['key']}/blocks",
                                params={"from": 0, "limit": 1000}).json()["blocks"]
            chains[g["key"]] = got
        heights = {g["key"]: (g["height"], g["head_hash"]) for g in gws}
        return {"heights": heights, "chains": chains,
                "forks": self.http.get("/v1/forks").json()["forks"]}


@pytest.fixture
def make_replica(storage_factory: StorageFactory) -> Iterator[Callable[..., RunningReplica]]:
    running: list[RunningReplica] = []

    def make(limits: Limits | None = None, utility_key: Path | None = None,
             storage: Storage | None = None, port: int | None = None,
             public: frozenset[str] | None = None) -> RunningReplica:
        r = RunningReplica(storage or storage_factory.open(), limits or Limits(),
                           utility_key, port, public)
        running.append(r)
        return r

    yield make
    for r in running:
        r.stop()


@pytest.fixture
def replica(make_replica: Callable[..., RunningReplica]) -> RunningReplica:
    return make_replica()


def enroll(storage: Storage, seed: bytes, name: str = "gw", site: str | None = None) -> bytes:
    """Enroll the test gateway with this seed; return its key."""
    key = gateway_key(seed)
    storage.enroll(key, name, site, 1)
    return key
