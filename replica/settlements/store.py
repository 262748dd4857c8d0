"""The settlement tables of a replica's database (SQLite or PostgreSQL).

``settlements`` holds each published document (the signed bytes as given) with what
the list shows; ``settlement_members`` each member's summary and statement files
(zlib-compressed, served decompressed: the bytes published); ``settlement_flows`` the
community's energy per interval; ``settlement_verifications`` the latest result of
``settle verify --record`` per document and replica it was checked against (at most
:data:`MAX_VERIFIERS` per document, the oldest dropped). Rows are never updated except
verifications; a document is published once (the same bytes again change nothing).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from replica.errors import SettlementRejected
from replica.settlements.intake import FLOW_FIELDS, DocumentMeta
from replica.storage.base import Storage
from replica.storage.sql import SqlStorage

MAX_VERIFIERS = 32
"""Verification results kept per document (one per replica checked against)."""

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS settlements (
    doc_hash TEXT PRIMARY KEY,
    community TEXT NOT NULL,
    period TEXT NOT NULL,
    revision INTEGER NOT NULL,
    previous TEXT,
    root TEXT NOT NULL,
    operator_key TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    currency TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    interval_ms INTEGER NOT NULL,
    members INTEGER NOT NULL,
    published_ms INTEGER NOT NULL,
    document BLOB NOT NULL,
    UNIQUE (community, period, revision)
);
CREATE TABLE IF NOT EXISTS settlement_members (
    doc_hash TEXT NOT NULL,
    member TEXT NOT NULL,
    summary TEXT NOT NULL,
    statement_json BLOB NOT NULL,
    statement_csv BLOB NOT NULL,
    PRIMARY KEY (doc_hash, member)
);
CREATE TABLE IF NOT EXISTS settlement_flows (
    doc_hash TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    consumption INTEGER NOT NULL,
    covered INTEGER NOT NULL,
    surplus INTEGER NOT NULL,
    grid_import INTEGER NOT NULL,
    PRIMARY KEY (doc_hash, start_ms)
);
CREATE TABLE IF NOT EXISTS settlement_verifications (
    doc_hash TEXT NOT NULL,
    against TEXT NOT NULL,
    verified_ms INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (doc_hash, against)
)
"""
_PG_SCHEMA = (_SQLITE_SCHEMA.replace("INTEGER", "BIGINT").replace("BLOB", "BYTEA"))
_SCHEMA_LOCK = 0x6D63_5345_5454  # "mcSETT": one schema creation at a time (PostgreSQL)

_LIST_COLUMNS = ("doc_hash, community, period, revision, previous, root, operator_key, "
                 "time_zone, currency, start_ms, end_ms, interval_ms, members, published_ms")


@dataclass(frozen=True, slots=True)
class Publication:
    """One checked settlement ready to store."""

    meta: DocumentMeta
    document: bytes
    statements: dict[str, tuple[dict[str, Any], bytes, bytes]]
    """member -> (summary, statement JSON bytes, statement CSV bytes)."""
    flows: list[tuple[int, ...]]


