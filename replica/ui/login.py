"""The login form's token check: the replica's own API tokens (:mod:`replica.tokens`)."""

from __future__ import annotations

from collections.abc import Callable

from replica.service import ReplicaService
from replica.tokens import check_token, parse_token_id
from replica.ui.session import TokenCheck


def replica_token_check(svc: Callable[[], ReplicaService]) -> TokenCheck:
    """``check(token)``: the scopes of a valid, unrevoked token of this replica, else None."""

    def check(text: str) -> frozenset[str] | None:
        token_id = parse_token_id(text)
        if token_id is None:
            return None
        record = svc().storage.token(token_id)
        if record is None or not check_token(text, record):
            return None
        return frozenset(record.scopes)

    return check
