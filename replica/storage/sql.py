"""SQL shared by the SQLite and PostgreSQL backends (written with ``?`` placeholders).

A backend supplies connections (:meth:`SqlStorage._read`, :meth:`SqlStorage._write`),
its schema, and how it spells placeholders and unique-key violations; the queries here
are plain SQL both databases run unchanged.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from replica.errors import EnrollmentError, StaleHeadError
from replica.storage.base import ForkRecord, GatewayRecord, Storage, StoredBlock, TokenRecord

HEADER_SIZE = 194

_GATEWAY_COLUMNS = ("key, name, site, enrolled_ms, revoked_at_ms, height, head_hash, "
                    "head_header, last_seen_ms, stored_bytes")

UPGRADES: list[tuple[str, str, list[str]]] = [
    ("gateways", "stored_bytes", [
        "ALTER TABLE gateways ADD COLUMN stored_bytes {big} NOT NULL DEFAULT 0",
        "UPDATE gateways SET stored_bytes = (SELECT COALESCE(SUM(length(record)), 0) "
        "FROM blocks WHERE blocks.gateway_key = gateways.key)"]),
    ("blocks", "readings_min_ms", [  # unknown for blocks stored before: always looked at
        "ALTER TABLE blocks ADD COLUMN readings_min_ms {big} NOT NULL DEFAULT 0",
        f"ALTER TABLE blocks ADD COLUMN readings_max_ms {{big}} NOT NULL DEFAULT {2**63 - 1}"]),
]
"""``(table, column, statements)``: upgrades of a database made by an earlier release."""
AFTER_UPGRADES = ["CREATE INDEX IF NOT EXISTS blocks_readings ON blocks "
                  "(gateway_key, readings_max_ms)"]


class Cursor(Protocol):
    """The DB-API cursor subset both drivers provide."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: Any, params: Sequence[Any] = ...) -> Any: ...
    def executemany(self, sql: Any, params: Any) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class SqlStorage(Storage):
    """Storage over a DB-API database; subclasses provide connections and dialect."""

    @abc.abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]:
        """A cursor for reads."""

    @abc.abstractmethod
    def _write(self) -> AbstractContextManager[Cursor]:
        """A cursor in a write transaction: committed on success, rolled back on error."""

    @abc.abstractmethod
    def _is_unique_violation(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the driver's unique-key violation."""

    def _q(self, sql: str) -> str:
        """Translate ``?`` placeholders to the driver's style."""
        return sql

    # --- enrollment ----------------------------------------------------------------------

    def enroll(self, key: bytes, name: str, site: str | None, now_ms: int) -> GatewayRecord:
        try:
            with self._write() as cur:
                cur.execute(self._q("INSERT INTO gateways (key, name, site, enrolled_ms, height)"
                                    " VALUES (?, ?, ?, ?, -1)"), (key, name, site, now_ms))
        except Exception as exc:
            if self._is_unique_violation(exc):
                raise EnrollmentError("PUBKEY", f"gateway {key.hex()} is already enrolled"
                                      ) from None
            raise
        rec = self.gateway(key)
        assert rec is not None
        return rec

    def revoke(self, key: bytes, at_ms: int) -> GatewayRecord:
        # A revocation only ever moves earlier: moving it later would accept again blocks
        # a possibly compromised key signed in between.
        with self._write() as cur:
            cur.execute(self._q("UPDATE gateways SET revoked_at_ms = ? WHERE key = ? AND "
                                "(revoked_at_ms IS NULL OR revoked_at_ms > ?)"),
                        (at_ms, key, at_ms))
            changed = cur.rowcount == 1
        rec = self.gateway(key)
        if rec is None:
            raise EnrollmentError("PUBKEY", f"gateway {key.hex()} is not enrolled")
        if not changed and rec.revoked_at_ms != at_ms:
            raise EnrollmentError("--at", f"gateway {key.hex()} is already revoked from "
                                  f"{rec.revoked_at_ms} (Unix ms); a revocation can only be "
                                  "moved earlier")
        return rec

    def gateway(self, key: bytes) -> GatewayRecord | None:
        with self._read() as cur:
            cur.execute(self._q(f"SELECT {_GATEWAY_COLUMNS} FROM gateways WHERE key = ?"), (key,))
            row = cur.fetchone()
        return _gateway(row) if row else None

    def gateways(self) -> list[GatewayRecord]:
        with self._read() as cur:
            cur.execute(f"SELECT {_GATEWAY_COLUMNS} FROM gateways ORDER BY key")
            return [_gateway(r) for r in cur.fetchall()]

    # --- blocks --------------------------------------------------------------------------

    def append(self, key: bytes, blocks: list[StoredBlock], expected_height: int,
               seen_ms: int) -> None:
        if not blocks:
            return
        try:
            with self._write() as cur:
                self._append_rows(cur, key, blocks, expected_height, seen_ms)
        except StaleHeadError:
            raise
        except Exception as exc:
            if self._is_unique_violation(exc):
                raise StaleHeadError(key, expected_height) from None
            raise

    def _append_rows(self, cur: Cursor, key: bytes, blocks: list[StoredBlock],
                     expected_height: int, seen_ms: int) -> None:
        """The statements of :meth:`append`, inside the caller's transaction.

        Raises:
            StaleHeadError: the head is not ``expected_height`` (nothing was changed).
        """
        last = blocks[-1]
        cur.execute(
            self._q("UPDATE gateways SET height = ?, head_hash = ?, head_header = ?, "
                    "last_seen_ms = ?, stored_bytes = stored_bytes + ? "
                    "WHERE key = ? AND height = ?"),
            (last.height, last.hash, last.record[:HEADER_SIZE], seen_ms,
             sum(len(b.record) for b in blocks), key, expected_height),
        )
        if cur.rowcount != 1:
            raise StaleHeadError(key, expected_height)
        cur.executemany(
            self._q("INSERT INTO blocks (gateway_key, height, hash, time_start_ms, "
                    "time_end_ms, reading_count, sealed, record, received_ms, "
                    "readings_min_ms, readings_max_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            [(key, b.height, b.hash, b.time_start_ms, b.time_end_ms, b.reading_count,
              int(b.sealed), b.record, seen_ms, b.readings_min_ms, b.readings_max_ms)
             for b in blocks],
        )

    def touch(self, key: bytes, seen_ms: int) -> None:
        with self._write() as cur:
            cur.execute(self._q("UPDATE gateways SET last_seen_ms = ? WHERE key = ?"),
                        (seen_ms, key))

    def block_hashes(self, key: bytes, lo: int, hi: int) -> dict[int, bytes]:
        with self._read() as cur:
            cur.execute(self._q("SELECT height, hash FROM blocks WHERE gateway_key = ? AND "
                                "height >= ? AND height <= ?"), (key, lo, hi))
            return {int(h): bytes(x) for h, x in cur.fetchall()}

    def blocks(self, key: bytes, from_height: int, limit: int) -> list[bytes]:
        with self._read() as cur:
            cur.execute(self._q("SELECT record FROM blocks WHERE gateway_key = ? AND "
                                "height >= ? ORDER BY height LIMIT ?"),
                        (key, from_height, limit))
            return [bytes(r[0]) for r in cur.fetchall()]

    def blocks_in_time(self, key: bytes, from_ms: int, to_ms: int, after_height: int,
                       limit: int) -> list[tuple[int, bytes]]:
        with self._read() as cur:
            cur.execute(self._q("SELECT height, record FROM blocks WHERE gateway_key = ? AND "
                                "height > ? AND readings_max_ms >= ? AND readings_min_ms < ? "
                                "ORDER BY height LIMIT ?"),
                        (key, after_height, from_ms, to_ms, limit))
            return [(int(h), bytes(r)) for h, r in cur.fetchall()]

    def sealed_in_time(self, key: bytes, from_ms: int, to_ms: int) -> bool:
        with self._read() as cur:
            cur.execute(self._q("SELECT 1 FROM blocks WHERE gateway_key = ? AND sealed = 1 AND "
                                "readings_max_ms >= ? AND readings_min_ms < ? LIMIT 1"),
                        (key, from_ms, to_ms))
            return cur.fetchone() is not None

    # --- API tokens ----------------------------------------------------------------------

    def add_token(self, token: TokenRecord) -> None:
        try:
            with self._write() as cur:
                cur.execute(self._q("INSERT INTO api_tokens (id, name, scopes, hash, created_ms)"
                                    " VALUES (?, ?, ?, ?, ?)"),
                            (token.id, token.name, " ".join(token.scopes), token.hash,
                             token.created_ms))
        except Exception as exc:
            if self._is_unique_violation(exc):
                raise EnrollmentError("token", f"a token with id {token.id} exists") from None
            raise

    def token(self, token_id: str) -> TokenRecord | None:
        with self._read() as cur:
            cur.execute(self._q(f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE id = ?"),
                        (token_id,))
            row = cur.fetchone()
        return _token(row) if row else None

    def tokens(self) -> list[TokenRecord]:
        with self._read() as cur:
            cur.execute(f"SELECT {_TOKEN_COLUMNS} FROM api_tokens ORDER BY created_ms, id")
            return [_token(r) for r in cur.fetchall()]

    def revoke_token(self, token_id: str, at_ms: int) -> TokenRecord:
        with self._write() as cur:
            cur.execute(self._q("UPDATE api_tokens SET revoked_ms = ? WHERE id = ? AND "
                                "revoked_ms IS NULL"), (at_ms, token_id))
        rec = self.token(token_id)
        if rec is None:
            raise EnrollmentError("TOKEN_ID", f"no token has id {token_id!r} (see "
                                  "'meterchain replica token list')")
        return rec

    # --- forks ---------------------------------------------------------------------------

    def _upgrade(self, cur: Cursor, columns: set[tuple[str, str]], big: str) -> None:
        """Bring a database made by an earlier release up to this schema.

        ``columns`` are the ``(table, column)`` pairs it has."""
        for table, column, statements in UPGRADES:
            if (table, column) not in columns:
                for stmt in statements:
                    cur.execute(stmt.format(big=big))
        for stmt in AFTER_UPGRADES:
            cur.execute(stmt)

    def _lock_gateway(self, cur: Cursor, key: bytes) -> None:
        """Serialise writers of one gateway inside a transaction (SQLite's write lock
        already does; PostgreSQL locks the gateway's row)."""

    def add_fork(self, fork: ForkRecord, max_per_height: int = 4) -> bool:
        try:
            with self._write() as cur:
                self._lock_gateway(cur, fork.key)
                cur.execute(self._q("SELECT header_b FROM forks WHERE gateway_key = ? AND "
                                    "height = ?"), (fork.key, fork.height))
                kept = [bytes(r[0]) for r in cur.fetchall()]
                if fork.header_b in kept:
                    return True
                if len(kept) >= max_per_height:
                    cur.execute(self._q(
                        "INSERT INTO fork_overflow (gateway_key, height, dropped) VALUES "
                        "(?, ?, 1) ON CONFLICT (gateway_key, height) DO UPDATE SET "
                        "dropped = fork_overflow.dropped + 1"), (fork.key, fork.height))
                    return False
                cur.execute(
                    self._q("INSERT INTO forks (gateway_key, height, header_a, sig_a, header_b, "
                            "sig_b, seen_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                    (fork.key, fork.height, fork.header_a, fork.sig_a, fork.header_b,
                     fork.sig_b, fork.seen_ms),
                )
                return True
        except Exception as exc:
            if not self._is_unique_violation(exc):
                raise
            return True

    def forks(self, after: tuple[bytes, int, bytes] | None = None,
              limit: int | None = None) -> list[ForkRecord]:
        sql = ("SELECT gateway_key, height, header_a, sig_a, header_b, sig_b, seen_ms "
               "FROM forks")
        params: list[Any] = []
        if after is not None:
            sql += " WHERE (gateway_key, height, header_b) > (?, ?, ?)"
            params += list(after)
        sql += " ORDER BY gateway_key, height, header_b"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read() as cur:
            cur.execute(self._q(sql), params)
            return [ForkRecord(bytes(k), int(h), bytes(ha), bytes(sa), bytes(hb), bytes(sb),
                               int(t)) for k, h, ha, sa, hb, sb, t in cur.fetchall()]

    def fork_counts(self) -> tuple[int, int]:
        with self._read() as cur:
            cur.execute("SELECT COUNT(*) FROM forks")
            kept = int(cur.fetchone()[0])
            cur.execute("SELECT COALESCE(SUM(dropped), 0) FROM fork_overflow")
            dropped = int(cur.fetchone()[0])
        return kept, dropped

    def block_sizes(self, key: bytes, from_height: int, limit: int) -> list[tuple[int, int]]:
        with self._read() as cur:
            cur.execute(self._q("SELECT height, length(record) FROM blocks WHERE "
                                "gateway_key = ? AND height >= ? ORDER BY height LIMIT ?"),
                        (key, from_height, limit))
            return [(int(h), int(n)) for h, n in cur.fetchall()]


def _gateway(row: Sequence[Any]) -> GatewayRecord:
    key, name, site, enrolled, revoked, height, hhash, hheader, seen, size = row
    return GatewayRecord(
        key=bytes(key), name=name, site=site, enrolled_ms=int(enrolled),
        revoked_at_ms=None if revoked is None else int(revoked), height=int(height),
        head_hash=None if hhash is None else bytes(hhash),
        head_header=None if hheader is None else bytes(hheader),
        last_seen_ms=None if seen is None else int(seen), stored_bytes=int(size),
    )


_TOKEN_COLUMNS = "id, name, scopes, hash, created_ms, revoked_ms"


def _token(row: Sequence[Any]) -> TokenRecord:
    tid, name, scopes, digest, created, revoked = row
    return TokenRecord(id=str(tid), name=str(name), scopes=tuple(str(scopes).split()),
                       hash=bytes(digest), created_ms=int(created),
                       revoked_ms=None if revoked is None else int(revoked))


def iter_statements(script: str) -> Iterator[str]:
    """Split a schema script on ``;`` (no statement here contains one)."""
    for stmt in script.split(";"):
        if stmt.strip():
            yield stmt.strip()
