"""PostgreSQL storage (psycopg 3 with a connection pool) for replicas beyond one machine.

Every table is keyed by the gateway's public key first; ``blocks`` and ``forks`` are
hash-partitioned on it (``partitions`` of each), so a deployment can move partitions
to other disks or distribute the tables by ``gateway_key`` (e.g. Citus) later without
changing a query: every query names one gateway, except the listings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from replica.errors import ReplicaStoreError
from replica.storage.sql import Cursor, SqlStorage, iter_statements

DEFAULT_PARTITIONS = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateways (
    key BYTEA PRIMARY KEY,
    name TEXT NOT NULL,
    site TEXT,
    enrolled_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    height BIGINT NOT NULL DEFAULT -1,
    head_hash BYTEA,
    head_header BYTEA,
    last_seen_ms BIGINT,
    stored_bytes BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS blocks (
    gateway_key BYTEA NOT NULL,
    height BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    time_start_ms BIGINT NOT NULL,
    time_end_ms BIGINT NOT NULL,
    reading_count INTEGER NOT NULL,
    sealed SMALLINT NOT NULL,
    record BYTEA NOT NULL,
    received_ms BIGINT NOT NULL,
    readings_min_ms BIGINT NOT NULL DEFAULT 0,
    readings_max_ms BIGINT NOT NULL DEFAULT 9223372036854775807,
    PRIMARY KEY (gateway_key, height)
) PARTITION BY HASH (gateway_key);
CREATE INDEX IF NOT EXISTS blocks_time ON blocks (gateway_key, time_end_ms);
CREATE TABLE IF NOT EXISTS fork_overflow (
    gateway_key BYTEA NOT NULL,
    height BIGINT NOT NULL,
    dropped BIGINT NOT NULL,
    PRIMARY KEY (gateway_key, height)
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    hash BYTEA NOT NULL,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
CREATE TABLE IF NOT EXISTS forks (
    gateway_key BYTEA NOT NULL,
    height BIGINT NOT NULL,
    header_a BYTEA NOT NULL,
    sig_a BYTEA NOT NULL,
    header_b BYTEA NOT NULL,
    sig_b BYTEA NOT NULL,
    seen_ms BIGINT NOT NULL,
    PRIMARY KEY (gateway_key, height, header_b)
) PARTITION BY HASH (gateway_key)
"""

_SCHEMA_LOCK = 0x6D63_7270  # advisory lock id: workers starting together create it once


def schema_sql(partitions: int = DEFAULT_PARTITIONS) -> list[str]:
    """The statements that create the schema with ``partitions`` hash partitions."""
    stmts = list(iter_statements(_SCHEMA))
    for table in ("blocks", "forks"):
        for i in range(partitions):
            stmts.append(f"CREATE TABLE IF NOT EXISTS {table}_p{i} PARTITION OF {table} "
                         f"FOR VALUES WITH (MODULUS {partitions}, REMAINDER {i})")
    return stmts


def _why(dsn: str, exc: Exception) -> str:
    """Why the pool could not connect: a pool timeout hides the server's answer, so one
    direct connection attempt is made to name it (refused, unknown host, auth failed)."""
    if not isinstance(exc, PoolTimeout):
        return str(exc).strip().splitlines()[0]
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.Error as direct:
        reason = " ".join(str(direct).split())
        return f"{reason} (for 30 s)"
    return str(exc)


class PostgresStorage(SqlStorage):
    """Storage in PostgreSQL through a psycopg connection pool.

    Raises:
        ReplicaStoreError: the server cannot be reached or the schema created.
    """

    def __init__(self, dsn: str, *, pool_size: int = 8,
                 partitions: int = DEFAULT_PARTITIONS) -> None:
        self.dsn = dsn
        self._pool = ConnectionPool(dsn, min_size=1, max_size=max(pool_size, 1), open=False,
                                    timeout=30.0)
        pool_log = logging.getLogger("psycopg.pool")
        level = pool_log.level
        pool_log.setLevel(logging.ERROR)  # one warning per retry; the reason is raised below
        try:
            self._pool.open(wait=True, timeout=30.0)
        except (PoolTimeout, psycopg.Error) as exc:
            self._pool.close()
            raise ReplicaStoreError(f"PostgreSQL {_safe(dsn)}: cannot connect: "
                                    f"{_why(dsn, exc)}") from None
        finally:
            pool_log.setLevel(level)
        with self._write() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for stmt in schema_sql(partitions):
                cur.execute(stmt)
            cur.execute("SELECT table_name, column_name FROM information_schema.columns "
                        "WHERE table_schema = current_schema() AND "
                        "table_name IN ('gateways', 'blocks')")
            self._upgrade(cur, {(str(t), str(c)) for t, c in cur.fetchall()}, "BIGINT")

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s")

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        try:
            with self._pool.connection() as conn, conn.cursor() as cur:
                yield cast(Cursor, cur)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise ReplicaStoreError(f"PostgreSQL {_safe(self.dsn)}: read failed: {exc}"
                                    ) from None

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cast(Cursor, cur)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise ReplicaStoreError(f"PostgreSQL {_safe(self.dsn)}: write failed: {exc}"
                                    ) from None

    def _lock_gateway(self, cur: Cursor, key: bytes) -> None:
        cur.execute("SELECT 1 FROM gateways WHERE key = %s FOR UPDATE", (key,))

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.UniqueViolation)

    def close(self) -> None:
        self._pool.close()


def _safe(dsn: str) -> str:
    """The DSN without a password, for messages."""
    try:
        params: dict[str, Any] = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable dsn>"
    params.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in params.items())
