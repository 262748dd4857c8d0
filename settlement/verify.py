"""Recompute a settlement and compare it with a signed document, naming what differs."""

from __future__ import annotations

from collections.abc import Mapping

from settlement.build import make_body
from settlement.document import Document
from settlement.engine import Result
from settlement.errors import SettlementMismatch
from settlement.source import Source


def first_difference(published: list[str], recomputed: list[str]) -> tuple[str | None,
                                                                            str | None]:
    """The first line where two line lists differ (None where one list ended)."""
    for a, b in zip(published, recomputed, strict=False):
        if a != b:
            return a, b
    n = min(len(published), len(recomputed))
    return (published[n] if len(published) > n else None,
            recomputed[n] if len(recomputed) > n else None)


def compare(doc: Document, result: Result, sources: list[Source],
            published_lines: Mapping[str, list[str]] | None = None) -> None:
    """Check that recomputing gives the document byte for byte.

    ``published_lines`` (member -> the lines of its published statement) lets the
    error name the first differing line; without it the member is named.

    Raises:
        SettlementMismatch: the first difference: config hash, period, algorithm,
            a member's root (with the first differing line when known), the root,
            the totals, or the blocks used (sources).
    """
    body = make_body(result, sources, bytes.fromhex(doc.body["operator_key"]))
    want = doc.body
    for key in ("community", "period", "algorithm"):
        if body[key] != want.get(key):
            raise SettlementMismatch(key, repr(want.get(key)), repr(body[key]))
    roots = {m["id"]: m["root"] for m in want["members"]}
    for m in body["members"]:
        if roots.get(m["id"]) != m["root"]:
            line = actual = None
            if published_lines is not None and m["id"] in published_lines:
                line, actual = first_difference(published_lines[m["id"]],
                                                result.lines[m["id"]])
            raise SettlementMismatch(f"member {m['id']} root", str(roots.get(m["id"])),
                                     m["root"], line=line, actual_line=actual)
    if [m["id"] for m in body["members"]] != list(roots):
        raise SettlementMismatch("members", repr(list(roots)),
                                 repr([m["id"] for m in body["members"]]))
    for key in ("root", "totals", "sources"):
        if body[key] != want.get(key):
            raise SettlementMismatch(key, repr(want.get(key)), repr(body[key]))
