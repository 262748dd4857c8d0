"""A PostgreSQL server that cannot be reached is named with the server's own reason.

The pool retries quietly until its timeout, which alone would say only "pool
initialization incomplete"; the reason given is one direct attempt's answer. (No server
is needed: a port nobody listens on refuses at once.)
"""

from __future__ import annotations

import socket

from psycopg_pool import PoolTimeout

from replica.storage.postgres import _why


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_pool_timeout_is_explained_by_a_direct_attempt() -> None:
    dsn = f"postgresql://nobody:secret-word@127.0.0.1:{_closed_port()}/x"
    why = _why(dsn, PoolTimeout("pool initialization incomplete after 30.0 sec"))
    assert "Connection refused" in why and "\n" not in why
    assert "secret-word" not in why
