"""Hypothesis strategies and fixed keys for the ledger core tests."""

from __future__ import annotations

import hashlib

from hypothesis import strategies as st

import ledger as L

GATEWAY_SEED = hashlib.sha256(b"tests/ledger gateway").digest()
OTHER_SEED = hashlib.sha256(b"tests/ledger other gateway").digest()
UTILITY_SK = hashlib.sha256(b"tests/ledger utility").digest()
WRONG_SK = hashlib.sha256(b"tests/ledger wrong utility").digest()

UNIT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789%/"

meter_ids = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x7f",
                           min_codepoint=0x20),
    min_size=1, max_size=20,
).filter(lambda s: len(s.encode()) <= L.MAX_METER_ID_BYTES)

readings = st.builds(
    L.Reading.make,
    meter_id=meter_ids,
    obis=st.binary(min_size=6, max_size=6).map(L.format_obis),
    value=st.integers(-(2**63), 2**63 - 1),
    exponent=st.integers(-128, 127),
    unit=st.text(alphabet=UNIT_ALPHABET, max_size=16),
    timestamp_ms=st.integers(0, 2**63 - 1),
    clock=st.sampled_from(list(L.ClockSource)),
    quality=st.integers(0, L.KNOWN_QUALITY_BITS),
)

salts = st.binary(min_size=L.SALT_SIZE, max_size=L.SALT_SIZE)
