"""A fixed data set for the web view's browser tests and ``bench/ui.py``.

Built through :class:`replica.service.ReplicaService` (every block verified as a push
would be), with the replica's clock set per push so that each gateway lands in a known
state of the overview at ``now_ms``: ``north`` ok, ``east`` behind, ``south`` silent (no
block), ``west`` revoked, ``forky`` with fork evidence. ``extra`` more gateways
(``gw-0000``...) are ok, behind or silent in turn.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from replica.config import Limits
from replica.service import ReplicaService
from replica.storage.base import ForkRecord, Storage
from tests.support.chains import gateway_key, make_chain

DAY_MS = 86_400_000
BEHIND_S = 900
SILENT_S = 3600


@dataclass
class UiDataSet:
    """What was built: ``keys`` by gateway name, ``now_ms`` the time states refer to."""

    now_ms: int
    keys: dict[str, str] = field(default_factory=dict)
    expected_state: dict[str, str] = field(default_factory=dict)


def push_chain(storage: Storage, key: bytes, seed: bytes, n: int, start_ms: int,
               seen_ms: int, per_block: int = 4) -> None:
    """Push ``n`` blocks of ``per_block`` readings through the service, seen at ``seen_ms``."""
    blocks = make_chain(seed, n, per_block, start_ms=start_ms, span_ms=900_000)
    svc = ReplicaService(storage, Limits(rate_per_gateway=0), clock_ms=lambda: seen_ms)
    body = json.dumps({"blocks": [base64.b64encode(b.encode()).decode() for b in blocks]})
    svc.push(key.hex(), body.encode())


def build(storage: Storage, now_ms: int, extra: int = 0) -> UiDataSet:
    """Enroll and fill the data set's gateways into ``storage``."""
    ds = UiDataSet(now_ms)
    start = now_ms - DAY_MS

    def enroll(name: str, site: str | None, state: str) -> bytes:
        key = gateway_key(name.encode())
        storage.enroll(key, name, site, start - 60_000)
        ds.keys[name] = key.hex()
        ds.expected_state[name] = state
        return key

    k = enroll("north", "plant-1", "ok")
    push_chain(storage, k, b"north", 6, start, now_ms - 60_000)
    k = enroll("east", "plant-2", "behind")
    push_chain(storage, k, b"east", 3, start, now_ms - (BEHIND_S + 600) * 1000)
    enroll("south", None, "silent")
    k = enroll("west", "plant-1", "revoked")
    push_chain(storage, k, b"west", 2, start, now_ms - 120_000)
    storage.revoke(k, now_ms - 60_000)
    k = enroll("forky", "plant-3", "fork")
    push_chain(storage, k, b"forky", 3, start, now_ms - 30_000)
    a = make_chain(b"forky", 3, 4, start_ms=start, span_ms=900_000)[2]
    b = make_chain(b"forky", 3, 5, start_ms=start, span_ms=900_000)[2]
    storage.add_fork(ForkRecord(k, 2, a.header.encode(), a.signature, b.header.encode(),
                                b.signature, now_ms - 30_000))
    ages = (60, BEHIND_S + 60, None)
    for i in range(extra):
        name = f"gw-{i:04d}"
        age = ages[i % 3]
        k = enroll(name, f"site-{i % 37}", ("ok", "behind", "silent")[i % 3])
        if age is not None:
            push_chain(storage, k, name.encode(), 2, start, now_ms - age * 1000)
    return ds
