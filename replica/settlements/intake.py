"""Checks on what ``meterchain settle publish`` hands the replica (sizes, shape, signature).

The replica needs no settlement code: it parses the signed document only as far as
listing and serving it require, recomputes the document hash (SHA-256 over ``0x12`` and
the canonical JSON of the body, ``docs/settlement.md`` section 7) and checks the
operator's Ed25519 signature over it with the ledger core's strict rule.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import nacl.exceptions
import nacl.signing

from ledger.ed25519 import signature_error
from replica.errors import SettlementRejected

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""Largest signed settlement document taken (100,000 members fit easily)."""
MAX_STATEMENT_BYTES = 16 * 1024 * 1024
"""Largest member statement (JSON or CSV) taken: a month of 5-minute lines is ~1 MB."""
MAX_MEMBERS = 100_000
"""Most members in one published settlement."""
MAX_INTERVALS = 31 * 24 * 12
"""Most intervals in a settled period (a month of 5-minute intervals): bounds the flows
a document may bring and ``GET .../flows`` answers."""
MAX_ID = 128
"""Longest community, member, period or verifier name."""
DOCUMENT_PREFIX = b"\x12"
SETTLEMENT_TYPE = "meterchain-settlement"
STATEMENT_TYPE = "meterchain-statement"
FLOW_FIELDS = ("generation", "consumption", "covered", "surplus", "grid_import")
"""Per-interval community flows in Wh, in this order (``docs/replica-api.md``)."""

_HEX32 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[!-~ ]{1,128}")  # printable ASCII
_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass(frozen=True, slots=True)
class DocumentMeta:
    """What the replica lists of a checked document."""

    doc_hash: str
    community: str
    period: str
    revision: int
    previous: str | None
    root: str
    operator_key: str
    time_zone: str
    currency: str
    start_ms: int
    end_ms: int
    interval_ms: int
    members: tuple[str, ...]


def _bad(what: str) -> SettlementRejected:
    return SettlementRejected(f"settlement document: {what}")


def _int(obj: dict[str, Any], key: str, where: str, *, lo: int = 0) -> int:
    v = obj.get(key)
    if type(v) is not int or not lo <= v <= 2**63 - 1:
        raise _bad(f"{where}.{key} must be an integer >= {lo}")
    return v


def _str(obj: dict[str, Any], key: str, where: str, pattern: re.Pattern[str] = _NAME) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not pattern.fullmatch(v):
        raise _bad(f"{where}.{key} must be a string of at most {MAX_ID} printable characters")
    return v


