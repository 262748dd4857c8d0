"""From a computed :class:`~settlement.engine.Result` to a document body (unsigned).

A new revision of the same community and period names its predecessor's document
hash in ``previous``; revisions form an append-only chain (``docs/settlement.md``
section 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from settlement.document import TYPE, VERSION, Document, document_root, member_root_encoded
from settlement.engine import ENGINE_VERSION, TOTAL_FIELDS, Result
from settlement.errors import DocumentError
from settlement.source import Source


def member_roots(result: Result) -> list[tuple[str, bytes]]:
    """``(member, root)`` for every member, in member-id order."""
    return [(m, member_root_encoded(result.lines.encoded(m))) for m in result.members]


def community_totals(result: Result) -> dict[str, int]:
    """Every ``T`` field summed over members, plus the member and line counts."""
    out = {f: sum(result.totals[m][f] for m in result.members) for f in TOTAL_FIELDS}
    out["members"] = len(result.members)
    out["lines"] = sum(result.lines.count(m) for m in result.members)
    return out


def make_body(result: Result, sources: Sequence[Source], operator_key: bytes,
              previous: Document | None = None,
              roots: list[tuple[str, bytes]] | None = None) -> dict[str, Any]:
    """The document body for ``result`` (``roots`` if already computed).

    Raises:
        DocumentError: ``previous`` is for another community or period.
    """
    c, p = result.community, result.period
    revision, prev_hash = 0, None
    if previous is not None:
        pb = previous.body
        if pb["community"]["name"] != c.name or pb["period"]["label"] != p.label:
            raise DocumentError(
                f"previous document settles {pb['community']['name']} {pb['period']['label']},"
                f" not {c.name} {p.label}")
        revision, prev_hash = pb["revision"] + 1, previous.hash.hex()
    roots = roots if roots is not None else member_roots(result)
    return {
        "type": TYPE,
        "version": VERSION,
        "community": {"name": c.name, "config_sha256": c.sha256, "time_zone": c.time_zone,
                      "currency": c.currency,
                      **({"coefficients_sha256": c.coefficients_sha256}
                         if c.coefficients_sha256 else {})},
        "period": {"label": p.label, "start_ms": p.start_ms, "end_ms": p.end_ms,
                   "interval_ms": c.interval_ms},
        "algorithm": {"engine": "meterchain-settlement", "engine_version": ENGINE_VERSION,
                      "rule": result.rule.NAME, "rule_version": result.rule.VERSION},
        "sources": sorted((s.as_json() for s in sources), key=lambda s: s["gateway"]),
        "members": [{"id": m, "root": r.hex(), "lines": result.lines.count(m)}
                    for m, r in roots],
        "root": document_root(roots).hex(),
        "totals": community_totals(result),
        "revision": revision,
        "previous": prev_hash,
        "operator_key": operator_key.hex(),
    }
