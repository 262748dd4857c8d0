"""Errors of the settlement package, under the project's root ``MeterchainError``.

- :class:`SettlementError` -- root: settlement inputs or documents are wrong.
- :class:`InputError` -- interval energy or orders given to a run are malformed or
  incomplete (names the metering point, interval or member).
- :class:`DocumentError` -- a settlement document or proof is malformed, badly signed,
  or of an unknown version.
- :class:`SettlementMismatch` -- a recomputation differs from what a document says;
  carries ``expected`` and ``actual`` and, where known, the first differing ``line``.

Configuration problems are :class:`~ledger.errors.ConfigError` (with the key path).
"""

from __future__ import annotations

from ledger.errors import MeterchainError


class SettlementError(MeterchainError):
    """Root of every settlement error."""


class InputError(SettlementError):
    """Interval energy, orders or a period given to a settlement run are unusable."""


class DocumentError(SettlementError):
    """A settlement document or member proof is malformed or does not verify."""


class SettlementMismatch(DocumentError):
    """A recomputed value differs from the document's.

    ``what`` names the value (``root``, ``member anna``), ``expected`` is the
    document's, ``actual`` the recomputed one; ``line`` is the first differing output
    line when it is known (the document's line, or None).
    """

    def __init__(self, what: str, expected: str, actual: str, *,
                 line: str | None = None, actual_line: str | None = None) -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        self.line = line
        self.actual_line = actual_line
        text = f"{what} differs: document has {expected}, recomputed {actual}"
        if line is not None or actual_line is not None:
            text += f"; first differing line: document {line!r}, recomputed {actual_line!r}"
        super().__init__(text)
