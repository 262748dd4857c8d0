"""Fill the readings index from stored blocks, and rebuild it from scratch.

The index follows each gateway's stored chain with a cursor (``indexed_height``):
:func:`catch_up` indexes the blocks above it, in pages, each page in one transaction
with the cursor's move, so a crash or a concurrent indexer never loses or doubles a
row. The replica calls it after every stored push and before answering a meter-data
query, so a query always sees every stored block. :func:`reindex` drops the index and
builds it again from the blocks (the chain is the only truth).

Sealed payloads are indexed when the replica holds the utility's secret key; without
it they are counted (``sealed_skipped``) and left out. After configuring the key, run
``meterchain replica reindex``.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable

from ledger import Block, PayloadEncoding, check_plain_payload, format_obis, open_payload
from ledger.errors import ChainError, DecryptError
from replica.meterdata.store import IndexRow, MeterDataStore
from replica.storage.base import Storage
from replica.storage.sql import SqlStorage

log = logging.getLogger("meterchain.replica.index")

PAGE_BLOCKS = 500
"""Blocks decoded and written per transaction."""


# The parts of a canonical reading (docs/ledger-format.md, "Readings"): salt (16), meter
# id length (1), meter id, OBIS (6), then these, the unit between them.
_VALUE = struct.Struct(">qbB")  # value, decimal exponent, unit length
_TIME = struct.Struct(">QBH")  # timestamp ms, clock source, quality flags
_SALT = 16


def block_rows(block: Block, utility_sk: bytes | None) -> list[IndexRow] | None:
    """The index rows of one block; None when it is sealed and no key is given.

    The payload is first checked against the header (length prefixes, count, every
    reading canonical, Merkle root) by the ledger core; the checked readings are then
    read field by field without being decoded into objects and encoded again (a test
    compares this with :func:`ledger.decode_reading` reading for reading).

    Raises:
        ChainError: the stored block does not match its header (a tampered database),
            or the key does not open it.
    """
    header = block.header
    if header.payload_encoding == PayloadEncoding.SEALED:
        if utility_sk is None:
            return None
        try:
            plain = open_payload(block.payload, utility_sk)
        except DecryptError as exc:
            raise exc.at_height(header.height) from None
    else:
        plain = block.payload
    encoded = check_plain_payload(header, plain)
    h = block.height
    names: dict[bytes, tuple[str, str]] = {}
    rows: list[IndexRow] = []
    append = rows.append
    value_at, time_at = _VALUE.unpack_from, _TIME.unpack_from
    for i, e in enumerate(encoded):
        p = _SALT + 1 + e[_SALT]
        ident = e[_SALT:p + 6]
        got = names.get(ident)
        if got is None:
            got = names[ident] = (e[_SALT + 1:p].decode("utf-8"), format_obis(e[p:p + 6]))
        value, exponent, ulen = value_at(e, p + 6)
        q = p + 16
        ts, _clock, quality = time_at(e, q + ulen)
        append((got[0], got[1], e[q:q + ulen].decode("ascii"), exponent, ts, h, i, value,
                quality))
    return rows


def catch_up(storage: Storage, store: MeterDataStore, key: bytes,
             utility_sk: bytes | None, *, page_blocks: int = PAGE_BLOCKS) -> int:
    """Index the gateway's stored blocks above its cursor; return readings added.

    Raises:
        ChainError: a stored block does not decode or verify against its header.
        ReplicaStoreError: the database failed.
    """
    added = 0
    rec = storage.gateway(key)
    if rec is None:
        return 0
    while True:
        st = store.index_state(key)
        if st.indexed_height >= rec.height:
            return added
        records = storage.blocks(key, st.indexed_height + 1, page_blocks)
        if not records:
            return added
        rows: list[IndexRow] = []
        sealed = 0
        top = st.indexed_height
        for raw in records:
            block = Block.decode(raw)
            got = block_rows(block, utility_sk)
            if got is None:
                sealed += 1
            else:
                rows.extend(got)
            top = block.height
        if store.add_index_rows(key, st.indexed_height, top, rows, sealed):
            added += len(rows)
        rec = storage.gateway(key) or rec


def catch_up_all(storage: Storage, store: MeterDataStore, utility_sk: bytes | None,
                 progress: Callable[[int, int, int], None] | None = None) -> int:
    """:func:`catch_up` every enrolled gateway; return readings added.

    ``progress(done, total, readings)`` is called after each gateway.
    """
    gws = storage.gateways()
    total = 0
    for i, g in enumerate(gws):
        total += catch_up(storage, store, g.key, utility_sk)
        if progress is not None:
            progress(i + 1, len(gws), total)
    return total


def catch_up_quietly(storage: Storage, store: MeterDataStore, key: bytes,
                     utility_sk: bytes | None) -> None:
    """:func:`catch_up` after a push: a failure is logged, never refuses the push (the
    blocks are stored; the next query or push catches up)."""
    try:
        catch_up(storage, store, key, utility_sk)
    except (ChainError, OSError) as exc:
        log.error("readings index of gateway %s not updated: %s", key.hex(), exc)
    except Exception as exc:  # noqa: BLE001 -- the push succeeded; the index is derived
        log.error("readings index of gateway %s not updated: %s: %s", key.hex(),
                  type(exc).__name__, exc)


def reindex(storage: Storage, store: MeterDataStore, utility_sk: bytes | None,
            progress: Callable[[int, int, int], None] | None = None) -> int:
    """Drop the readings index and rebuild it from the stored blocks; return its size.

    Raises:
        ChainError: a stored block does not decode or verify against its header.
        ReplicaStoreError: the database failed.
    """
    store.clear_index()
    return catch_up_all(storage, store, utility_sk, progress)


class IndexFollower:
    """Keeps one storage's readings index up to date; the replica service holds one.

    The meter-data tables are created on first use, so a replica that never indexes
    (a storage that is not SQL) pays nothing.
    """

    def __init__(self, storage: Storage, utility_sk: bytes | None) -> None:
        self.storage = storage
        self.utility_sk = utility_sk
        self._store: MeterDataStore | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> MeterDataStore:
        """The meter-data tables (created when first needed).

        Raises:
            ReplicaStoreError: the tables cannot be created.
        """
        with self._lock:
            if self._store is None:
                self._store = MeterDataStore(self.storage)
            return self._store

    def after_push(self, key: bytes) -> None:
        """Index what a push stored (failures are logged: the push itself succeeded)."""
        if not isinstance(self.storage, SqlStorage):
            return
        try:
            store = self.store
        except Exception as exc:  # noqa: BLE001 -- the push succeeded; the index is derived
            log.error("readings index unavailable: %s: %s", type(exc).__name__, exc)
            return
        catch_up_quietly(self.storage, store, key, self.utility_sk)
