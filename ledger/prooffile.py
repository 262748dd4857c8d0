"""The inclusion proof file (``docs/export-format.md``): one reading with its Merkle path,
the signed header and the signature, as JSON with hex fields. Pure: text in, values out.

Parsing is strict so that every verifier accepts the same files: UTF-8 JSON without
duplicate names, integers only as plain digit literals, hex only in lowercase without
whitespace (the file format's table of checks, in order)."""

from __future__ import annotations

import json
import re
from typing import Any

from ledger.blocks import MAX_HEIGHT, decode_bare_header
from ledger.errors import MalformedError
from ledger.merkle import header_hash
from ledger.proofs import InclusionProof
from ledger.readings import Reading

PROOF_FORMAT = "meterchain-inclusion-proof-v1"
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_DIGITS = re.compile(r"0|[1-9][0-9]*")


def proof_to_json(proof: InclusionProof) -> str:
    """The proof file text: a JSON object with hex fields (see docs/export-format.md)."""
    doc = {
        "format": PROOF_FORMAT,
        "height": proof.header.height,
        "block_hash": header_hash(proof.header.encode()).hex(),
        "index": proof.index,
        "header": proof.header.encode().hex(),
        "signature": proof.signature.hex(),
        "reading": proof.encoded_reading.hex(),
        "path": [p.hex() for p in proof.path],
    }
    return json.dumps(doc, indent=2) + "\n"


_PROOF_FIELDS = {"format", "height", "block_hash", "index", "header", "signature", "reading",
                 "path"}


class _Refused(ValueError):
    """Raised by the JSON hooks; becomes a MalformedError."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _Refused(f"member {key!r} appears twice")
        doc[key] = value
    return doc


def _int_literal(text: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise _Refused(f"integer {text!r} has a sign (only non-negative digit literals)")
    return int(text)


def _no_float(text: str) -> Any:
    raise _Refused(f"number {text!r} is not an integer literal (no fraction or exponent)")


def _no_constant(text: str) -> Any:
    raise _Refused(f"{text} is not JSON")


def _parse(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError(f"proof file is not UTF-8: {exc}") from None
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_int=_int_literal,
                          parse_float=_no_float, parse_constant=_no_constant)
    except _Refused as exc:
        raise MalformedError(f"proof file: {exc}") from None
    except json.JSONDecodeError as exc:
        raise MalformedError(f"proof file is not JSON: {exc}") from None


def _hex(value: object, key: str, size: int | None = None) -> bytes:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise MalformedError(f"proof field {key!r} must be lowercase hex digits, two per byte, "
                             "nothing else")
    if size is not None and len(value) != 2 * size:
        raise MalformedError(f"proof field {key!r} must be {size} bytes, not {len(value) // 2}")
    return bytes.fromhex(value)


def proof_from_json(text: str | bytes) -> InclusionProof:
    """Parse a proof file strictly (every field required, no unknown ones).

    Raises:
        MalformedError: not a proof file of this format (no height), or its ``height`` or
            ``block_hash`` disagrees with its header (at the header's height).
        UnsupportedVersionError: the header's version is not one this code knows.
    """
    doc = _parse(text)
    if not isinstance(doc, dict):
        raise MalformedError("proof file must hold a JSON object")
    if doc.get("format") != PROOF_FORMAT:
        raise MalformedError(f"proof format is {doc.get('format')!r}, want {PROOF_FORMAT!r}")
    if set(doc) != _PROOF_FIELDS:
        missing, extra = _PROOF_FIELDS - set(doc), set(doc) - _PROOF_FIELDS
        raise MalformedError(f"proof fields wrong: missing {sorted(missing)}, "
                             f"unknown {sorted(extra)}")
    for key in ("height", "index"):
        if type(doc[key]) is not int or doc[key] > MAX_HEIGHT:
            raise MalformedError(f"proof field {key!r} must be an integer 0..2**63-1")
    block_hash = _hex(doc["block_hash"], "block_hash", 32)
    header_bytes = _hex(doc["header"], "header")
    signature = _hex(doc["signature"], "signature", 64)
    reading = _hex(doc["reading"], "reading")
    if not isinstance(doc["path"], list):
        raise MalformedError("proof field 'path' must be a list of hex strings")
    path = tuple(_hex(p, "path") for p in doc["path"])
    header = decode_bare_header(header_bytes)
    if doc["height"] != header.height:
        raise MalformedError(f"proof height {doc['height']} differs from its header's "
                             f"{header.height}", height=header.height)
    if block_hash != header_hash(header_bytes):
        raise MalformedError("proof block_hash differs from its header's hash",
                             height=header.height)
    return InclusionProof(header, signature, doc["index"], reading, path)


def verify_proof_text(text: str | bytes, gateway_key: bytes | None = None
                      ) -> tuple[InclusionProof, Reading]:
    """Parse and verify a proof file; return the proof and the proven reading.

    Raises:
        ChainError: the file is malformed or the proof does not verify.
    """
    proof = proof_from_json(text)
    return proof, proof.verify(gateway_key)
