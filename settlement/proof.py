"""A member's proof: its lines, checkable offline against the signed document.

The proof carries the signed document (member roots and community totals only,
no other member's lines) and the member's lines. Verifying checks the operator's
signature, recomputes the member's root from the lines, finds it among the signed
member roots, and gives back the lines; the document root is recomputed from the
member leaves, so the member's leaf is proven in the signed tree with its RFC 6962
audit path, which the proof also carries for verifiers that keep only the root.
"""

from __future__ import annotations

from typing import Any

from ledger.errors import ProofError
from ledger.merkle import inclusion_proof, root_from_inclusion
from settlement.document import (
    Document,
    member_leaf,
    member_root,
    verify_document,
)
from settlement.errors import DocumentError, SettlementMismatch

PROOF_TYPE = "meterchain-settlement-proof"
PROOF_VERSION = 1


def make_proof(signed: dict[str, Any], doc: Document, member: str, lines: list[str]
               ) -> dict[str, Any]:
    """The proof object for ``member`` with ``lines`` (its statement's lines).

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
    return {"type": PROOF_TYPE, "version": PROOF_VERSION, "member": member,
            "signed_document": signed, "lines": lines, "member_index": index,
            "audit_path": [h.hex() for h in inclusion_proof(leaves, index)]}


def verify_proof(obj: Any, operator_key: bytes | None = None) -> tuple[Document, list[str]]:
    """Check a member proof; return the document and the member's proven lines.

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
    return doc, lines
