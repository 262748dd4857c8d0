"""A gateway's state on the overview, from ``GET /v1/gateways`` and ``GET /v1/forks``.

``static/overview.js`` applies the same rule in the browser; the tests hold the two
together. In order of precedence:

- ``revoked``: its revocation time has passed;
- ``fork``: this replica recorded fork evidence for it;
- ``silent``: no block stored yet, or the last stored more than ``silent_after_s`` ago;
- ``behind``: blocks arrive, but the newest reading held (``last_reading_ms``, the head
  block's end) is older than ``behind_after_s``: a backlog, or meters not read;
- ``ok``: otherwise.

This is the rule of ``GET /v1/meterdata/gateways`` (:mod:`replica.meterdata.status`,
``meterchain replica status``), with fork evidence added and the chain's head time in
place of the readings index's, so that sealed payloads count too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

STATES = ("ok", "behind", "silent", "revoked", "fork")


def gateway_state(row: Mapping[str, Any], fork_keys: Collection[str], now_ms: int,
                  behind_after_s: int, silent_after_s: int) -> str:
    """The state of one ``/v1/gateways`` row at ``now_ms``."""
    revoked = row.get("revoked_at_ms")
    if revoked is not None and revoked <= now_ms:
        return "revoked"
    if row["key"] in fork_keys:
        return "fork"
    seen = row.get("last_seen_ms")
    if seen is None or now_ms - seen > silent_after_s * 1000:
        return "silent"
    newest = row.get("last_reading_ms")
    if newest is None or now_ms - newest > behind_after_s * 1000:
        return "behind"
    return "ok"
