"""The replica's storage interface: enrolled gateways, their verified blocks, fork evidence.

Storage does no verification: :mod:`replica.service` verifies every block with the
ledger core before calling :meth:`Storage.append`. Everything is keyed by the gateway's
32-byte public key, so a backend can partition or distribute by it. Backends:
:mod:`replica.storage.sqlite` (embedded default) and :mod:`replica.storage.postgres`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GatewayRecord:
    """An enrolled gateway and where its stored chain stands."""

    key: bytes
    name: str
    site: str | None
    enrolled_ms: int
    revoked_at_ms: int | None
    height: int
    """Height of the stored head, -1 when no block is stored."""
    head_hash: bytes | None
    head_header: bytes | None
    """The head block's canonical 194-byte header (to verify the next block against)."""
    last_seen_ms: int | None
    stored_bytes: int = 0
    """Bytes of block records stored for this gateway (for ``max_bytes_per_gateway``)."""


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """A verified block as stored: its record and the header fields queries need."""

    height: int
    hash: bytes
    time_start_ms: int
    time_end_ms: int
    reading_count: int
    sealed: bool
    record: bytes
    readings_min_ms: int = 0
    """Earliest reading timestamp in the block; with ``readings_max_ms`` the span exports
    select by. Unknown (a sealed block without the key) is ``0 .. 2**63-1``: always
    looked at."""
    readings_max_ms: int = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ForkRecord:
    """Two different signed headers by one key at one height (``a`` was stored first)."""

    key: bytes
    height: int
    header_a: bytes
    sig_a: bytes
    header_b: bytes
    sig_b: bytes
    seen_ms: int


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An API token as stored: never the token itself, only its SHA-256."""

    id: str
    """The token's public identifier (16 hex characters, part of the token text)."""
    name: str
    scopes: tuple[str, ...]
    hash: bytes
    """SHA-256 of the whole token text."""
    created_ms: int
    revoked_ms: int | None


class Storage(abc.ABC):
    """What the replica service needs from a database. Methods are thread-safe.

    Every method may raise :class:`~replica.errors.ReplicaStoreError` when the
    database cannot be reached or written.
    """

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    # --- enrollment --------------------------------------------------------------------

    @abc.abstractmethod
    def enroll(self, key: bytes, name: str, site: str | None, now_ms: int) -> GatewayRecord:
        """Enroll a gateway key.

        Raises:
            EnrollmentError: the key is already enrolled.
        """

    @abc.abstractmethod
    def revoke(self, key: bytes, at_ms: int) -> GatewayRecord:
        """Revoke a key from ``at_ms`` on (blocks ending before it stay valid).

        Raises:
            EnrollmentError: the key is not enrolled.
        """

    @abc.abstractmethod
    def gateway(self, key: bytes) -> GatewayRecord | None:
        """The enrolled gateway with this key, or ``None``."""

    @abc.abstractmethod
    def gateways(self) -> list[GatewayRecord]:
        """Every enrolled gateway, ordered by key."""

    # --- blocks --------------------------------------------------------------------------

    @abc.abstractmethod
    def append(self, key: bytes, blocks: list[StoredBlock], expected_height: int,
               seen_ms: int) -> None:
        """Store consecutive verified blocks after head ``expected_height``, all or none.

        Raises:
            StaleHeadError: the stored head is no longer ``expected_height`` (nothing stored).
        """

    @abc.abstractmethod
    def touch(self, key: bytes, seen_ms: int) -> None:
        """Record that the gateway was seen (a push that stored nothing new)."""

    @abc.abstractmethod
    def block_hashes(self, key: bytes, lo: int, hi: int) -> dict[int, bytes]:
        """Hashes of the stored blocks with ``lo <= height <= hi``."""

    @abc.abstractmethod
    def blocks(self, key: bytes, from_height: int, limit: int) -> list[bytes]:
        """Up to ``limit`` consecutive block records from ``from_height``."""

    @abc.abstractmethod
    def blocks_in_time(self, key: bytes, from_ms: int, to_ms: int, after_height: int,
                       limit: int) -> list[tuple[int, bytes]]:
        """``(height, record)`` of blocks above ``after_height`` that may hold a reading
        stamped in ``[from_ms, to_ms)`` (their readings' span meets it), ordered by
        height, at most ``limit``."""

    @abc.abstractmethod
    def sealed_in_time(self, key: bytes, from_ms: int, to_ms: int) -> bool:
        """Whether any block that may hold a reading stamped in ``[from_ms, to_ms)`` has a
        sealed payload."""

    # --- API tokens ----------------------------------------------------------------------

    @abc.abstractmethod
    def add_token(self, token: TokenRecord) -> None:
        """Store a new API token's record.

        Raises:
            EnrollmentError: a token with this id exists.
        """

    @abc.abstractmethod
    def token(self, token_id: str) -> TokenRecord | None:
        """The token with this id (revoked ones too), or ``None``."""

    @abc.abstractmethod
    def tokens(self) -> list[TokenRecord]:
        """Every token, oldest first."""

    @abc.abstractmethod
    def revoke_token(self, token_id: str, at_ms: int) -> TokenRecord:
        """Revoke a token (a revoked one keeps its first revocation time).

        Raises:
            EnrollmentError: no token has this id.
        """

    # --- forks ---------------------------------------------------------------------------

    @abc.abstractmethod
    def add_fork(self, fork: ForkRecord, max_per_height: int = 4) -> bool:
        """Keep fork evidence: at most ``max_per_height`` pieces per gateway and height;
        beyond that the piece is only counted. A second report of a kept pair is ignored.
        Returns whether the evidence is kept."""

    @abc.abstractmethod
    def forks(self, after: tuple[bytes, int, bytes] | None = None,
              limit: int | None = None) -> list[ForkRecord]:
        """Fork evidence ordered by (key, height, header_b), after that position, at most
        ``limit`` (all without)."""

    @abc.abstractmethod
    def fork_counts(self) -> tuple[int, int]:
        """``(kept, dropped)``: pieces of fork evidence kept, and those only counted."""

    @abc.abstractmethod
    def block_sizes(self, key: bytes, from_height: int, limit: int) -> list[tuple[int, int]]:
        """``(height, record bytes)`` of up to ``limit`` consecutive blocks from
        ``from_height`` (to bound a read by bytes before fetching the records)."""


def open_storage(url: str, *, pool_size: int = 8) -> Storage:
    """Open the storage named by a ``sqlite:///path`` or ``postgresql://`` URL.

    Raises:
        ConfigError: the URL names no known backend.
        ReplicaStoreError: the database cannot be opened or its schema created.
    """
    from ledger.errors import ConfigError

    if url.startswith("sqlite:///"):
        from replica.storage.sqlite import SqliteStorage

        return SqliteStorage(url[len("sqlite:///"):])
    if url.startswith(("postgresql://", "postgres://")) or "host=" in url:
        from replica.storage.postgres import PostgresStorage

        return PostgresStorage(url, pool_size=pool_size)
    raise ConfigError("storage.url", f"want sqlite:///path or postgresql://..., got {url!r}")
