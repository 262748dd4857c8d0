"""SQLite storage (WAL): the embedded default, one file, safe for several processes.

Each thread keeps its own connection. Writes take the database lock up front
(``BEGIN IMMEDIATE``) so concurrent writers wait (``busy_timeout``) instead of failing
on a lock upgrade; readers never block writers in WAL mode.

Appends use group commit: concurrent pushes in one process are written in one
transaction (each in its own savepoint, so one stale push does not undo another) and
made durable by one fsync, since a commit's fsync costs far more than its inserts.
Every caller returns only after the transaction holding its blocks has committed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from replica.errors import ReplicaStoreError, StaleHeadError
from replica.storage.base import StoredBlock
from replica.storage.sql import Cursor, SqlStorage, iter_statements

SCHEMA = """
CREATE TABLE IF NOT EXISTS gateways (
    key BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    site TEXT,
    enrolled_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    height INTEGER NOT NULL DEFAULT -1,
    head_hash BLOB,
    head_header BLOB,
    last_seen_ms INTEGER,
    stored_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS blocks (
    gateway_key BLOB NOT NULL,
    height INTEGER NOT NULL,
    hash BLOB NOT NULL,
    time_start_ms INTEGER NOT NULL,
    time_end_ms INTEGER NOT NULL,
    reading_count INTEGER NOT NULL,
    sealed INTEGER NOT NULL,
    record BLOB NOT NULL,
    received_ms INTEGER NOT NULL,
    readings_min_ms INTEGER NOT NULL DEFAULT 0,
    readings_max_ms INTEGER NOT NULL DEFAULT 9223372036854775807,
    PRIMARY KEY (gateway_key, height)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blocks_time ON blocks (gateway_key, time_end_ms);
CREATE TABLE IF NOT EXISTS fork_overflow (
    gateway_key BLOB NOT NULL,
    height INTEGER NOT NULL,
    dropped INTEGER NOT NULL,
    PRIMARY KEY (gateway_key, height)
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    hash BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS forks (
    gateway_key BLOB NOT NULL,
    height INTEGER NOT NULL,
    header_a BLOB NOT NULL,
    sig_a BLOB NOT NULL,
    header_b BLOB NOT NULL,
    sig_b BLOB NOT NULL,
    seen_ms INTEGER NOT NULL,
    PRIMARY KEY (gateway_key, height, header_b)
)
"""

BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for another process's write lock before failing."""


class _PendingAppend:
    """One caller's append waiting for a group commit."""

    __slots__ = ("key", "blocks", "expected", "seen", "done", "error")

    def __init__(self, key: bytes, blocks: list[StoredBlock], expected: int, seen: int) -> None:
        self.key = key
        self.blocks = blocks
        self.expected = expected
        self.seen = seen
        self.done = False
        self.error: Exception | None = None


class SqliteStorage(SqlStorage):
    """Storage in one SQLite file in WAL mode.

    Raises:
        ReplicaStoreError: the file cannot be opened or the schema created.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._queue: list[_PendingAppend] = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        if self.path == ":memory:" or not self.path:
            raise ReplicaStoreError("an in-memory SQLite database cannot be shared by the "
                                    "server's threads and processes; name a file")
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise ReplicaStoreError(f"{self.path}: directory {parent} does not exist")
        with self._write() as cur:
            for stmt in iter_statements(SCHEMA):
                cur.execute(stmt)
            have = set()
            for table in ("gateways", "blocks"):
                cur.execute(f"SELECT name FROM pragma_table_info('{table}')")
                have |= {(table, r[0]) for r in cur.fetchall()}
            self._upgrade(cur, have, "INTEGER")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=BUSY_TIMEOUT_MS / 1000)
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            except sqlite3.Error as exc:
                raise ReplicaStoreError(f"{self.path}: cannot open: {exc}") from None
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        try:
            cur = self._conn().cursor()
            try:
                yield cur
            finally:
                cur.close()
        except sqlite3.Error as exc:
            raise ReplicaStoreError(f"{self.path}: read failed: {exc}") from None

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise ReplicaStoreError(f"{self.path}: cannot start a write: {exc}") from None
        cur = conn.cursor()
        try:
            yield cur
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and not self._is_unique_violation(exc):
                raise ReplicaStoreError(f"{self.path}: write failed: {exc}") from exc
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise ReplicaStoreError(f"{self.path}: commit failed: {exc}") from None
        finally:
            cur.close()

    def append(self, key: bytes, blocks: list[StoredBlock], expected_height: int,
               seen_ms: int) -> None:
        """Store the blocks in the next group commit (see the module docstring).

        Raises:
            StaleHeadError: the head is not ``expected_height`` (nothing stored).
            ReplicaStoreError: the group's transaction failed (nothing stored).
        """
        if not blocks:
            return
        item = _PendingAppend(key, blocks, expected_height, seen_ms)
        with self._queue_lock:
            self._queue.append(item)
        with self._leader:
            if not item.done:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._commit_group(group)
        if item.error is not None:
            raise item.error

    def _commit_group(self, group: list[_PendingAppend]) -> None:
        conn = self._conn()
        cur = conn.cursor()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for it in group:
                conn.execute("SAVEPOINT push")
                try:
                    self._append_rows(cur, it.key, it.blocks, it.expected, it.seen)
                except (StaleHeadError, sqlite3.IntegrityError):
                    conn.execute("ROLLBACK TO push")
                    it.error = StaleHeadError(it.key, it.expected)
                conn.execute("RELEASE push")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for it in group:
                it.error = ReplicaStoreError(f"{self.path}: write failed: {exc}")
        finally:
            cur.close()
            for it in group:
                it.done = True

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
