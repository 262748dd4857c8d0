"""A fixed API token for tests that read a replica over HTTP as an authorised client.

Real tokens are random (``replica.tokens.create_token``); these fixed ones let several
test replicas accept the same text, so one ``MC_REPLICA_TOKEN`` serves them all.
"""

from __future__ import annotations

from replica.auth import SCOPES
from replica.storage.base import Storage, TokenRecord
from replica.tokens import token_hash

TEST_TOKEN_ID = "7e57000000000001"
TEST_TOKEN = f"mct_{TEST_TOKEN_ID}_{'5a' * 32}"
"""Holds every scope on a replica where :func:`install_test_token` ran."""


def install_test_token(storage: Storage, scopes: tuple[str, ...] = SCOPES,
                       token_id: str = TEST_TOKEN_ID, text: str = TEST_TOKEN) -> str:
    """Store the hash of a fixed token with ``scopes`` (once); return the token text."""
    if storage.token(token_id) is None:
        storage.add_token(TokenRecord(token_id, "tests", scopes, token_hash(text), 0, None))
    return text


def auth_header(text: str = TEST_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {text}"}
