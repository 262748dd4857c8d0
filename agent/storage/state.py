"""Small mutable state (replica cursors, metadata) in TinyDB, written atomically.

TinyDB's default storage rewrites its file in place (seek 0, write, truncate), which a
kill can leave half-written. :class:`AtomicJSONStorage` writes a temporary file, fsyncs
it, renames it over the old one and fsyncs the directory, so a reader always finds
either the old or the new state, whole. Each write rewrites the whole file: this is for
a few kilobytes of state, never for blocks. A write that fails leaves the old file as it
was and removes its temporary file (on a full disk it would hold space); it raises
:class:`~ledger.errors.StoreFullError` when the disk is full, so callers can keep the
value in memory and retry (see ``agent/storage/reserve.py``).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from agent.storage.atomic import write_atomically
from ledger.errors import StoreError, StoreFullError

_META_TABLE = "meta"
_CURSOR_TABLE = "cursors"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class AtomicJSONStorage(Storage):
    """TinyDB storage: JSON file replaced atomically (temp + fsync + rename + dir fsync)."""

    def __init__(self, path: str | os.PathLike[str], fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        if not self.path.parent.is_dir():
            raise StoreError(f"{self.path.parent}: state directory does not exist")

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read state: {exc.strerror}") from None
        if not text:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoreError(f"{self.path}: state file is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise StoreError(f"{self.path}: state file does not hold a JSON object")
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        """Replace the file with ``data``; on failure the old file is left as it was.

        Raises:
            StoreFullError: no space left on the disk.
            StoreError: any other failure to write.
        """
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        payload = json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")
        try:
            write_atomically(self.path, payload, tmp, fsync=self.fsync, fsync_dir=self.fsync)
        except OSError as exc:
            cls = StoreFullError if exc.errno in _NO_SPACE else StoreError
            raise cls(f"{self.path}: cannot write state: {exc.strerror}") from None

    def close(self) -> None:
        pass


class StateDB:
    """Key/value metadata and replica cursors in one atomically written TinyDB file."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        """Open (or create on first write) the state file at ``path``.

        Raises:
            StoreError: the directory is missing or the file is unreadable or not JSON.
        """
        self.path = Path(path)
        self._db = TinyDB(self.path, storage=AtomicJSONStorage, fsync=fsync)
        self._db.storage.read()  # fail now, not on first use, if the file is bad
        self._meta = self._db.table(_META_TABLE)
        self._cursors = self._db.table(_CURSOR_TABLE)

    def get(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        doc = self._meta.get(Query().key == key)
        return default if doc is None else doc["value"]

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key`` (durable when it returns).

        Raises:
            TypeError: the value is not JSON-serialisable.
            StoreFullError: the disk is full (the old value stays in the file).
            StoreError: the file cannot be written.
        """
        json.dumps(value)  # refuse before touching the file
        self._meta.upsert({"key": key, "value": value}, Query().key == key)

    def cursor(self, replica: str) -> int:
        """Height the replica has acknowledged; -1 when it has acknowledged nothing."""
        doc = self._cursors.get(Query().replica == replica)
        return -1 if doc is None else int(doc["height"])

    def set_cursor(self, replica: str, height: int) -> None:
        """Record that ``replica`` has acknowledged every block up to ``height``.

        Raises:
            ValueError: height below -1.
            StoreFullError: the disk is full (the old cursor stays in the file).
            StoreError: the file cannot be written.
        """
        if height < -1:
            raise ValueError(f"cursor height must be >= -1, got {height}")
        self._cursors.upsert({"replica": replica, "height": int(height)},
                             Query().replica == replica)

    def cursors(self) -> dict[str, int]:
        """Every replica's acknowledged height."""
        return {str(d["replica"]): int(d["height"]) for d in self._cursors.all()}

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
