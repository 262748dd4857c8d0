"""Real replica servers (the replica app under uvicorn) on loopback for the tools' tests.

Each :class:`LiveReplica` owns a SQLite database in a temporary directory and serves
``replica.app.create_app`` with uvicorn in a background thread on a free port.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from ledger import Block
from replica.app import create_app
from replica.config import Limits, ReplicaConfig
from replica.storage.base import open_storage
from tests.support.tokens import TEST_TOKEN, install_test_token

TEST_LIMITS = Limits(rate_per_gateway=0.0, max_future_skew_ms=10 * 365 * 86_400_000,
                     max_blocks_per_batch=64, max_blocks_per_read=50)


class LiveReplica:
    """One replica server on 127.0.0.1 with its own SQLite database."""

    def __init__(self, directory: Path, limits: Limits = TEST_LIMITS) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.db = directory / "replica.db"
        self.config = ReplicaConfig(storage_url=f"sqlite:///{self.db}", limits=limits)
        self.storage = open_storage(self.config.storage_url)
        self.token = install_test_token(self.storage)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveReplica:
        app = create_app(self.config, self.storage)
        cfg = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                             access_log=False, lifespan="on")
        server = uvicorn.Server(cfg)
        self._server = server
        self._thread = threading.Thread(target=server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("replica server did not start")
            time.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = None
        self.storage.close()

    def enroll(self, key: bytes, name: str = "gw") -> None:
        self.storage.enroll(key, name, None, int(time.time() * 1000))

    def push(self, key: bytes, blocks: list[Block]) -> httpx.Response:
        from tests.support.chains import encode_b64

        return httpx.post(f"{self.url}/v1/gateways/{key.hex()}/blocks",
                          json={"blocks": encode_b64(blocks)}, timeout=30)

    def push_ok(self, key: bytes, blocks: list[Block]) -> None:
        for i in range(0, len(blocks), 50):
            resp = self.push(key, blocks[i:i + 50])
            assert resp.status_code == 200, resp.text

    def records(self, key: bytes) -> list[bytes]:
        out: list[bytes] = []
        while batch := self.storage.blocks(key, len(out), 1000):
            out.extend(batch)
        return out

    def snapshot(self) -> tuple[object, ...]:
        """Everything a refused request must leave unchanged: gateways (heights, hashes),
        forks and every stored record."""
        gws = self.storage.gateways()
        return (tuple((g.key, g.height, g.head_hash, g.revoked_at_ms) for g in gws),
                tuple(self.storage.forks()),
                tuple(tuple(self.records(g.key)) for g in gws))

    def sql(self, statement: str, *params: object) -> int:
        """Run one statement on the database file directly (as an attacker with disk
        access would); returns the number of rows changed."""
        conn = sqlite3.connect(self.db)
        try:
            cur = conn.execute(statement, params)
            conn.commit()
            return cur.rowcount
        finally:
            conn.close()


@pytest.fixture
def replicas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[Callable[..., LiveReplica]]:
    """Factory: ``replicas(limits=...)`` starts another replica; all stop at teardown.

    Every replica holds the test token (every scope), and ``MC_REPLICA_TOKEN``
    is set to it for the tools (mirror, audit) the tests run.
    """
    started: list[LiveReplica] = []
    monkeypatch.setenv("MC_REPLICA_TOKEN", TEST_TOKEN)

    def start(limits: Limits = TEST_LIMITS) -> LiveReplica:
        rep = LiveReplica(tmp_path / f"replica-{len(started)}", limits).start()
        started.append(rep)
        return rep

    yield start
    for rep in started:
        rep.stop()
