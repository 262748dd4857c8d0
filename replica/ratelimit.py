"""Token buckets: ``rate`` events per second sustained, ``burst`` at once, per key.

Used per gateway (signed pushes) and per client address (refused or unsigned pushes).
Buckets live in the serving process; with several worker processes each enforces the
limit on its own share of the requests (documented in ``docs/replica-api.md``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

MAX_BUCKETS = 200_000
"""Buckets kept before idle full ones are dropped (bounded memory)."""


class RateLimiter:
    """Token buckets keyed by gateway key. Thread-safe; ``clock`` returns seconds."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self._clock = clock
        self._buckets: dict[bytes, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def peek(self, key: bytes) -> float:
        """0.0 when ``key`` has a token now, else the seconds until it has (takes none)."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, key: bytes) -> float:
        """Take one token for ``key``; return 0.0, or the seconds to wait when empty."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > MAX_BUCKETS:
                self._prune(now)
            return 0.0

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        for k, (_, last) in list(self._buckets.items()):
            if now - last >= full_after:
                del self._buckets[k]
