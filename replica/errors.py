"""Errors of the replica service, under the roots in :mod:`ledger.errors`.

- :class:`Refusal` -- a request is refused with a 4xx status; ``code`` is the protocol's
  stable error code (``gap``, ``fork``, ``bad-signature``, ...), ``extra`` the additional
  JSON fields the protocol defines for it (``expected_height``, ``height``, ``index``).
- :class:`ReplicaStoreError` -- the replica's database cannot be opened, read or written.
- :class:`StaleHeadError` -- a gateway's head moved while a batch was being verified
  (a concurrent push); the batch was not stored and may be retried.
- :class:`EnrollmentError` -- an enroll/revoke command names a bad key or time.
"""

from __future__ import annotations

from ledger.errors import ConfigError, MeterchainError, StoreError


class Refusal(MeterchainError):
    """A request refused with HTTP ``status`` and protocol error ``code``."""

    def __init__(self, status: int, code: str, detail: str, **extra: object) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra
        super().__init__(f"HTTP {status} {code}: {detail}")


class ReplicaStoreError(StoreError):
    """The replica's database cannot be opened, read or written."""


class StaleHeadError(ReplicaStoreError):
    """The gateway's head is no longer the one the batch was verified against."""

    def __init__(self, key: bytes, expected_height: int) -> None:
        self.key = key
        self.expected_height = expected_height
        super().__init__(
            f"gateway {key.hex()}: head moved from height {expected_height} during the push"
        )


class EnrollmentError(ConfigError):
    """An enrollment command was given a bad key, time or an unknown gateway."""


class SettlementRejected(MeterchainError):
    """A settlement handed to the replica (``meterchain settle publish``) is refused:
    too large, malformed, badly signed, or in conflict with one already published."""
