"""A cursor that cannot be saved (the state file's disk is full) never stops forwarding:
the forwarder goes on with the height in memory, says why it is not saved, and saves it
once the disk has room again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.pipeline.forwarder import Forwarder
from agent.storage.state import StateDB
from tests.forwarding.conftest import FAST, run_until, same_chain
from tests.support.tmpfs import fill, small_tmpfs


def test_forwarding_goes_on_while_the_cursor_cannot_be_saved(replica, key, store,
                                                              tmp_path: Path) -> None:
    replica.enroll(key)
    with small_tmpfs(tmp_path / "var", 1 << 20) as var:
        state = StateDB(var / "state.json")
        filler = var / "FILLER"
        fill(filler)
        fw = Forwarder("r1", replica.url, store, state, gateway_key=key, options=FAST)
        seen: dict[str, Any] = {}

        def during(elapsed: float) -> None:
            if fw.acked_height == 39 and "full" not in seen:
                seen["full"] = fw.status
                seen["saved_then"] = state.cursor("r1")
                filler.unlink()

        run_until([fw], lambda: "full" in seen and fw.status["saved_height"] == 39,
                  during=during)
        full = seen["full"]
        assert full["acked_height"] == 39 and full["backlog_blocks"] == 0
        assert full["saved_height"] == -1 and seen["saved_then"] == -1
        assert "No space left on device" in full["cursor_error"]
        assert fw.status["cursor_error"] is None
        state.close()
        with StateDB(var / "state.json") as reopened:
            assert reopened.cursor("r1") == 39
    same_chain(replica.records(key), store, 39)
