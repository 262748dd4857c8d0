"""The signed settlement document: canonical encoding, Merkle commitments, signature.

``docs/settlement.md`` is the normative description of every byte here. In short:

- every output line is ASCII text; ``line_hash = SHA-256(0x10 || line)``;
- a member's root is the RFC 6962 Merkle tree hash (the ledger core's, interior nodes
  ``SHA-256(0x01 || left || right)``) over its line hashes in order;
- the document root is the RFC 6962 hash over member leaves
  ``SHA-256(0x11 || member root || member id)`` in member-id order;
- the document body is canonical JSON (keys sorted, no whitespace, ASCII, integers
  only); ``document_hash = SHA-256(0x12 || body)``; the operator signs the 32-byte
  document hash with Ed25519. A file is ``{"document": body, "signature": hex}``.

Prefixes 0x10-0x12 differ from the ledger's 0x00-0x03, so no settlement hash can be
taken for a reading, node, header or payload hash. Verification here is pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing

from ledger.merkle import merkle_root
from settlement.errors import DocumentError, SettlementMismatch

TYPE = "meterchain-settlement"
VERSION = 1
"""Version of the document format defined here (the body's ``version``)."""
LINE_PREFIX = b"\x10"
MEMBER_PREFIX = b"\x11"
DOCUMENT_PREFIX = b"\x12"
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024


def canonical(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, ASCII escapes, integers only.

    Raises:
        DocumentError: a float (or anything but dict, list, str, int, bool, None).
    """
    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if not isinstance(k, str):
                    raise DocumentError(f"non-string key {k!r}")
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif not (o is None or isinstance(o, (str, int))):
            raise DocumentError(f"value {o!r} has no canonical encoding (no floats)")
    walk(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def line_hash(line: str) -> bytes:
    """SHA-256(0x10 || ASCII line)."""
    return hashlib.sha256(LINE_PREFIX + line.encode("ascii")).digest()


def member_root(lines: Iterable[str]) -> bytes:
    """RFC 6962 tree hash over a member's line hashes."""
    return member_root_encoded([ln.encode("ascii") for ln in lines])


def member_root_encoded(lines: Iterable[bytes]) -> bytes:
    """:func:`member_root` of lines already encoded as ASCII bytes."""
    sha, prefix = hashlib.sha256, LINE_PREFIX
    return merkle_root([sha(prefix + ln).digest() for ln in lines])


def member_leaf(member: str, root: bytes) -> bytes:
    """SHA-256(0x11 || member root || ASCII member id)."""
    return hashlib.sha256(MEMBER_PREFIX + root + member.encode("ascii")).digest()


def document_root(members: Sequence[tuple[str, bytes]]) -> bytes:
    """RFC 6962 tree hash over the member leaves, in the order given (member id order)."""
    return merkle_root([member_leaf(m, r) for m, r in members])


def document_hash(body: Mapping[str, Any]) -> bytes:
    """SHA-256(0x12 || canonical body): what the operator signs and versions refer to."""
    return hashlib.sha256(DOCUMENT_PREFIX + canonical(body)).digest()


def sign(body: Mapping[str, Any], signing_key: nacl.signing.SigningKey) -> dict[str, Any]:
    """The signed file object ``{"document": body, "signature": hex}``.

    Raises:
        DocumentError: the body's ``operator_key`` is not the signing key's public key.
    """
    if body.get("operator_key") != bytes(signing_key.verify_key).hex():
        raise DocumentError("operator_key in the document is not the signing key's")
    sig = signing_key.sign(document_hash(body)).signature
    return {"document": dict(body), "signature": sig.hex()}


def _hex(v: Any, size: int, what: str) -> bytes:
    if not isinstance(v, str) or len(v) != 2 * size:
        raise DocumentError(f"{what}: must be {2 * size} hex characters")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise DocumentError(f"{what}: not hex") from None


@dataclass(frozen=True)
class Document:
    """A verified settlement document."""

    body: dict[str, Any]
    signature: bytes
    hash: bytes

    @property
    def member_roots(self) -> dict[str, bytes]:
        return {m["id"]: bytes.fromhex(m["root"]) for m in self.body["members"]}


def verify_document(obj: Any, operator_key: bytes | None = None) -> Document:
    """Check a signed document's shape, signature and root (docs/settlement.md 7).

    The totals and every member root can only be checked by recomputing the
    settlement (:mod:`settlement.verify`); here the root must follow from the member
    roots.

    Raises:
        DocumentError: malformed, unknown version, bad signature or wrong key.
        SettlementMismatch: the root does not follow from the member roots.
    """
    if not isinstance(obj, dict) or set(obj) != {"document", "signature"}:
        raise DocumentError('not a settlement document (want {"document", "signature"})')
    body = obj["document"]
    if not isinstance(body, dict) or body.get("type") != TYPE:
        raise DocumentError(f"document type must be {TYPE!r}")
    if body.get("version") != VERSION:
        raise DocumentError(f"unsupported settlement document version {body.get('version')!r}"
                            f" (this verifier knows {VERSION})")
    key = _hex(body.get("operator_key"), 32, "operator_key")
    if operator_key is not None and key != operator_key:
        raise DocumentError(f"signed by {key.hex()}, expected operator {operator_key.hex()}")
    sig = _hex(obj["signature"], 64, "signature")
    digest = document_hash(body)
    try:
        nacl.signing.VerifyKey(key).verify(digest, sig)
    except (nacl.exceptions.BadSignatureError, ValueError):
        raise DocumentError("operator signature does not verify") from None
    members = body.get("members")
    if not isinstance(members, list):
        raise DocumentError("members: must be a list")
    pairs = []
    for i, m in enumerate(members):
        if not isinstance(m, dict) or not isinstance(m.get("id"), str):
            raise DocumentError(f"members[{i}]: needs id and root")
        pairs.append((m["id"], _hex(m.get("root"), 32, f"members[{i}].root")))
    ids = [m for m, _ in pairs]
    if ids != sorted(set(ids)):
        raise DocumentError("members must be sorted by id and unique")
    got = document_root(pairs).hex()
    if got != body.get("root"):
        raise SettlementMismatch("root", str(body.get("root")), got)
    return Document(body, sig, digest)


def load_document(path: str, operator_key: bytes | None = None) -> Document:
    """Read and verify a signed document file.

    Raises:
        DocumentError: unreadable as JSON, too large, or does not verify.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as fh:
        raw = fh.read(MAX_DOCUMENT_BYTES + 1)
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"{path}: larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DocumentError(f"{path}: not JSON: {exc}") from None
    return verify_document(obj, operator_key)


def verify_revisions(docs: list[Document]) -> None:
    """Check that verified documents form one revision chain, oldest first.

    Raises:
        DocumentError: the first is not revision 0 (with no previous), or a document
            does not name its predecessor's hash, skips a revision number, or
            settles another community or period.
    """
    if not docs:
        raise DocumentError("no documents to check")
    first = docs[0].body
    if first.get("revision") != 0 or first.get("previous") is not None:
        raise DocumentError(f"the chain must start at revision 0 with no previous, got "
                            f"revision {first.get('revision')}")
    for prev, doc in zip(docs, docs[1:], strict=False):
        a, b = prev.body, doc.body
        if (b["community"]["name"], b["period"]["label"]) != (
                a["community"]["name"], a["period"]["label"]):
            raise DocumentError(f"revision {b.get('revision')} settles "
                                f"{b['community']['name']} {b['period']['label']}, not "
                                f"{a['community']['name']} {a['period']['label']}")
        if b.get("revision") != a["revision"] + 1:
            raise DocumentError(f"revision {b.get('revision')} follows revision "
                                f"{a['revision']}")
        if b.get("previous") != prev.hash.hex():
            raise SettlementMismatch(f"previous of revision {b['revision']}", prev.hash.hex(),
                                     str(b.get("previous")))
