"""A member's proof: its lines, checkable offline against the signed document.

The proof carries the signed document (member roots and community totals only,
no other member's lines) and the member's lines. Verifying checks the operator's
signature, recomputes the member's root from the lines, finds it among the signed
member roots, and gives back the lines; the document root is recomputed from the
member leaves, so the member's leaf is proven in the signed tree with its RFC 6962
audit path, which the proof also carries for verifiers that keep only the root.

Optionally (``readings``) it carries the member's own signed readings behind its
intervals: per metering point and interval the readings' origins
(``gateway:height:index``), and per origin the ledger's inclusion proof file
(``docs/export-format.md``) as the replica gave it. Each is verified against the
gateway key it names; no other member's reading is in the proof.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ledger.errors import ChainError, ProofError
from ledger.merkle import inclusion_proof, root_from_inclusion
from ledger.prooffile import verify_proof_text
from ledger.readings import Reading
from settlement.document import (
    Document,
    line_hash,
    member_leaf,
    member_root,
    verify_document,
)
from settlement.errors import DocumentError, SettlementMismatch

PROOF_TYPE = "meterchain-settlement-proof"
PROOF_VERSION = 1


def make_proof(signed: dict[str, Any], doc: Document, member: str, lines: list[str],
               readings: dict[str, Any] | None = None,
               select: Sequence[int] | None = None) -> dict[str, Any]:
    """The proof object for ``member`` with ``lines`` (its statement's lines) and,
    optionally, ``readings``: ``{"traces": {point: [[start_ms, [origin, ...]], ...]},
    "proofs": {origin: inclusion proof object}}`` with origins as ``gw:height:index``.
    With ``select`` (line positions) only those lines are given, each with its
    audit path in the member's tree.

    Raises:
        DocumentError: the member is not in the document.
        SettlementMismatch: the lines do not give the member's signed root.
    """
    roots = doc.member_roots
    if member not in roots:
        raise DocumentError(f"member {member!r} is not in this settlement")
    got = member_root(lines)
    if got != roots[member]:
        raise SettlementMismatch(f"member {member} root", roots[member].hex(), got.hex())
    ids = list(roots)
    leaves = [member_leaf(m, roots[m]) for m in ids]
    index = ids.index(member)
    out: dict[str, Any] = {
        "type": PROOF_TYPE, "version": PROOF_VERSION, "member": member,
        "signed_document": signed, "lines": lines, "member_index": index,
        "audit_path": [h.hex() for h in inclusion_proof(leaves, index)]}
    if select is not None:
        picked = sorted(set(select))
        if not picked or not all(0 <= i < len(lines) for i in picked):
            raise DocumentError(f"select lines among 0..{len(lines) - 1}")
        hashes = [line_hash(ln) for ln in lines]
        out.update(lines=[lines[i] for i in picked], line_indexes=picked,
                   line_count=len(lines),
                   line_paths=[[h.hex() for h in inclusion_proof(hashes, i)] for i in picked])
    if readings is not None:
        out["readings"] = readings
    return out


def _verify_readings(readings: Any, lines: list[str]) -> list[Reading]:
    """Check every traced origin's inclusion proof; return the proven readings.

    Raises:
        DocumentError: malformed, an origin without a proof, a trace of an interval
            the member has no line for, or a proof that does not verify.
    """
    if not isinstance(readings, dict) or not isinstance(readings.get("traces"), dict) or (
            not isinstance(readings.get("proofs"), dict)):
        raise DocumentError("readings: needs traces and proofs")
    starts = {ln.split(",")[2] for ln in lines if ln.startswith("I,")}
    needed: set[str] = set()
    for point, rows in readings["traces"].items():
        for row in rows if isinstance(rows, list) else [None]:
            if not (isinstance(row, list) and len(row) == 2 and isinstance(row[1], list)):
                raise DocumentError(f"readings.traces.{point}: malformed")
            if str(row[0]) not in starts:
                raise DocumentError(f"readings.traces.{point}: interval {row[0]} is not "
                                    "one of the member's")
            needed.update(str(o) for o in row[1])
    proven = []
    for origin in sorted(needed):
        gw, _, rest = origin.partition(":")
        h, _, i = rest.partition(":")
        doc = readings["proofs"].get(origin)
        if doc is None:
            raise DocumentError(f"readings: no inclusion proof for {origin}")
        try:
            key = bytes.fromhex(gw)
            proof, reading = verify_proof_text(json.dumps(doc), key)
        except (ValueError, ChainError) as exc:
            raise DocumentError(f"reading {origin}: {exc}") from None
        if (str(proof.header.height), str(proof.index)) != (h, i):
            raise DocumentError(f"reading {origin}: the proof is of height "
                                f"{proof.header.height} index {proof.index}")
        proven.append(reading)
    return proven


def _partial_root(obj: dict[str, Any], lines: list[str], count: Any, root: bytes) -> bytes:
    """The member root the selected lines' audit paths lead to (each must agree).

    Raises:
        DocumentError: malformed selection or paths.
        SettlementMismatch: a line's path leads elsewhere.
    """
    indexes, paths = obj.get("line_indexes"), obj.get("line_paths")
    if obj.get("line_count") != count or not isinstance(indexes, list) or not isinstance(
            paths, list) or not (len(indexes) == len(paths) == len(lines) > 0):
        raise DocumentError(f"partial proof: needs line_count {count} and an index and "
                            "audit path per line")
    for ln, i, path in zip(lines, indexes, paths, strict=True):
        try:
            steps = [bytes.fromhex(h) for h in path]
            got = root_from_inclusion(line_hash(ln), i, count, steps)
        except (TypeError, ValueError, ProofError) as exc:
            raise DocumentError(f"line {i}: audit path: {exc}") from None
        if got != root:
            raise SettlementMismatch(f"line {i} via its audit path", root.hex(), got.hex(),
                                     actual_line=ln)
    return root


def verify_proof(obj: Any, operator_key: bytes | None = None
                 ) -> tuple[Document, list[str], list[Reading]]:
    """Check a member proof; return the document, the member's proven lines and the
    proven readings behind them (empty when the proof carries none).

    Raises:
        DocumentError: malformed, or the document does not verify.
        SettlementMismatch: the lines or the audit path do not lead to the signed root.
    """
    if not isinstance(obj, dict) or obj.get("type") != PROOF_TYPE:
        raise DocumentError(f"not a settlement proof (type must be {PROOF_TYPE!r})")
    if obj.get("version") != PROOF_VERSION:
        raise DocumentError(f"unsupported proof version {obj.get('version')!r}")
    doc = verify_document(obj.get("signed_document"), operator_key)
    member, lines = obj.get("member"), obj.get("lines")
    if not isinstance(member, str) or not isinstance(lines, list) or not all(
            isinstance(x, str) and x.isascii() for x in lines):
        raise DocumentError("proof needs member and lines (ASCII strings)")
    roots = doc.member_roots
    if member not in roots:
        raise DocumentError(f"member {member!r} is not in this settlement")
    bad = [ln for ln in lines if ln.split(",")[1:2] != [member]]
    if bad:
        raise DocumentError(f"line {bad[0]!r} is not {member}'s")
    if "line_indexes" in obj:
        count = {m["id"]: m["lines"] for m in doc.body["members"]}[member]
        got = _partial_root(obj, lines, count, roots[member])
    else:
        got = member_root(lines)
    if got != roots[member]:
        raise SettlementMismatch(f"member {member} root", roots[member].hex(), got.hex())
    index, path = obj.get("member_index"), obj.get("audit_path")
    if not isinstance(index, int) or not isinstance(path, list):
        raise DocumentError("proof needs member_index and audit_path")
    try:
        steps = [bytes.fromhex(h) for h in path]
    except (TypeError, ValueError):
        raise DocumentError("audit_path: not hex") from None
    try:
        top = root_from_inclusion(member_leaf(member, got), index, len(roots), steps)
    except ProofError as exc:
        raise DocumentError(f"audit path: {exc}") from None
    if top.hex() != doc.body["root"]:
        raise SettlementMismatch("document root via audit path", doc.body["root"], top.hex())
    proven = _verify_readings(obj["readings"], lines) if "readings" in obj else []
    return doc, lines, proven
