"""Logging to stdout/stderr, with syslog priority prefixes journald understands.

Under systemd (``$JOURNAL_STREAM`` or ``$INVOCATION_ID`` set, or ``format =
"journald"``) each line starts with ``<N>`` -- the syslog priority (2 critical, 3 error,
4 warning, 6 info, 7 debug) -- which journald strips and records as the priority, and
carries no timestamp (journald adds one). Otherwise lines carry a timestamp. Warnings
and worse go to stderr, the rest to stdout.
"""

from __future__ import annotations

import logging
import os
import sys

PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (levels in between round to the lower)."""
    for level in sorted(PRIORITIES, reverse=True):
        if levelno >= level:
            return PRIORITIES[level]
    return 7


class JournaldFormatter(logging.Formatter):
    """``<N>name: message`` with each traceback line prefixed too."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        text = super().format(record)
        return "\n".join(prefix + line for line in text.splitlines() or [""])


def under_systemd(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


class _MaxLevel(logging.Filter):
    def __init__(self, below: int) -> None:
        super().__init__()
        self.below = below

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.below


def setup_logging(level: str = "info", fmt: str = "auto") -> None:
    """Replace the root logger's handlers (``level`` and ``fmt`` as in ``[logging]``)."""
    journald = fmt == "journald" or (fmt == "auto" and under_systemd())
    formatter: logging.Formatter
    if journald:
        formatter = JournaldFormatter("%(name)s: %(message)s")
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(_MaxLevel(logging.WARNING))
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in (out, err):
        h.setFormatter(formatter)
        root.addHandler(h)
    root.setLevel(getattr(logging, level.upper()))
