"""Last-seen liveness and the small findings: strict integers, UTF-8 only, no paths in 503s."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from replica.errors import ReplicaStoreError
from replica.storage.base import Storage
from tests.replica.conftest import RunningReplica, StorageFactory, enroll
from tests.support.chains import encode_b64, make_chain

SEED = b"small-gw"


def last_seen(rep: RunningReplica, key: bytes) -> int | None:
    [g] = [g for g in rep.http.get("/v1/gateways").json()["gateways"] if g["key"] == key.hex()]
    return g["last_seen_ms"]


def test_last_seen_moves_only_when_a_block_is_newly_stored(replica: RunningReplica) -> None:
    key = enroll(replica.storage, SEED)
    chain = make_chain(SEED, 4, 2)
    assert last_seen(replica, key) is None
    r = replica.push(key, [])  # anyone can send an empty batch: it changes nothing
    assert r.status_code == 200 and r.json() == {"head": None, "stored": 0, "duplicates": 0}
    assert last_seen(replica, key) is None
    assert replica.push(key, chain[:2]).json()["stored"] == 2
    seen = last_seen(replica, key)
    assert seen is not None
    # a third party replaying stored (validly signed) blocks changes nothing either
    for _ in range(3):
        assert replica.push(key, chain[:2]).json()["duplicates"] == 2
        assert replica.push(key, []).status_code == 200
    assert last_seen(replica, key) == seen
    assert replica.push(key, chain[1:3]).json() == {
        "head": {"height": 2, "hash": chain[2].hash.hex()}, "stored": 1, "duplicates": 1}
    new = last_seen(replica, key)
    assert new is not None and new >= seen


@pytest.mark.parametrize("query", ["from=1.0", "from=1_0", "from=-1", "from=+1", "from=%201",
                                   "from=1e3", "from=0x10", "from=٣", "limit=1.0",
                                   "from=9223372036854775808"])
def test_block_range_integers_are_strict(replica: RunningReplica, query: str) -> None:
    key = enroll(replica.storage, SEED)
    r = replica.http.get(f"/v1/gateways/{key.hex()}/blocks?{query}")
    assert r.status_code == 400 and r.json()["error"] == "malformed", (query, r.text)


@pytest.mark.parametrize("params", ["height=0&index=-1", "height=-1&index=0",
                                    "height=0&index=1.0", "height=0_0&index=0"])
def test_proof_integers_are_strict(replica: RunningReplica, params: str) -> None:
    key = enroll(replica.storage, SEED)
    assert replica.push(key, make_chain(SEED, 1, 2)).status_code == 200
    r = replica.http.get(f"/v1/gateways/{key.hex()}/proof?{params}")
    assert r.status_code == 400 and r.json()["error"] == "malformed", (params, r.text)
    for bad in ("1.0", "-1", "1_0"):
        r = replica.http.get(f"/v1/gateways/{key.hex()}/blocks/{bad}/hash")
        assert r.status_code == 400, bad
        r = replica.http.get(f"/v1/gateways/{key.hex()}/readings.csv?from_ms={bad}")
        assert r.status_code == 400, bad


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "utf-8-sig"])
def test_push_body_must_be_utf8(replica: RunningReplica, encoding: str) -> None:
    key = enroll(replica.storage, SEED)
    import json

    body = json.dumps({"blocks": encode_b64(make_chain(SEED, 1, 2))}).encode(encoding)
    r = replica.push_raw(key, body)
    assert r.status_code == 400 and r.json()["error"] == "malformed", r.text
    assert replica.head(key)["height"] == -1


class FailingStorage:
    """Delegates to real storage, but every read fails as a broken disk would."""

    def __init__(self, real: Storage, path: str) -> None:
        self._real = real
        self._path = path

    def gateway(self, key: bytes) -> Any:
        raise ReplicaStoreError(f"{self._path}: read failed: disk I/O error")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_503_names_no_path(make_replica: Callable[..., RunningReplica],
                           storage_factory: StorageFactory, tmp_path: Path) -> None:
    real = storage_factory.open()
    secret_path = str(tmp_path / "very" / "secret" / "replica.db")
    rep = make_replica(storage=FailingStorage(real, secret_path))
    key = enroll(real, SEED)
    for r in (rep.http.get(f"/v1/gateways/{key.hex()}/head"), rep.push(key, [])):
        assert r.status_code == 503 and r.json()["error"] == "storage-unavailable"
        assert "secret" not in r.text and str(tmp_path) not in r.text
        assert r.headers["retry-after"]


def test_revoke_at_absurd_time_is_a_clean_error(storage_factory: StorageFactory,
                                                tmp_path: Path) -> None:
    cfg = tmp_path / "replica.toml"
    cfg.write_text(f'[storage]\nurl = "{storage_factory.url}"\n')
    key = make_chain(SEED, 1, 1)[0].header.gateway_key.hex()
    mc = [sys.executable, "-m", "meterchain", "replica"]
    assert subprocess.run([*mc, "enroll", key, "--name", "x", "--config", str(cfg)],
                          capture_output=True).returncode == 0
    for at in ("99999999999999999999999", "9223372036854775808", "٣٣"):
        r = subprocess.run([*mc, "revoke", key, "--at", at, "--config", str(cfg)],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "--at" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
