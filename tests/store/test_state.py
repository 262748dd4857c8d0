"""StateDB: values and cursors persist, writes are atomic replacements, bad files are named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.storage.state import StateDB
from ledger.errors import StoreError


def test_values_and_cursors_persist(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with StateDB(path) as db:
        assert db.get("x") is None and db.get("x", 5) == 5
        assert db.cursor("replica-a") == -1
        db.set("x", {"a": [1, 2]})
        db.set("x", "replaced")
        db.set_cursor("replica-a", 10)
        db.set_cursor("replica-b", -1)
        db.set_cursor("replica-a", 12)
    with StateDB(path) as db:
        assert db.get("x") == "replaced"
        assert db.cursors() == {"replica-a": 12, "replica-b": -1}
        with pytest.raises(ValueError):
            db.set_cursor("replica-a", -2)
        with pytest.raises(TypeError):
            db.set("y", object())
        assert db.get("y") is None


def test_each_write_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with StateDB(path) as db:
        db.set("k", 1)
        inode = path.stat().st_ino
        db.set("k", 2)
        assert path.stat().st_ino != inode  # a new file renamed into place, not rewritten
    assert sorted(os.listdir(tmp_path)) == ["state.json"]  # no temp file left behind


def test_bad_state_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(StoreError, match="state.json: state file is not valid JSON"):
        StateDB(path)
    path.write_text("[1, 2]")
    with pytest.raises(StoreError, match="JSON object"):
        StateDB(path)
    with pytest.raises(StoreError, match="does not exist"):
        StateDB(tmp_path / "missing" / "state.json")