class SettlementStore:
    """Settlement tables over a :class:`SqlStorage`.

    Every method may raise :class:`~replica.errors.ReplicaStoreError` when the database
    cannot be read or written.
    """

    def __init__(self, storage: Storage) -> None:
        if not isinstance(storage, SqlStorage):
            raise TypeError(f"settlements need an SQL storage, got {type(storage).__name__}")
        self.storage: SqlStorage = storage
        self.postgres = type(storage).__name__ == "PostgresStorage"
        with storage._write() as cur:
            if self.postgres:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for stmt in (_PG_SCHEMA if self.postgres else _SQLITE_SCHEMA).split(";"):
                if stmt.strip():
                    cur.execute(stmt)

    def _q(self, sql: str) -> str:
        return self.storage._q(sql)

    def publish(self, p: Publication, now_ms: int) -> bool:
        """Store a publication; False if these very bytes were published already.

        Raises:
            SettlementRejected: another document holds its community, period and
                revision, or statements are missing for members of the document.
        """
        m = p.meta
        if set(p.statements) != set(m.members):
            missing = sorted(set(m.members) - set(p.statements))[:5]
            extra = sorted(set(p.statements) - set(m.members))[:5]
            raise SettlementRejected(f"statements do not match the document's members "
                                     f"(missing {missing}, not members {extra})")
        with self.storage._write() as cur:
            cur.execute(self._q("SELECT doc_hash, document FROM settlements WHERE "
                                "community = ? AND period = ? AND revision = ?"),
                        (m.community, m.period, m.revision))
            row = cur.fetchone()
            if row is not None:
                if row[0] == m.doc_hash and bytes(row[1]) == p.document:
                    return False
                raise SettlementRejected(
                    f"{m.community} {m.period} revision {m.revision} is already published "
                    f"as document {row[0]}: publish a new revision (settle run --previous)")
            cur.execute(self._q(f"INSERT INTO settlements ({_LIST_COLUMNS}, document) VALUES "
                                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                        (m.doc_hash, m.community, m.period, m.revision, m.previous, m.root,
                         m.operator_key, m.time_zone, m.currency, m.start_ms, m.end_ms,
                         m.interval_ms, len(m.members), now_ms, p.document))
            cur.executemany(
                self._q("INSERT INTO settlement_members (doc_hash, member, summary, "
                        "statement_json, statement_csv) VALUES (?, ?, ?, ?, ?)"),
                [(m.doc_hash, member, json.dumps(summary, sort_keys=True),
                  zlib.compress(sj, 6), zlib.compress(sc, 6))
                 for member, (summary, sj, sc) in sorted(p.statements.items())])
            cur.executemany(
                self._q(f"INSERT INTO settlement_flows (doc_hash, start_ms, "
                        f"{', '.join(FLOW_FIELDS)}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                [(m.doc_hash, *row) for row in sorted(p.flows)])
        return True

    def record_verification(self, doc_hash: str, against: str, ok: bool, detail: str,
                            now_ms: int) -> None:
        """Keep the latest verification of ``doc_hash`` against ``against``.

        Raises:
            SettlementRejected: no such document is published here.
        """
        with self.storage._write() as cur:
            cur.execute(self._q("SELECT 1 FROM settlements WHERE doc_hash = ?"), (doc_hash,))
            if cur.fetchone() is None:
                raise SettlementRejected(f"document {doc_hash} is not published on this "
                                         "replica: publish it first (settle publish)")
            cur.execute(self._q("DELETE FROM settlement_verifications WHERE doc_hash = ? "
                                "AND against = ?"), (doc_hash, against))
            cur.execute(self._q("INSERT INTO settlement_verifications (doc_hash, against, "
                                "verified_ms, ok, detail) VALUES (?, ?, ?, ?, ?)"),
                        (doc_hash, against, now_ms, 1 if ok else 0, detail[:500]))
            cur.execute(self._q("SELECT against FROM settlement_verifications WHERE "
                                "doc_hash = ? ORDER BY verified_ms DESC, against"),
                        (doc_hash,))
            for (old,) in cur.fetchall()[MAX_VERIFIERS:]:
                cur.execute(self._q("DELETE FROM settlement_verifications WHERE doc_hash = ? "
                                    "AND against = ?"), (doc_hash, old))

    def listing(self, community: str | None, after: tuple[str, str, int] | None, limit: int
             ) -> list[dict[str, Any]]:
        """Published settlements in (community, period, revision) order, with their
        verifications, at most ``limit``, after the key ``after``."""
        where: list[str] = []
        args: list[str | int] = []
        if community is not None:
            where.append("community = ?")
            args.append(community)
        if after is not None:
            where.append("(community > ? OR (community = ? AND (period > ? OR "
                         "(period = ? AND revision > ?))))")
            args += [after[0], after[0], after[1], after[1], after[2]]
        sql = (f"SELECT {_LIST_COLUMNS} FROM settlements"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY community, period, revision LIMIT ?")
        with self.storage._read() as cur:
            cur.execute(self._q(sql), (*args, limit))
            rows = cur.fetchall()
            out = []
            for r in rows:
                item = dict(zip(("document_sha256", "community", "period", "revision",
                                 "previous", "root", "operator_key", "time_zone", "currency",
                                 "start_ms", "end_ms", "interval_ms", "members",
                                 "published_ms"), r, strict=True))
                cur.execute(self._q("SELECT against, verified_ms, ok, detail FROM "
                                    "settlement_verifications WHERE doc_hash = ? "
                                    "ORDER BY verified_ms DESC, against"), (r[0],))
                item["verifications"] = [
                    {"against": a, "verified_ms": t, "ok": bool(ok), "detail": d}
                    for a, t, ok, d in cur.fetchall()]
                out.append(item)
        return out

    def meta(self, doc_hash: str) -> dict[str, Any] | None:
        """The listed fields of one document, or None."""
        with self.storage._read() as cur:
            cur.execute(self._q(f"SELECT {_LIST_COLUMNS} FROM settlements WHERE doc_hash = ?"),
                        (doc_hash,))
            r = cur.fetchone()
        if r is None:
            return None
        return dict(zip(("document_sha256", "community", "period", "revision", "previous",
                         "root", "operator_key", "time_zone", "currency", "start_ms",
                         "end_ms", "interval_ms", "members", "published_ms"), r, strict=True))

    def document(self, doc_hash: str) -> bytes | None:
        """The signed document as published, or None."""
        with self.storage._read() as cur:
            cur.execute(self._q("SELECT document FROM settlements WHERE doc_hash = ?"),
                        (doc_hash,))
            r = cur.fetchone()
        return None if r is None else bytes(r[0])

    def members(self, doc_hash: str, after: str, limit: int) -> list[dict[str, Any]]:
        """Member summaries in id order after ``after``, at most ``limit``."""
        with self.storage._read() as cur:
            cur.execute(self._q("SELECT member, summary FROM settlement_members WHERE "
                                "doc_hash = ? AND member > ? ORDER BY member LIMIT ?"),
                        (doc_hash, after, limit))
            return [{"member": m, **json.loads(s)} for m, s in cur.fetchall()]

    def statement(self, doc_hash: str, member: str, kind: str) -> bytes | None:
        """A member's statement file (``json`` or ``csv``) as published, or None."""
        column = {"json": "statement_json", "csv": "statement_csv"}[kind]
        with self.storage._read() as cur:
            cur.execute(self._q(f"SELECT {column} FROM settlement_members WHERE "
                                "doc_hash = ? AND member = ?"), (doc_hash, member))
            r = cur.fetchone()
        return None if r is None else zlib.decompress(bytes(r[0]))

    def flows(self, doc_hash: str, from_ms: int, to_ms: int) -> list[tuple[int, ...]]:
        """Flow rows ``(start_ms, *FLOW_FIELDS)`` with start in ``[from_ms, to_ms)``."""
        with self.storage._read() as cur:
            cur.execute(self._q(f"SELECT start_ms, {', '.join(FLOW_FIELDS)} FROM "
                                "settlement_flows WHERE doc_hash = ? AND start_ms >= ? AND "
                                "start_ms < ? ORDER BY start_ms"), (doc_hash, from_ms, to_ms))
            return [tuple(r) for r in cur.fetchall()]


def publication(meta: DocumentMeta, document: bytes,
                statements: Iterable[tuple[str, bytes, bytes]],
                flows: Sequence[tuple[int, ...]]) -> Publication:
    """Check statements and flows against ``meta`` and bundle them.

    Raises:
        SettlementRejected: a statement or flow row fails its check.
    """
    from replica.settlements.intake import check_flows, check_statement

    st = {}
    for member, sj, sc in statements:
        if member in st:
            raise SettlementRejected(f"statement of {member!r} given twice")
        st[member] = (check_statement(meta, member, sj, sc), sj, sc)
    rows = [tuple(r) for r in flows]
    check_flows(meta, rows)
    return Publication(meta, document, st, rows)
