"""Which gateways are silent or behind: last push, newest reading, index progress.

A gateway is ``silent`` when it has not pushed for longer than ``silent_after`` (or
never pushed), ``behind`` when it still pushes but its newest indexed reading is older
than ``behind_after`` (a backlog being caught up, or meters not read), ``ok`` otherwise.
``revoked`` gateways are shown as such. Ages are in whole seconds from the replica's
clock.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from replica.meterdata.errors import MeterDataInputError

if TYPE_CHECKING:
    from replica.meterdata.query import MeterData

_DURATION_RE = re.compile(r"(\d{1,9})\s*(s|m|min|h|d)?")
_UNIT_MS = {"s": 1000, None: 1000, "m": 60_000, "min": 60_000, "h": 3_600_000,
            "d": 86_400_000}


def parse_duration(text: str, field: str) -> int:
    """``90s``, ``15m``, ``2h``, ``1d`` or plain seconds as milliseconds.

    Raises:
        MeterDataInputError: anything else.
    """
    m = _DURATION_RE.fullmatch(text.strip())
    if not m:
        raise MeterDataInputError(field, text, "want a duration such as 90s, 15m, 2h or 1d")
    return int(m[1]) * _UNIT_MS[m[2]]


def _age_s(now_ms: int, ms: int | None) -> int | None:
    return None if ms is None else max(0, (now_ms - ms) // 1000)


def status_rows(md: MeterData, now_ms: int, silent_after_ms: int, behind_after_ms: int
                ) -> list[dict[str, Any]]:
    """One row per enrolled gateway, the most urgent first (silent, behind, ok)."""
    states = md.store.index_states()
    rows = []
    for g in md.storage.gateways():
        st = states.get(g.key)
        newest = st.newest_reading_ms if st else None
        if g.revoked_at_ms is not None and g.revoked_at_ms <= now_ms:
            state = "revoked"
        elif g.last_seen_ms is None or now_ms - g.last_seen_ms > silent_after_ms:
            state = "silent"
        elif newest is None or now_ms - newest > behind_after_ms:
            state = "behind"
        else:
            state = "ok"
        rows.append({
            "gateway": g.key.hex(), "name": g.name, "site": g.site, "state": state,
            "height": g.height, "last_seen_ms": g.last_seen_ms,
            "last_seen_age_s": _age_s(now_ms, g.last_seen_ms),
            "newest_reading_ms": newest, "newest_reading_age_s": _age_s(now_ms, newest),
            "indexed_height": st.indexed_height if st else -1,
            "sealed_not_indexed": st.sealed_skipped if st else 0,
        })
    order = {"silent": 0, "behind": 1, "revoked": 2, "ok": 3}
    rows.sort(key=lambda r: (order[str(r["state"])], -int(r["last_seen_age_s"] or 0),
                             str(r["name"])))
    return rows


def status_json(md: MeterData, now_ms: int, silent_after_ms: int, behind_after_ms: int
                ) -> dict[str, Any]:
    """``GET /v1/meterdata/gateways``."""
    rows = status_rows(md, now_ms, silent_after_ms, behind_after_ms)
    return {"now_ms": now_ms, "silent_after_s": silent_after_ms // 1000,
            "behind_after_s": behind_after_ms // 1000, "gateways": rows,
            "silent": sum(r["state"] == "silent" for r in rows),
            "behind": sum(r["state"] == "behind" for r in rows)}