def _canonical(obj: Any) -> bytes:
    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif not (o is None or isinstance(o, (str, int))):
            raise _bad("holds a value with no canonical encoding (floats are not allowed)")
    walk(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def document_hash(body: Any) -> str:
    """Hex SHA-256(0x12 || canonical body).

    Raises:
        SettlementRejected: the body has no canonical encoding.
    """
    return hashlib.sha256(DOCUMENT_PREFIX + _canonical(body)).hexdigest()


def check_document(raw: bytes) -> DocumentMeta:
    """Parse and check a signed settlement document as published.

    Raises:
        SettlementRejected: too large, not JSON, wrong shape, or the signature fails.
    """
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise _bad(f"{len(raw)} bytes, larger than the limit of {MAX_DOCUMENT_BYTES}")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _bad(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or set(obj) != {"document", "signature"}:
        raise _bad("must be an object with exactly 'document' and 'signature'")
    body, sig = obj["document"], obj["signature"]
    if not isinstance(body, dict) or body.get("type") != SETTLEMENT_TYPE:
        raise _bad(f"document.type must be {SETTLEMENT_TYPE!r}")
    if body.get("version") != 1:
        raise _bad(f"document.version {body.get('version')!r} is not supported (1 is)")
    if not isinstance(sig, str) or not re.fullmatch(r"[0-9a-f]{128}", sig):
        raise _bad("signature must be 128 lowercase hex characters")
    community, period = body.get("community"), body.get("period")
    if not isinstance(community, dict) or not isinstance(period, dict):
        raise _bad("document.community and document.period must be objects")
    tz = _str(community, "time_zone", "community")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise _bad(f"community.time_zone {tz!r} is not a known time zone") from None
    members = body.get("members")
    if not isinstance(members, list) or len(members) > MAX_MEMBERS:
        raise _bad(f"document.members must be a list of at most {MAX_MEMBERS}")
    ids = []
    for i, m in enumerate(members):
        if not isinstance(m, dict):
            raise _bad(f"members[{i}] must be an object")
        ids.append(_str(m, "id", f"members[{i}]", _ID))
    if ids != sorted(set(ids)):
        raise _bad("members must be unique and in id order")
    meta = DocumentMeta(
        doc_hash=document_hash(body), community=_str(community, "name", "community"),
        period=_str(period, "label", "period"), revision=_int(body, "revision", "document"),
        previous=_previous(body), root=_str(body, "root", "document", _HEX32),
        operator_key=_str(body, "operator_key", "document", _HEX32), time_zone=tz,
        currency=_str(community, "currency", "community"),
        start_ms=_int(period, "start_ms", "period"), end_ms=_int(period, "end_ms", "period"),
        interval_ms=_int(period, "interval_ms", "period", lo=1), members=tuple(ids))
    if meta.end_ms <= meta.start_ms or (meta.end_ms - meta.start_ms) % meta.interval_ms:
        raise _bad("period must be a whole number of intervals, start before end")
    if (meta.end_ms - meta.start_ms) // meta.interval_ms > MAX_INTERVALS:
        raise _bad(f"period has more than {MAX_INTERVALS} intervals")
    key, signature = bytes.fromhex(meta.operator_key), bytes.fromhex(sig)
    why = signature_error(key, signature)
    if why is None:
        try:
            nacl.signing.VerifyKey(key).verify(
                bytes.fromhex(meta.doc_hash), signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
            why = "it does not verify"
    if why is not None:
        raise _bad(f"the operator's signature is refused: {why}")
    return meta


def _previous(body: dict[str, Any]) -> str | None:
    prev = body.get("previous")
    if prev is None:
        return None
    if not isinstance(prev, str) or not _HEX32.fullmatch(prev):
        raise _bad("document.previous must be null or 64 hex characters")
    return prev


def check_statement(meta: DocumentMeta, member: str, raw_json: bytes, raw_csv: bytes
                    ) -> dict[str, Any]:
    """Check one member's statement files; return the summary the replica lists.

    Raises:
        SettlementRejected: too large, not a statement of this member and document.
    """
    where = f"statement of {member!r}"
    for name, raw in (("JSON", raw_json), ("CSV", raw_csv)):
        if len(raw) > MAX_STATEMENT_BYTES:
            raise SettlementRejected(f"{where}: {name} of {len(raw)} bytes, larger than the "
                                     f"limit of {MAX_STATEMENT_BYTES}")
    try:
        raw_csv.decode("ascii")
        st = json.loads(raw_json)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SettlementRejected(f"{where}: not ASCII CSV and JSON: {exc}") from None
    if not isinstance(st, dict) or st.get("type") != STATEMENT_TYPE:
        raise SettlementRejected(f"{where}: type must be {STATEMENT_TYPE!r}")
    if st.get("member") != member or st.get("document_sha256") != meta.doc_hash:
        raise SettlementRejected(f"{where}: names another member or document")
    summary: dict[str, Any] = {}
    for key in ("channels_wh", "money_minor"):
        part = st.get(key)
        if not isinstance(part, dict) or len(part) > 32 or not all(
                isinstance(k, str) and len(k) <= 64 and type(v) is int
                for k, v in part.items()):
            raise SettlementRejected(f"{where}: {key} must map names to integers")
        summary[key] = part
    prov = st.get("provisional_intervals")
    if type(prov) is not int or prov < 0:
        raise SettlementRejected(f"{where}: provisional_intervals must be an integer >= 0")
    summary["provisional_intervals"] = prov
    return summary


def check_flows(meta: DocumentMeta, flows: list[tuple[int, ...]]) -> None:
    """Check per-interval community flows: one row per interval start in the period,
    each ``(start_ms, *FLOW_FIELDS)`` of non-negative integers.

    Raises:
        SettlementRejected: a row out of the period, off the interval grid, repeated,
            negative or of the wrong width.
    """
    seen: set[int] = set()
    for row in flows:
        if len(row) != 1 + len(FLOW_FIELDS) or not all(
                type(v) is int and 0 <= v <= 2**62 for v in row):
            raise SettlementRejected(f"flows: row {row!r} must be {1 + len(FLOW_FIELDS)} "
                                     "non-negative integers")
        t = row[0]
        if not meta.start_ms <= t < meta.end_ms or (t - meta.start_ms) % meta.interval_ms:
            raise SettlementRejected(f"flows: interval start {t} is not an interval of the "
                                     "period")
        if t in seen:
            raise SettlementRejected(f"flows: interval start {t} given twice")
        seen.add(t)


def check_verifier(name: str) -> str:
    """A verification's ``against`` (a replica URL or name): printable, bounded.

    Raises:
        SettlementRejected: empty, too long or not printable ASCII.
    """
    if not _NAME.fullmatch(name):
        raise SettlementRejected(f"verified-against must be 1-{MAX_ID} printable ASCII "
                                 "characters")
    return name
