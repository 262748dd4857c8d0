"""Web view sessions: sealed into their cookie, so every worker process of a replica
knows a login; forged, altered, expired or ended sessions are nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ledger.errors import ConfigError
from replica.auth import READ_CHAIN
from replica.storage.base import open_storage
from replica.ui.session import SESSION_KEY_ENV, SessionStore, session_key
from tests.support.pgserver import free_port
from tests.support.tokens import install_test_token

TOKEN = f"mct_7e57000000000021_{'c3' * 32}"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_opens_only_with_its_key_unaltered_and_in_time() -> None:
    clock = Clock()
    key = bytes(range(32))
    store = SessionStore(60, 10, key=key, clock=clock)
    s = store.create(TOKEN, frozenset({READ_CHAIN}))
    assert TOKEN not in s.sid and "c3c3" not in s.sid
    got = store.get(s.sid)
    assert got is not None and got.token == TOKEN and got.scopes == {READ_CHAIN}
    assert got.csrf == s.csrf
    # another worker with the same key knows it; a replica with another key does not
    assert SessionStore(60, 10, key=key, clock=clock).get(s.sid) is not None
    assert SessionStore(60, 10, key=bytes(32), clock=clock).get(s.sid) is None
    # any altered character, a truncation, junk, an oversized value: nothing
    for i in (0, len(s.sid) // 2, len(s.sid) - 2):
        flipped = s.sid[:i] + ("A" if s.sid[i] != "A" else "B") + s.sid[i + 1:]
        assert store.get(flipped) is None
    for junk in (s.sid[:-10], "", "not a session", "=" * 10, "A" * 5000):
        assert store.get(junk) is None
    clock.now += 61
    assert store.get(s.sid) is None


def test_logging_out_ends_the_session_in_this_process() -> None:
    clock = Clock()
    store = SessionStore(60, 2, key=bytes(32), clock=clock)
    a, b = store.create(TOKEN, frozenset()), store.create(TOKEN, frozenset())
    store.drop(a.sid)
    assert store.get(a.sid) is None and store.get(b.sid) is not None
    store.drop("forged")  # nothing to end, nothing remembered
    assert len(store._ended) == 1


def test_a_bad_session_key_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setenv(SESSION_KEY_ENV, "abc")
    with pytest.raises(ConfigError, match=SESSION_KEY_ENV):
        session_key()
    monkeypatch.setenv(SESSION_KEY_ENV, "11" * 32)
    assert session_key() == b"\x11" * 32


def test_a_login_holds_in_every_worker_of_replica_serve(tmp_path: Path) -> None:
    db = tmp_path / "replica.db"
    storage = open_storage(f"sqlite:///{db}", pool_size=1)
    install_test_token(storage, (READ_CHAIN,), "7e57000000000021", TOKEN)
    storage.close()
    port = free_port()
    cfg = tmp_path / "replica.toml"
    cfg.write_text(f'[listen]\nhost = "127.0.0.1"\nport = {port}\nworkers = 2\n\n'
                   f'[storage]\nurl = "sqlite:///{db}"\n')
    env = {k: v for k, v in os.environ.items() if k != SESSION_KEY_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "meterchain", "replica", "serve",
                             "--config", str(cfg)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "replica did not start"
            time.sleep(0.2)
        r = httpx.post(base + "/ui/login", data={"token": TOKEN}, headers={"Origin": base},
                       follow_redirects=False)
        assert r.status_code == 303, r.text
        cookie = re.search(r"mc_session=([^;]+)", r.headers["set-cookie"]).group(1)  # type: ignore[union-attr]
        # a new connection per request: the two workers share the listening socket, so
        # the requests spread over both, and every one of them must know the login
        for _ in range(24):
            with httpx.Client(cookies={"mc_session": cookie}) as c:
                assert c.get(base + "/ui/overview").status_code == 200
                assert c.get(base + "/v1/gateways").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
