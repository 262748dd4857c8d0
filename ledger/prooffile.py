"""The inclusion proof file (``docs/export-format.md``): one reading with its Merkle path,
the signed header and the signature, as JSON with hex fields. Pure: text in, values out."""

from __future__ import annotations

import json
from typing import Any

from ledger.blocks import Header
from ledger.errors import MalformedError, MismatchError
from ledger.merkle import header_hash
from ledger.proofs import InclusionProof
from ledger.readings import Reading

PROOF_FORMAT = "meterchain-inclusion-proof-v1"


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


def _hex(doc: dict[str, Any], key: str) -> bytes:
    v = doc[key]
    if not isinstance(v, str):
        raise MalformedError(f"proof field {key!r} must be a hex string")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise MalformedError(f"proof field {key!r} is not hex") from None


def proof_from_json(text: str | bytes) -> InclusionProof:
    """Parse a proof file strictly (every field required, no unknown ones).

    Raises:
        MalformedError: not a proof file of this format.
        MismatchError: the informational ``height``/``block_hash`` disagree with the header.
    """
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedError(f"proof file is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedError("proof file must hold a JSON object")
    if doc.get("format") != PROOF_FORMAT:
        raise MalformedError(f"proof format is {doc.get('format')!r}, want {PROOF_FORMAT!r}")
    if set(doc) != _PROOF_FIELDS:
        missing, extra = _PROOF_FIELDS - set(doc), set(doc) - _PROOF_FIELDS
        raise MalformedError(f"proof fields wrong: missing {sorted(missing)}, "
                             f"unknown {sorted(extra)}")
    for key in ("height", "index"):
        if type(doc[key]) is not int or doc[key] < 0:
            raise MalformedError(f"proof field {key!r} must be a non-negative integer")
    if not isinstance(doc["path"], list):
        raise MalformedError("proof field 'path' must be a list of hex strings")
    header = Header.decode(_hex(doc, "header"))
    if doc["height"] != header.height:
        raise MismatchError("proof height differs from its header", expected=header.height,
                            actual=doc["height"], height=header.height)
    bhash = header_hash(header.encode())
    if _hex(doc, "block_hash") != bhash:
        raise MismatchError("proof block_hash differs from its header's hash", expected=bhash,
                            actual=_hex(doc, "block_hash"), height=header.height)
    path = tuple(_hex({"p": p}, "p") for p in doc["path"])
    return InclusionProof(header, _hex(doc, "signature"), doc["index"], _hex(doc, "reading"),
                          path)


def verify_proof_text(text: str | bytes, gateway_key: bytes | None = None
                      ) -> tuple[InclusionProof, Reading]:
    """Parse and verify a proof file; return the proof and the proven reading.

    Raises:
        ChainError: the file is malformed or the proof does not verify.
    """
    proof = proof_from_json(text)
    return proof, proof.verify(gateway_key)
